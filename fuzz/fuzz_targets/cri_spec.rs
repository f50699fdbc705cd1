//! CRI CreateContainer's ContainerConfig (protobuf, as a client sends it) → OCI runtime spec,
//! through the daemon's spec builder, for a pod-network sandbox and a small image config.
#![no_main]
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use kinglet_image::ImageConfig;
use kinglet_proto::v1;
use kinglet_runtime::spec::{build_spec, SandboxFiles, SpecInput};
use kinglet_runtime::store::SandboxRecord;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fn sandbox() -> &'static SandboxRecord {
    static S: OnceLock<SandboxRecord> = OnceLock::new();
    S.get_or_init(|| {
        serde_json::from_value(serde_json::json!({
            "id": "0123456789abcdef",
            "meta": {"name": "p", "uid": "u", "namespace": "default", "attempt": 0},
            "state": "Ready",
            "created_at": 1,
            "labels": {},
            "annotations": {},
            "runtime_handler": "",
            "hostname": "p",
            "log_directory": "/var/log/pods/p",
            "cgroup_parent": "/kinglet/0123456789abcdef",
            "owns_cgroup_parent": true,
            "namespaces": {
                "network": "Pod", "pid": "Container", "ipc": "Pod",
                "net_path": "/run/kinglet/pods/p/ns/net",
                "ipc_path": "/run/kinglet/pods/p/ns/ipc",
                "uts_path": "/run/kinglet/pods/p/ns/uts"
            },
            "shm": "/run/kinglet/pods/p/shm",
            "config": "",
            "ip": "10.85.0.2"
        }))
        .expect("a valid sandbox record")
    })
}

fn image() -> &'static ImageConfig {
    static I: OnceLock<ImageConfig> = OnceLock::new();
    I.get_or_init(|| {
        serde_json::from_value(serde_json::json!({
            "entrypoint": ["/bin/sh"],
            "cmd": ["-c", "true"],
            "env": ["PATH=/usr/bin:/bin"],
            "working_dir": "/",
            "user": "1000:1000"
        }))
        .unwrap_or_default()
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(config) = v1::ContainerConfig::decode(data) else {
        return;
    };
    let files = SandboxFiles {
        hostname: PathBuf::from("/run/kinglet/pods/p/hostname"),
        hosts: PathBuf::from("/run/kinglet/pods/p/hosts"),
        resolv_conf: PathBuf::from("/run/kinglet/pods/p/resolv.conf"),
    };
    let caps: Vec<String> = [
        "CAP_CHOWN",
        "CAP_KILL",
        "CAP_NET_BIND_SERVICE",
        "CAP_SYS_ADMIN",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    let hierarchies: Vec<String> = ["cpu", "memory", "pids", "systemd"]
        .into_iter()
        .map(String::from)
        .collect();
    for cgroup_v2 in [false, true] {
        let input = SpecInput {
            config: &config,
            sandbox: sandbox(),
            image: image(),
            rootfs: Path::new("/run/kinglet/containers/c/bundle/rootfs"),
            files: &files,
            cgroups_path: "/kinglet/0123456789abcdef/c",
            min_oom_score_adj: -999,
            host_caps: &caps,
            target_pid_ns: None,
            cgroup_v2,
            cgroup_v1_hierarchies: &hierarchies,
        };
        if let Ok(spec) = build_spec(&input) {
            // Whatever the client asked, the spec serializes (libcontainer reads it back).
            serde_json::to_vec(&spec).expect("spec serializes");
        }
    }
});
