//! Layer tar unpack (plain, gzip or zstd, sniffed): whatever the archive holds, nothing outside
//! the layer directory is created or changed. A sentinel file next to the layer directory, a
//! directory beside it and the temp root's listing are checked after every input.
#![no_main]
use std::path::Path;

use libfuzzer_sys::fuzz_target;

const SENTINEL: &[u8] = b"must never change\n";

fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fuzz_target!(|data: &[u8]| {
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let sentinel = tmp.path().join("sentinel");
    std::fs::write(&sentinel, SENTINEL).unwrap();
    std::fs::write(outside.join("sentinel"), SENTINEL).unwrap();
    let blob_path = tmp.path().join("blob");
    std::fs::write(&blob_path, data).unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let before = listing(tmp.path());

    let blob = std::fs::File::open(&blob_path).unwrap();
    let _ = kinglet_image::unpack_layer_file(
        blob,
        "application/vnd.oci.image.layer.v1.tar",
        "sha256:0000000000000000000000000000000000000000000000000000000000000000",
        &root,
    );

    assert_eq!(
        listing(tmp.path()),
        before,
        "something was created beside the layer"
    );
    assert_eq!(listing(&outside), vec!["sentinel".to_owned()]);
    let meta = std::fs::symlink_metadata(&sentinel).unwrap();
    assert!(meta.file_type().is_file(), "the sentinel was replaced");
    assert_eq!(
        std::fs::read(&sentinel).unwrap(),
        SENTINEL,
        "the sentinel was written"
    );
    assert_eq!(std::fs::read(outside.join("sentinel")).unwrap(), SENTINEL);
    assert!(
        std::fs::symlink_metadata(&root).unwrap().is_dir(),
        "the layer root was replaced"
    );
});
