//! The shim protocol: attach frames (both directions) and the records the daemon reads from a
//! shim's state directory (`shim.json`, `exit.json`, an exec's result).
#![no_main]
use kinglet_shim::protocol::{self, ExecResult, ExitRecord, ShimRecord};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Frames: taking frames never panics, consumes exactly what it returns, and a frame
    // re-encoded reads back the same.
    let mut buf = data.to_vec();
    let mut taken = 0;
    while let Some((ty, payload)) = protocol::take_frame(&mut buf) {
        taken += 1;
        let mut again = Vec::new();
        protocol::push_frame(&mut again, ty, &payload);
        assert_eq!(protocol::take_frame(&mut again), Some((ty, payload)));
        assert!(again.is_empty());
        if taken > 10_000 {
            break;
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("record.json");
    std::fs::write(&p, data).unwrap();
    let _ = protocol::read_record::<ShimRecord>(&p);
    let _ = protocol::read_record::<ExitRecord>(&p);
    let _ = protocol::read_record::<ExecResult>(&p);
});
