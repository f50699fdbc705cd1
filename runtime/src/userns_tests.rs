use super::*;

fn map(container_id: u32, host_id: u32, length: u32) -> v1::IdMapping {
    v1::IdMapping {
        host_id,
        container_id,
        length,
    }
}

fn opts(mode: v1::NamespaceMode, uids: Vec<v1::IdMapping>) -> v1::UserNamespace {
    v1::UserNamespace {
        mode: mode as i32,
        gids: uids.clone(),
        uids,
    }
}

fn pod(o: &v1::UserNamespace) -> Result<Option<UsernsRecord>, CriError> {
    pod_userns(Some(o), NsMode::Pod, NsMode::Pod, NsMode::Container)
}

fn invalid_field(r: Result<Option<UsernsRecord>, CriError>) -> String {
    match r {
        Err(CriError::InvalidArgument { field, .. }) => field,
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
}

#[test]
fn no_options_or_node_mode_is_the_hosts() {
    assert_eq!(
        pod_userns(None, NsMode::Node, NsMode::Node, NsMode::Node).unwrap(),
        None
    );
    assert_eq!(pod(&opts(v1::NamespaceMode::Node, vec![])).unwrap(), None);
    // Mappings with NODE are the client's mistake.
    let r = pod(&opts(v1::NamespaceMode::Node, vec![map(0, 1000, 10)]));
    assert!(invalid_field(r).ends_with("userns_options"));
}

#[test]
fn pod_mode_keeps_its_single_mapping() {
    let rec = pod(&opts(v1::NamespaceMode::Pod, vec![map(0, 1000, 100000)]))
        .unwrap()
        .expect("a pod user namespace");
    let want = IdMapRecord {
        container_id: 0,
        host_id: 1000,
        length: 100000,
    };
    assert_eq!(
        (rec.uids.as_slice(), rec.gids.as_slice()),
        (&[want][..], &[want][..])
    );
    assert_eq!(
        kinglet_netns::userns::map_text(&rec.maps().uids),
        "0 1000 100000\n"
    );
    assert_eq!(
        rec.to_cri(),
        opts(v1::NamespaceMode::Pod, vec![map(0, 1000, 100000)])
    );
}

#[test]
fn bad_mappings_are_refused_naming_the_field() {
    let two = vec![map(0, 1000, 100000), map(0, 2000, 100000)];
    let r = pod(&opts(v1::NamespaceMode::Pod, two));
    assert!(invalid_field(r).ends_with("userns_options.uids"));
    let r = pod(&opts(v1::NamespaceMode::Pod, vec![map(1, 1000, 100000)]));
    assert!(invalid_field(r).ends_with(".uids"));
    let r = pod(&opts(v1::NamespaceMode::Pod, vec![]));
    assert!(invalid_field(r).ends_with(".uids"));
    let r = pod(&opts(v1::NamespaceMode::Pod, vec![map(0, 1000, 0)]));
    assert!(invalid_field(r).ends_with(".uids"));
    let r = pod(&opts(v1::NamespaceMode::Pod, vec![map(0, u32::MAX, 2)]));
    assert!(invalid_field(r).ends_with(".uids"));
    // Bad gids alone are caught too.
    let mut o = opts(v1::NamespaceMode::Pod, vec![map(0, 1000, 10)]);
    o.gids = vec![map(5, 1000, 10)];
    assert!(invalid_field(pod(&o)).ends_with(".gids"));
}

#[test]
fn container_and_target_modes_are_refused() {
    for mode in [v1::NamespaceMode::Container, v1::NamespaceMode::Target] {
        let r = pod(&opts(mode, vec![]));
        assert!(invalid_field(r).ends_with("userns_options.mode"));
    }
}

#[test]
fn pod_userns_needs_pod_network_ipc_and_no_host_pids() {
    let o = opts(v1::NamespaceMode::Pod, vec![map(0, 1000, 10)]);
    for (net, ipc, pid) in [
        (NsMode::Node, NsMode::Pod, NsMode::Pod),
        (NsMode::Pod, NsMode::Node, NsMode::Pod),
        (NsMode::Pod, NsMode::Pod, NsMode::Node),
    ] {
        let e = pod_userns(Some(&o), net, ipc, pid).unwrap_err().to_string();
        assert!(e.contains("host's"), "{e}");
    }
}

fn container_with(o: Option<v1::UserNamespace>) -> v1::ContainerConfig {
    v1::ContainerConfig {
        linux: Some(v1::LinuxContainerConfig {
            security_context: Some(v1::LinuxContainerSecurityContext {
                namespace_options: Some(v1::NamespaceOption {
                    userns_options: o,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn a_container_must_repeat_its_pods_options_or_give_none() {
    let o = opts(v1::NamespaceMode::Pod, vec![map(0, 1000, 10)]);
    let rec = pod(&o).unwrap().unwrap();
    check_container(&container_with(None), Some(&rec)).unwrap();
    check_container(&container_with(Some(o.clone())), Some(&rec)).unwrap();
    let other = opts(v1::NamespaceMode::Pod, vec![map(0, 2000, 10)]);
    assert!(check_container(&container_with(Some(other)), Some(&rec)).is_err());
    let node = opts(v1::NamespaceMode::Node, vec![]);
    assert!(check_container(&container_with(Some(node.clone())), Some(&rec)).is_err());
    check_container(&container_with(Some(node)), None).unwrap();
    assert!(check_container(&container_with(Some(o)), None).is_err());
}

#[test]
fn apply_without_a_pod_userns_leaves_the_spec_alone() {
    let spec = Spec::default();
    let out = apply(
        spec.clone(),
        &PodNamespaces::default(),
        Path::new("/nonexistent"),
    )
    .unwrap();
    assert_eq!(out, spec);
}

#[test]
fn run_root_ancestors_must_be_searchable() {
    use std::os::unix::fs::PermissionsExt;
    let t = tempfile::tempdir().unwrap();
    let top = t.path().join("top");
    let run = top.join("state/run");
    std::fs::create_dir_all(&run).unwrap();
    let chmod = |p: &Path, m| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m));
    chmod(t.path(), 0o711).unwrap();
    chmod(&top, 0o711).unwrap();
    chmod(&top.join("state"), 0o755).unwrap();
    check_reachable(&run).unwrap();
    chmod(&top, 0o700).unwrap();
    let e = check_reachable(&run).unwrap_err().to_string();
    assert!(
        e.contains(&top.display().to_string()) && e.contains("0700"),
        "{e}"
    );
    assert!(e.contains("chmod o+x"), "{e}");
}

#[test]
fn layers_share_their_closest_common_directory() {
    let p = |s: &str| PathBuf::from(s);
    assert_eq!(
        common_ancestor(&[p("/s/layers/aa"), p("/s/layers/bb")]),
        Some(p("/s/layers"))
    );
    assert_eq!(
        common_ancestor(&[p("/s/layers/aa")]),
        Some(p("/s/layers/aa"))
    );
    assert_eq!(common_ancestor(&[p("/a/x"), p("/b/y")]), Some(p("/")));
    assert_eq!(common_ancestor(&[]), None);
}

#[test]
fn kernel_releases_parse_to_major_minor() {
    assert_eq!(kernel_version("6.18.44-fc-v857"), Some((6, 18)));
    assert_eq!(kernel_version("6.1.0-28-amd64"), Some((6, 1)));
    assert_eq!(kernel_version("5.19"), Some((5, 19)));
    assert_eq!(kernel_version("garbage"), None);
    assert!(kernel_version("6.1.0-28-amd64").unwrap() < MIN_KERNEL);
}
