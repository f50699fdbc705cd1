//! Kubernetes YAML/JSON (manifests directory, `kinglet apply`) → objects.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (objects, _errors) = kinglet_manifest::parse_each("fuzz.yaml", text);
    for o in &objects {
        let _ = kinglet_manifest::ignored_fields(o);
        let _ = o.to_json();
        let _ = o.key();
    }
});
