//! Unit tests of the CRI → OCI spec translation (`spec.rs`).

use super::*;

fn image() -> ImageConfig {
    ImageConfig {
        entrypoint: vec!["/entry".into()],
        cmd: vec!["default-arg".into()],
        env: vec!["PATH=/bin".into(), "A=image".into()],
        working_dir: "/work".into(),
        user: String::new(),
        ..Default::default()
    }
}

fn cfg() -> v1::ContainerConfig {
    v1::ContainerConfig {
        metadata: Some(v1::ContainerMetadata {
            name: "c".into(),
            attempt: 0,
        }),
        ..Default::default()
    }
}

#[test]
fn command_and_args_follow_the_kubernetes_override_rules() {
    let img = image();
    let mut c = cfg();
    assert_eq!(resolve_args(&c, &img).unwrap(), ["/entry", "default-arg"]);
    c.args = vec!["x".into()];
    assert_eq!(resolve_args(&c, &img).unwrap(), ["/entry", "x"]);
    c.command = vec!["/cmd".into()];
    assert_eq!(resolve_args(&c, &img).unwrap(), ["/cmd", "x"]);
    c.args.clear();
    assert_eq!(resolve_args(&c, &img).unwrap(), ["/cmd"]);
    let empty = ImageConfig::default();
    let e = resolve_args(&cfg(), &empty).unwrap_err().to_string();
    assert!(e.contains("config.command"), "{e}");
}

#[test]
fn env_later_keys_replace_earlier_and_path_is_defaulted() {
    let env = merge_env(
        "web",
        &[
            "PATH=/bin".into(),
            "A=image".into(),
            "HOSTNAME=image".into(),
        ],
        &[
            v1::KeyValue {
                key: "A".into(),
                value: b"cri".to_vec(),
            },
            v1::KeyValue {
                key: "B".into(),
                value: b"x=y".to_vec(),
            },
        ],
    );
    // The image may set HOSTNAME over the sandbox's, as with containerd.
    assert_eq!(env, ["HOSTNAME=image", "PATH=/bin", "A=cri", "B=x=y"]);
    let env = merge_env("web", &[], &[]);
    assert_eq!(env, [DEFAULT_PATH, "HOSTNAME=web"]);
}

#[test]
fn users_resolve_from_the_container_files_never_through_symlinks() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("etc")).unwrap();
    std::fs::write(
        dir.path().join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("etc/group"),
        "root:x:0:\napp:x:1001:\nextra:x:2000:app\n",
    )
    .unwrap();
    let r = dir.path();
    let id = resolve_user(r, None, "app").unwrap();
    assert_eq!(
        (id.uid, id.gid, id.additional_gids.clone()),
        (1000, 1001, vec![1001, 2000])
    );
    let id = resolve_user(r, None, "1000:extra").unwrap();
    assert_eq!((id.uid, id.gid), (1000, 2000));
    let id = resolve_user(r, None, "").unwrap();
    assert_eq!((id.uid, id.gid), (0, 0));
    let sc = v1::LinuxContainerSecurityContext {
        run_as_user: Some(v1::Int64Value { value: 1000 }),
        run_as_group: Some(v1::Int64Value { value: 7 }),
        supplemental_groups: vec![9],
        ..Default::default()
    };
    let id = resolve_user(r, Some(&sc), "").unwrap();
    assert_eq!(
        (id.uid, id.gid, id.additional_gids),
        (1000, 7, vec![7, 9, 2000])
    );
    let e = resolve_user(r, None, "nobody-here")
        .unwrap_err()
        .to_string();
    assert!(e.contains("nobody-here"), "{e}");
    let group_only = v1::LinuxContainerSecurityContext {
        run_as_group: Some(v1::Int64Value { value: 7 }),
        ..Default::default()
    };
    let e = resolve_user(r, Some(&group_only), "app")
        .unwrap_err()
        .to_string();
    assert!(e.contains("run_as_group"), "{e}");
    let named = v1::LinuxContainerSecurityContext {
        run_as_username: "app".into(),
        ..group_only
    };
    let id = resolve_user(r, Some(&named), "").unwrap();
    assert_eq!((id.uid, id.gid), (1000, 7));
    // A symlinked /etc/passwd is not read.
    let d2 = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(dir.path().join("etc"), d2.path().join("etc")).unwrap();
    assert!(resolve_user(d2.path(), None, "app").is_err());
}

/// The spec of a container of a plain pod, from a busybox-like root with no /etc files.
fn spec_of(config: &v1::ContainerConfig, host_caps: &[String]) -> Spec {
    spec_on(config, host_caps, true, &[])
}

