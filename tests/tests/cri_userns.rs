//! Pods with their own user namespace (the kubelet's `hostUsers: false`) over the CRI socket:
//! the pod's root is an unprivileged host uid, `/proc/self/uid_map` shows the mapping, the
//! image and a host volume are idmapped (their files keep their owners inside, what the pod
//! writes there is stored under the ids it used), bad mappings are refused with
//! InvalidArgument, and removing the pod leaves no mount, pin or process behind.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use kinglet_proto::v1;
use kinglet_tests::*;
use tonic::Code;

const HOST_ID: u32 = 200000;

fn userns(mode: v1::NamespaceMode, maps: Vec<(u32, u32, u32)>) -> v1::UserNamespace {
    let maps: Vec<v1::IdMapping> = maps
        .into_iter()
        .map(|(container_id, host_id, length)| v1::IdMapping {
            host_id,
            container_id,
            length,
        })
        .collect();
    v1::UserNamespace {
        mode: mode as i32,
        uids: maps.clone(),
        gids: maps,
    }
}

fn ns_options(u: v1::UserNamespace) -> v1::NamespaceOption {
    v1::NamespaceOption {
        pid: v1::NamespaceMode::Container as i32,
        userns_options: Some(u),
        ..Default::default()
    }
}

fn userns_pod(name: &str, logs: &Path, u: v1::UserNamespace) -> v1::PodSandboxConfig {
    let mut cfg = pod_config(name, logs);
    cfg.linux = Some(v1::LinuxPodSandboxConfig {
        security_context: Some(v1::LinuxSandboxSecurityContext {
            namespace_options: Some(ns_options(u)),
            ..Default::default()
        }),
        ..Default::default()
    });
    cfg
}

fn with_userns(mut c: v1::ContainerConfig, u: v1::UserNamespace) -> v1::ContainerConfig {
    c.linux = Some(v1::LinuxContainerConfig {
        security_context: Some(v1::LinuxContainerSecurityContext {
            namespace_options: Some(ns_options(u)),
            ..Default::default()
        }),
        ..Default::default()
    });
    c
}

async fn run_pod_err(
    rt: &mut v1::runtime_service_client::RuntimeServiceClient<tonic::transport::Channel>,
    cfg: &v1::PodSandboxConfig,
) -> tonic::Status {
    rt.run_pod_sandbox(v1::RunPodSandboxRequest {
        config: Some(cfg.clone()),
        ..Default::default()
    })
    .await
    .expect_err("RunPodSandbox must fail")
}

