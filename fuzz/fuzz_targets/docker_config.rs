//! Docker `config.json` (and `.dockerconfigjson` of pull secrets) and credential-helper output.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(cfg) = kinglet_pull::auth::DockerConfig::parse(data, "fuzz config.json") {
        for image in [
            "docker.io/library/busybox:latest",
            "registry.example:5000/team/app@sha256:0000000000000000000000000000000000000000000000000000000000000000",
            "localhost/x",
        ] {
            let _ = cfg.matching_auths(image, "fuzz");
        }
        let _ = cfg.helper_for("registry.example:5000");
    }
    if let Ok(Some(c)) = kinglet_pull::auth::parse_helper_reply(data) {
        let _ = c.describe();
    }
});