/// As `spec_of`, on a host with cgroup v2 or with these v1 hierarchies.
fn spec_on(
    config: &v1::ContainerConfig,
    host_caps: &[String],
    cgroup_v2: bool,
    cgroup_v1_hierarchies: &[String],
) -> Spec {
    let root = tempfile::tempdir().unwrap();
    let sandbox = SandboxRecord {
        id: "p".into(),
        meta: Default::default(),
        state: super::super::store::SandboxState::Ready,
        created_at: 0,
        labels: Default::default(),
        annotations: Default::default(),
        runtime_handler: String::new(),
        hostname: "h".into(),
        log_directory: String::new(),
        cgroup_parent: String::new(),
        owns_cgroup_parent: false,
        namespaces: Default::default(),
        shm: None,
        config: String::new(),
        ip: None,
    };
    let files = SandboxFiles {
        hostname: "/h".into(),
        hosts: "/hosts".into(),
        resolv_conf: "/resolv".into(),
    };
    build_spec(&SpecInput {
        config,
        sandbox: &sandbox,
        image: &ImageConfig::default(),
        rootfs: root.path(),
        files: &files,
        cgroups_path: "/kinglet/c",
        min_oom_score_adj: 0,
        host_caps,
        target_pid_ns: None,
        cgroup_v2,
        cgroup_v1_hierarchies,
    })
    .unwrap()
}

