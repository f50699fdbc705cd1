//! The daemon's TOML config file.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kinglet.toml");
    std::fs::write(&path, data).unwrap();
    let flags = kinglet::config::DaemonFlags {
        config: Some(path),
        ..Default::default()
    };
    let _ = kinglet::config::Config::load(&flags);
});
