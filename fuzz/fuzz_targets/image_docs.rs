//! Registry documents: image indexes, manifests and configs, as a pull or an import meets them.
//!
//! The input is `CONFIG\n--\nMANIFEST`; `@C` in the manifest becomes the config's digest, so
//! the fuzzer can keep a manifest that points at its config. Both are ingested into a store
//! (verified by digest) and the manifest is committed as an image; the whole input is also
//! read as an index (platform selection), a config (platform check) and classified.
#![no_main]
use std::sync::OnceLock;

use kinglet_image::{Digest, ImageStore};
use libfuzzer_sys::fuzz_target;
use sha2::{Digest as _, Sha256};

fn store() -> &'static (tempfile::TempDir, ImageStore) {
    static S: OnceLock<(tempfile::TempDir, ImageStore)> = OnceLock::new();
    S.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(&dir.path().join("images")).expect("open store");
        (dir, store)
    })
}

fn digest(b: &[u8]) -> Digest {
    format!("sha256:{}", hex::encode(Sha256::digest(b)))
        .parse()
        .unwrap()
}

fuzz_target!(|data: &[u8]| {
    let _ = kinglet_image::classify_document(data, None);
    let _ = kinglet_image::select_platform_manifest(data, "fuzz index");
    let _ = kinglet_image::check_config_json_platform(data, "fuzz config");

    let sep = b"\n--\n";
    let Some(at) = data.windows(sep.len()).position(|w| w == sep) else {
        return;
    };
    let (config, manifest) = (&data[..at], &data[at + sep.len()..]);
    let cd = digest(config);
    let manifest = String::from_utf8_lossy(manifest).replace("@C", &cd.to_string());
    let md = digest(manifest.as_bytes());
    let (dir, s) = store();
    s.ingest_blob(&cd, config).expect("ingest config");
    s.ingest_blob(&md, manifest.as_bytes())
        .expect("ingest manifest");
    if let Ok(rec) = s.commit_image(&md, &["fuzz.example/image:latest".to_owned()]) {
        let _ = s.resolve(&rec.id);
        s.remove(&rec.id).expect("remove the image");
    }
    // No image is left: drop the blobs, so the store stays small however long the run.
    if s.list().is_empty() {
        let blobs = dir.path().join("images/blobs/sha256");
        for e in std::fs::read_dir(&blobs).into_iter().flatten().flatten() {
            let _ = std::fs::remove_file(e.path());
        }
    }
});