fn with_sc(sc: v1::LinuxContainerSecurityContext) -> v1::ContainerConfig {
    v1::ContainerConfig {
        command: vec!["sh".into()],
        linux: Some(v1::LinuxContainerConfig {
            security_context: Some(sc),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn no_new_privs_only_when_asked() {
    let off = spec_of(&with_sc(Default::default()), &all_caps());
    assert_eq!(off.process().as_ref().unwrap().no_new_privileges(), None);
    let on = spec_of(
        &with_sc(v1::LinuxContainerSecurityContext {
            no_new_privs: true,
            ..Default::default()
        }),
        &all_caps(),
    );
    assert_eq!(
        on.process().as_ref().unwrap().no_new_privileges(),
        Some(true)
    );
}

#[test]
fn privileged_gets_the_daemons_capabilities_and_propagation_follows_mounts() {
    let host = caps_from_mask(0x1fffeffffff);
    let spec = spec_of(
        &with_sc(v1::LinuxContainerSecurityContext {
            privileged: true,
            ..Default::default()
        }),
        &host,
    );
    let bounding = spec
        .process()
        .as_ref()
        .unwrap()
        .capabilities()
        .as_ref()
        .unwrap()
        .bounding()
        .clone()
        .unwrap();
    assert_eq!(bounding.len(), host.len());
    assert!(!bounding.contains(&Capability::SysResource));
    assert_eq!(spec.linux().as_ref().unwrap().rootfs_propagation(), &None);
    for (p, want) in [(1, None), (2, Some("shared"))] {
        let mut cfg = with_sc(Default::default());
        cfg.mounts = vec![v1::Mount {
            container_path: "/m".into(),
            host_path: "/tmp".into(),
            propagation: p,
            ..Default::default()
        }];
        let spec = spec_of(&cfg, &host);
        assert_eq!(
            spec.linux()
                .as_ref()
                .unwrap()
                .rootfs_propagation()
                .as_deref(),
            want
        );
    }
}

#[test]
fn all_capabilities_are_the_bounding_set() {
    let status = "Name:\tkinglet\nCapPrm:\t000001fffeffffff\nCapBnd:\t000001fffeffffff\n";
    let mask = bounding_set_from_status(status).unwrap();
    let caps = caps_from_mask(mask);
    assert_eq!(caps.len(), all_caps().len() - 1);
    assert!(!caps.contains(&"CAP_SYS_RESOURCE".to_string()));
    assert!(caps.contains(&"CAP_CHECKPOINT_RESTORE".to_string()));
    assert_eq!(caps_from_mask(0b101), ["CAP_CHOWN", "CAP_DAC_READ_SEARCH"]);
    assert_eq!(bounding_set_from_status("CapBnd:\tzz\n"), None);
    let privileged = v1::LinuxContainerSecurityContext {
        privileged: true,
        ..Default::default()
    };
    assert_eq!(resolve_caps(Some(&privileged), &caps).unwrap(), caps);
    let add_all = v1::LinuxContainerSecurityContext {
        capabilities: Some(v1::Capability {
            add_capabilities: vec!["ALL".into()],
            drop_capabilities: vec!["KILL".into()],
            ..Default::default()
        }),
        ..Default::default()
    };
    let got = resolve_caps(Some(&add_all), &caps).unwrap();
    assert_eq!(got.len(), caps.len() - 1);
    assert!(!got.contains(&"CAP_SYS_RESOURCE".to_string()));
}

#[test]
fn capabilities_default_add_drop_all() {
    let mut sc = v1::LinuxContainerSecurityContext::default();
    assert_eq!(
        resolve_caps(Some(&sc), &all_caps()).unwrap().len(),
        DEFAULT_CAPS.len()
    );
    sc.capabilities = Some(v1::Capability {
        add_capabilities: vec!["NET_ADMIN".into()],
        drop_capabilities: vec!["KILL".into(), "CAP_CHOWN".into()],
        ..Default::default()
    });
    let caps = resolve_caps(Some(&sc), &all_caps()).unwrap();
    assert!(caps.contains(&"CAP_NET_ADMIN".to_string()));
    assert!(!caps.contains(&"CAP_KILL".to_string()) && !caps.contains(&"CAP_CHOWN".to_string()));
    sc.capabilities = Some(v1::Capability {
        drop_capabilities: vec!["ALL".into()],
        ..Default::default()
    });
    assert!(resolve_caps(Some(&sc), &all_caps()).unwrap().is_empty());
    // The usual hardening: drop everything, add back one.
    sc.capabilities = Some(v1::Capability {
        drop_capabilities: vec!["ALL".into()],
        add_capabilities: vec!["NET_BIND_SERVICE".into()],
        ..Default::default()
    });
    assert_eq!(
        resolve_caps(Some(&sc), &all_caps()).unwrap(),
        ["CAP_NET_BIND_SERVICE".to_string()]
    );
    sc.capabilities = Some(v1::Capability {
        add_capabilities: vec!["NOT_A_CAP".into()],
        ..Default::default()
    });
    let e = resolve_caps(Some(&sc), &all_caps())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("NOT_A_CAP") && e.contains("add_capabilities"),
        "{e}"
    );
}

#[test]
fn cgroup_v1_hierarchies_are_read_only_in_unprivileged_containers() {
    let hier: Vec<String> = ["cpu", "memory", "pids", "systemd"]
        .map(String::from)
        .to_vec();
    let with = |privileged: bool, pid: i32| v1::ContainerConfig {
        command: vec!["sh".into()],
        linux: Some(v1::LinuxContainerConfig {
            security_context: Some(v1::LinuxContainerSecurityContext {
                privileged,
                namespace_options: Some(v1::NamespaceOption {
                    pid,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let ro = |s: &Spec| {
        s.linux()
            .as_ref()
            .unwrap()
            .readonly_paths()
            .clone()
            .unwrap_or_default()
    };
    let container = v1::NamespaceMode::Container as i32;
    let paths = ro(&spec_on(&with(false, container), &[], false, &hier));
    for p in [
        "/sys/fs/cgroup",
        "/sys/fs/cgroup/memory",
        "/sys/fs/cgroup/pids",
        "/sys/fs/cgroup/systemd",
    ] {
        assert!(paths.iter().any(|x| x == p), "{p} not read-only: {paths:?}");
    }
    assert!(
        paths.iter().any(|x| x == "/proc/sys"),
        "the defaults stay: {paths:?}"
    );
    // Privileged: writable, as containerd; v2: the cgroup2 mount is ro itself.
    let privileged = ro(&spec_on(&with(true, container), &[], false, &hier));
    assert!(privileged.is_empty(), "{privileged:?}");
    let masked = spec_on(&with(true, container), &[], false, &hier);
    let masked = masked.linux().as_ref().unwrap().masked_paths().clone();
    assert!(
        masked.unwrap_or_default().is_empty(),
        "privileged: nothing masked"
    );
    let v2 = ro(&spec_on(&with(false, container), &[], true, &hier));
    assert!(
        !v2.iter().any(|x| x.starts_with("/sys/fs/cgroup")),
        "{v2:?}"
    );
    // A pod-wide PID namespace on v1 gets no /sys/fs/cgroup at all.
    let pod = ro(&spec_on(
        &with(false, v1::NamespaceMode::Pod as i32),
        &[],
        false,
        &hier,
    ));
    assert!(
        !pod.iter().any(|x| x.starts_with("/sys/fs/cgroup")),
        "{pod:?}"
    );
}