#[tokio::test(flavor = "multi_thread")]
async fn pod_user_namespace_maps_ids_and_idmaps_image_and_volumes() {
    let d = Daemon::start().await;
    d.import_test_image().await;
    let mut rt = d.runtime().await;
    let logs = d.dir.path().join("logs");
    let pod_ns = userns(v1::NamespaceMode::Pod, vec![(0, HOST_ID, 65536)]);
    let pod_cfg = userns_pod("userns", &logs, pod_ns.clone());

    // A private directory (0700) above the run root hides it from the pod's mapped root.
    let private = std::fs::Permissions::from_mode(0o700);
    std::fs::set_permissions(d.dir.path(), private).unwrap();
    let e = run_pod_err(&mut rt, &pod_cfg).await;
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(
        e.message().contains(&d.dir.path().display().to_string()),
        "{e:?}"
    );
    let searchable = std::fs::Permissions::from_mode(0o711);
    std::fs::set_permissions(d.dir.path(), searchable).unwrap();
    let pod = run_pod(&mut rt, &pod_cfg).await;

    // PodSandboxStatus reports the user namespace it was given.
    let st = rt
        .pod_sandbox_status(v1::PodSandboxStatusRequest {
            pod_sandbox_id: pod.clone(),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner();
    let opts = st
        .status
        .unwrap()
        .linux
        .unwrap()
        .namespaces
        .unwrap()
        .options
        .unwrap();
    assert_eq!(opts.userns_options, Some(pod_ns.clone()));

    // A host volume with a file of the host's root and one of uid 1234.
    let vol = d.dir.path().join("vol");
    std::fs::create_dir(&vol).unwrap();
    std::fs::write(vol.join("from-root"), "r").unwrap();
    std::fs::write(vol.join("from-1234"), "u").unwrap();
    std::os::unix::fs::chown(vol.join("from-1234"), Some(1234), Some(1234)).unwrap();
    let script = "cat /proc/self/uid_map /proc/self/gid_map; id -u; \
                  stat -c 'vol %n %u:%g' /data/from-root /data/from-1234; \
                  stat -c 'img %n %u:%g' /bin/busybox; \
                  touch /data/by-root && touch /data/by-1234 && chown 1234:1234 /data/by-1234 && \
                  test -x /img/bin/busybox && echo x > /written && echo ok; exec sleep 3600";
    let mut c = with_userns(sh_container("main", script), pod_ns.clone());
    c.mounts = vec![
        v1::Mount {
            container_path: "/data".into(),
            host_path: vol.display().to_string(),
            ..Default::default()
        },
        // An image volume (read-only overlayfs, which cannot be idmapped): readable.
        v1::Mount {
            container_path: "/img".into(),
            readonly: true,
            image: Some(v1::ImageSpec {
                image: IMAGE.into(),
                ..Default::default()
            }),
            ..Default::default()
        },
    ];
    let main = run_container(&mut rt, &pod, &pod_cfg, c).await;
    let log = logs.join("main.log");
    wait_for("the container's output", Duration::from_secs(20), || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains(" ok"))
    });
    let out = std::fs::read_to_string(&log).unwrap();
    let fields = |l: &str| l.split_whitespace().skip(3).collect::<Vec<_>>().join(" ");
    let lines: Vec<String> = out.lines().map(fields).collect();
    let want_map = format!("0 {HOST_ID} 65536");
    assert_eq!(lines[0], want_map, "uid_map: {out}");
    assert_eq!(lines[1], want_map, "gid_map: {out}");
    assert_eq!(lines[2], "0", "id -u: {out}");
    // Idmapped: files keep their owners as seen inside (not the overflow id 65534).
    assert!(out.contains("vol /data/from-root 0:0"), "{out}");
    assert!(out.contains("vol /data/from-1234 1234:1234"), "{out}");
    assert!(out.contains("img /bin/busybox 0:0"), "{out}");

    // On the host: the pod's root is the unprivileged HOST_ID ...
    let pid = init_pid(&mut rt, &main).await;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert_eq!(
        uid_line.split_whitespace().nth(1),
        Some("200000"),
        "{uid_line}"
    );
    // ... what it wrote on the idmapped volume keeps the ids it used ...
    let owner = |p: &Path| {
        let m = std::fs::metadata(p).unwrap();
        (m.uid(), m.gid())
    };
    assert_eq!(owner(&vol.join("by-root")), (0, 0));
    assert_eq!(owner(&vol.join("by-1234")), (1234, 1234));
    // ... and its writable layer holds its files under its host ids.
    let upper = d.root.join("containers").join(&main).join("upper/written");
    assert_eq!(owner(&upper), (HOST_ID, HOST_ID));
    // Exec joins the same user namespace.
    let (stdout, _, code) = exec(&mut rt, &main, &["cat", "/proc/self/uid_map"]).await;
    assert_eq!(
        (
            stdout.split_whitespace().collect::<Vec<_>>().join(" "),
            code
        ),
        (want_map, 0)
    );

    // An exec into a container of a non-root user runs as that user, without capabilities.
    let mut c = with_userns(sh_container("user", "exec sleep 3600"), pod_ns.clone());
    let sc = c.linux.as_mut().unwrap().security_context.as_mut().unwrap();
    sc.run_as_user = Some(v1::Int64Value { value: 1000 });
    let user = run_container(&mut rt, &pod, &pod_cfg, c).await;
    let script = "id -u; grep CapEff /proc/self/status; cat /proc/self/uid_map";
    let (stdout, _, code) = exec(&mut rt, &user, &["sh", "-c", script]).await;
    assert_eq!(code, 0, "{stdout}");
    let words: Vec<&str> = stdout.split_whitespace().collect();
    assert_eq!(
        words,
        [
            "1000",
            "CapEff:",
            "0000000000000000",
            "0",
            "200000",
            "65536"
        ]
    );

    // A container asking for another user namespace than its pod's is refused.
    let other = userns(v1::NamespaceMode::Pod, vec![(0, 300000, 65536)]);
    let e = rt
        .create_container(v1::CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(with_userns(sh_container("other", "true"), other)),
            sandbox_config: Some(pod_cfg.clone()),
        })
        .await
        .expect_err("a different user namespace");
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");

    remove_pod(&mut rt, &pod).await;
    assert!(
        mounts_under(&d.run_root).is_empty(),
        "{:?}",
        mounts_under(&d.run_root)
    );
    assert!(
        !d.run_root.join("pods").join(&pod).exists(),
        "pod dir left behind"
    );
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "container process left behind"
    );
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_user_namespace_options_are_refused() {
    let d = Daemon::start().await;
    let mut rt = d.runtime().await;
    let logs = d.dir.path().join("logs");
    let cases = [
        (
            "two",
            userns(v1::NamespaceMode::Pod, vec![(0, 1000, 10), (10, 5000, 10)]),
            "uids",
        ),
        (
            "no-root",
            userns(v1::NamespaceMode::Pod, vec![(1, 1000, 100000)]),
            "uids",
        ),
        ("empty", userns(v1::NamespaceMode::Pod, vec![]), "uids"),
        (
            "node-maps",
            userns(v1::NamespaceMode::Node, vec![(0, 1000, 10)]),
            "userns_options",
        ),
        (
            "container",
            userns(v1::NamespaceMode::Container, vec![]),
            "mode",
        ),
        ("target", userns(v1::NamespaceMode::Target, vec![]), "mode"),
    ];
    for (name, u, field) in cases {
        let e = run_pod_err(&mut rt, &userns_pod(name, &logs, u)).await;
        assert_eq!(e.code(), Code::InvalidArgument, "{name}: {e:?}");
        assert!(e.message().contains(field), "{name}: {e:?}");
    }
    // With the host's network namespace, too.
    let mut host_net = userns_pod(
        "hostnet",
        &logs,
        userns(v1::NamespaceMode::Pod, vec![(0, 1000, 10)]),
    );
    let sc = host_net
        .linux
        .as_mut()
        .unwrap()
        .security_context
        .as_mut()
        .unwrap();
    sc.namespace_options.as_mut().unwrap().network = v1::NamespaceMode::Node as i32;
    let e = run_pod_err(&mut rt, &host_net).await;
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    // Nothing was made for them.
    let pods = rt
        .list_pod_sandbox(v1::ListPodSandboxRequest::default())
        .await
        .unwrap()
        .into_inner()
        .items;
    assert!(pods.is_empty(), "{pods:?}");
    assert!(mounts_under(&d.run_root).is_empty());
    d.shutdown().await;
}
