//! Fault injection end to end: the daemon is crashed (`std::process::abort`, through
//! `KINGLET_CRASH_AT`) at every crash point of `kinglet_fault::POINTS` in turn, in the middle of
//! one pod's life driven over the CRI socket (image import and pull, RunPodSandbox with a
//! pod-wide PID namespace and a hostPort, CreateContainer, StartContainer, StopContainer,
//! RemoveContainer, StopPodSandbox, RemovePodSandbox, RemoveImage). The daemon is then
//! restarted, everything is removed through the CRI, and nothing may be left: no process (shim,
//! pod init, container), mount, veth, IPAM address, nftables element, cgroup or file beyond what
//! a clean run of the same life leaves.

use std::collections::BTreeSet;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::time::{Duration, Instant};

use kinglet_proto::v1;
use kinglet_proto::v1::image_service_client::ImageServiceClient;
use kinglet_proto::v1::runtime_service_client::RuntimeServiceClient;
use kinglet_tests::registry::{Mode, Registry};
use kinglet_tests::*;
use tonic::transport::Channel;

/// The env var every container of this test carries, to find its processes.
const MARKER: &str = "KINGLET_CRASH_TEST";

/// Why a round ended early: the daemon went away, or a call failed for another reason.
type Step = Result<(), String>;

fn fail(what: &str) -> impl FnOnce(tonic::Status) -> String + '_ {
    move |e| format!("{what}: {e}")
}

struct Round<'a> {
    d: &'a Daemon,
    reg: &'a Registry,
    pull: bool,
    host_port: u16,
    marker: String,
    /// The pod has its own user namespace (`hostUsers: false`).
    userns: bool,
}

impl Round<'_> {
    /// One pod's whole life; stops at the first failed call.
    async fn life(&self) -> Step {
        let out = self.d.cli(&[
            "image",
            "import",
            test_image().1.to_str().expect("utf-8 path"),
        ]);
        if !out.status.success() {
            return Err(format!(
                "image import: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let ch = connect(&self.d.socket).await.map_err(|e| e.to_string())?;
        let mut img = ImageServiceClient::new(ch.clone());
        let mut rt = RuntimeServiceClient::new(ch);
        if self.pull {
            img.pull_image(v1::PullImageRequest {
                image: Some(v1::ImageSpec {
                    image: format!("{}/crash/busybox:latest", self.reg.host),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .map_err(fail("PullImage"))?;
        }
        let mut pod_cfg =
            with_pod_pid_namespace(pod_config("crash", &self.d.dir.path().join("logs")));
        if self.userns {
            let map = vec![v1::IdMapping {
                host_id: 300000,
                container_id: 0,
                length: 65536,
            }];
            let sc = pod_cfg
                .linux
                .as_mut()
                .and_then(|l| l.security_context.as_mut());
            let ns = sc
                .and_then(|s| s.namespace_options.as_mut())
                .expect("ns options");
            ns.userns_options = Some(v1::UserNamespace {
                mode: v1::NamespaceMode::Pod as i32,
                uids: map.clone(),
                gids: map,
            });
        }
        pod_cfg.port_mappings = vec![v1::PortMapping {
            protocol: v1::Protocol::Tcp as i32,
            container_port: 8080,
            host_port: self.host_port as i32,
            host_ip: String::new(),
        }];
        let pod = rt
            .run_pod_sandbox(v1::RunPodSandboxRequest {
                config: Some(pod_cfg.clone()),
                ..Default::default()
            })
            .await
            .map_err(fail("RunPodSandbox"))?
            .into_inner()
            .pod_sandbox_id;
        let mut c = sh_container("c", "trap 'exit 0' TERM; sleep 3600 & wait");
        c.envs.push(v1::KeyValue {
            key: MARKER.into(),
            value: self.marker.clone().into(),
        });
        let cid = rt
            .create_container(v1::CreateContainerRequest {
                pod_sandbox_id: pod.clone(),
                config: Some(c),
                sandbox_config: Some(pod_cfg),
            })
            .await
            .map_err(fail("CreateContainer"))?
            .into_inner()
            .container_id;
        rt.start_container(v1::StartContainerRequest {
            container_id: cid.clone(),
        })
        .await
        .map_err(fail("StartContainer"))?;
        rt.stop_container(v1::StopContainerRequest {
            container_id: cid.clone(),
            timeout: 10,
        })
        .await
        .map_err(fail("StopContainer"))?;
        rt.remove_container(v1::RemoveContainerRequest {
            container_id: cid.clone(),
        })
        .await
        .map_err(fail("RemoveContainer"))?;
        rt.stop_pod_sandbox(v1::StopPodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .map_err(fail("StopPodSandbox"))?;
        rt.remove_pod_sandbox(v1::RemovePodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .map_err(fail("RemovePodSandbox"))?;
        remove_images(&mut img).await
    }
}

async fn remove_images(img: &mut ImageServiceClient<Channel>) -> Step {
    let images = img
        .list_images(v1::ListImagesRequest::default())
        .await
        .map_err(fail("ListImages"))?
        .into_inner()
        .images;
    for i in images {
        img.remove_image(v1::RemoveImageRequest {
            image: Some(v1::ImageSpec {
                image: i.id,
                ..Default::default()
            }),
        })
        .await
        .map_err(fail("RemoveImage"))?;
    }
    Ok(())
}

/// Remove every container, pod and image through the CRI of the restarted daemon.
async fn remove_everything(d: &Daemon) {
    let mut rt = d.runtime().await;
    let containers = rt
        .list_containers(v1::ListContainersRequest::default())
        .await
        .expect("ListContainers")
        .into_inner()
        .containers;
    for c in containers {
        rt.remove_container(v1::RemoveContainerRequest { container_id: c.id })
            .await
            .expect("RemoveContainer after the restart");
    }
    let pods = rt
        .list_pod_sandbox(v1::ListPodSandboxRequest::default())
        .await
        .expect("ListPodSandbox")
        .into_inner()
        .items;
    for p in pods {
        rt.remove_pod_sandbox(v1::RemovePodSandboxRequest {
            pod_sandbox_id: p.id,
        })
        .await
        .expect("RemovePodSandbox after the restart");
    }
    remove_images(&mut d.images().await)
        .await
        .expect("RemoveImage after the restart");
}

/// Ids of pods and containers the daemon's directories and records name right now.
fn ids_on_disk(d: &Daemon) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for dir in [
        d.run_root.join("pods"),
        d.run_root.join("containers"),
        d.root.join("containers"),
        d.root.join("state/sandboxes"),
        d.root.join("state/containers"),
    ] {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            out.insert(name.trim_end_matches(".json").to_owned());
        }
    }
    out
}

/// Every file and directory below `dir`, relative to it.
fn tree(dir: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(p) = todo.pop() {
        for e in std::fs::read_dir(&p).into_iter().flatten().flatten() {
            let path = e.path();
            out.insert(path.strip_prefix(dir).unwrap().display().to_string());
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                todo.push(path);
            }
        }
    }
    out
}

/// What may not grow across a crash: the daemon's files, mounts, veths, nftables rules.
#[derive(Debug, PartialEq)]
struct Inventory {
    root: BTreeSet<String>,
    run_root: BTreeSet<String>,
    mounts: Vec<String>,
    veths: String,
    nft: String,
}

/// The inventory once removed files are deleted: removed image layers (`images/tmp/trash-*`)
/// and removed containers' files (`trash/`) go in the background after the removal answered.
async fn settled_inventory(d: &Daemon) -> Inventory {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let inv = inventory(d);
        let deleting = inv
            .root
            .iter()
            .chain(&inv.run_root)
            .any(|p| p.starts_with("images/tmp/") || p.starts_with("trash/"));
        if !deleting || Instant::now() > deadline {
            return inv;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn inventory(d: &Daemon) -> Inventory {
    let veths = sh("ip", &["-o", "link", "show", "master", &d.net.bridge]);
    let nft = std::process::Command::new("nft")
        .args(["list", "table", "ip", &d.net.table])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    Inventory {
        // Logs and the image store's lock are the daemon's own; the rest must match.
        root: tree(&d.root),
        run_root: tree(&d.run_root)
            .into_iter()
            .filter(|p| !p.ends_with(".sock"))
            .collect(),
        mounts: all_mounts_under(d.dir.path()),
        veths,
        nft,
    }
}

/// Processes of this test: helpers whose arguments name the run root, containers carrying the
/// marker in their environment.
fn processes(d: &Daemon, marker: &str) -> Vec<String> {
    let run_root = d.run_root.display().to_string();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        let cmdline =
            String::from_utf8_lossy(&std::fs::read(e.path().join("cmdline")).unwrap_or_default())
                .replace('\0', " ");
        // The daemon itself (its arguments name the run root too).
        if cmdline.split(' ').nth(1) == Some("daemon") {
            continue;
        }
        let environ = std::fs::read(e.path().join("environ")).unwrap_or_default();
        let marked = environ
            .split(|b| *b == 0)
            .any(|kv| kv.starts_with(format!("{MARKER}={marker}").as_bytes()));
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        let zombie = stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z');
        if (cmdline.contains(&run_root) || marked) && !zombie {
            out.push(format!("{pid}: {cmdline}"));
        }
    }
    out
}

/// Pod and container cgroups (`/kinglet/<pod>[/<container>]`) in any hierarchy.
fn cgroups_of(ids: &BTreeSet<String>) -> Vec<String> {
    let mut out = Vec::new();
    let roots: Vec<_> = if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        vec![std::path::PathBuf::from("/sys/fs/cgroup")]
    } else {
        std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .collect()
    };
    for r in roots {
        for id in ids {
            let p = r.join("kinglet").join(id);
            if p.exists() {
                out.push(p.display().to_string());
            }
        }
    }
    out
}

/// Wait for the daemon to die of SIGABRT (the crash point); `None` if it is still running.
fn aborted(d: &mut Daemon, within: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + within;
    loop {
        let child = d.child().expect("daemon started");
        if let Some(st) = child.try_wait().unwrap() {
            return Some(st);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn no_leak_after_a_crash_at_any_point() {
    crash_at_every_point(false, |_| true).await;
}

/// The same with a pod user namespace (its pin, idmapped layers and mounts, and a pod init
/// inside it), at the crash points of pods and containers.
#[tokio::test(flavor = "multi_thread")]
async fn no_leak_after_a_crash_in_a_pod_with_a_user_namespace() {
    crash_at_every_point(true, |p| {
        p.starts_with("sandbox.") || p.starts_with("container.")
    })
    .await;
}

/// Crash the daemon at each of `kinglet_fault::POINTS` that `wanted` keeps, in turn, in one
/// pod's life (with a user namespace when `userns`), and check nothing is left behind.
async fn crash_at_every_point(userns: bool, wanted: impl Fn(&str) -> bool) {
    // A daemon built without crash points (release) fails this with "never reached".
    let started = Instant::now();
    let reg = Registry::start(Mode::Open);
    reg.push(&test_image().0, IMAGE, "crash/busybox:latest");
    let mut d = Daemon::unstarted("pod-pids-limit = 4321\n", |_| Vec::new());
    // Searchable by a pod's mapped root (see perms), as the run root's parents must be.
    let searchable = std::os::unix::fs::PermissionsExt::from_mode(0o711);
    std::fs::set_permissions(d.dir.path(), searchable).unwrap();
    d.spawn().await;
    let host_port = {
        let l = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let marker = d.dir.path().display().to_string();
    // A clean life: what it leaves is the baseline.
    Round {
        d: &d,
        reg: &reg,
        pull: true,
        host_port,
        marker: marker.clone(),
        userns,
    }
    .life()
    .await
    .expect("a life without crash");
    let baseline = settled_inventory(&d).await;
    let mut seen = ids_on_disk(&d);
    assert!(
        processes(&d, &marker).is_empty(),
        "{:?}",
        processes(&d, &marker)
    );
    d.kill9();

    let mut report = Vec::new();
    // KINGLET_CRASH_POINTS=a,b limits the run to those points (debugging).
    let only = std::env::var("KINGLET_CRASH_POINTS").unwrap_or_default();
    for point in kinglet_fault::POINTS {
        if !wanted(point) || (!only.is_empty() && !only.split(',').any(|p| p == *point)) {
            continue;
        }
        let t0 = Instant::now();
        d.start_armed(point).await;
        let t_start = t0.elapsed();
        let r = Round {
            d: &d,
            reg: &reg,
            pull: point.starts_with("pull."),
            host_port,
            marker: marker.clone(),
            userns,
        };
        let ended = r.life().await;
        let status = aborted(&mut d, Duration::from_secs(15));
        match (&ended, status) {
            (Err(_), Some(st)) if st.signal() == Some(libc::SIGABRT) => {}
            (Ok(()), None) => panic!("crash point {point} was never reached"),
            (e, st) => panic!(
                "crash point {point}: the life ended with {e:?}, daemon status {st:?}; log:\n{}",
                d.log()
            ),
        }
        let t_crash = t0.elapsed();
        d.kill9();
        seen.extend(ids_on_disk(&d));
        d.spawn().await;
        let t_restart = t0.elapsed();
        remove_everything(&d).await;
        seen.extend(ids_on_disk(&d));
        let t_clean = t0.elapsed();
        let leaks = leaks_after_cleanup(&d, &marker, &seen, &baseline).await;
        eprintln!(
            "{point}: armed daemon up {t_start:.1?}, crashed {t_crash:.1?}, restarted {t_restart:.1?}, cleaned {t_clean:.1?}, checked {:.1?}",
            t0.elapsed()
        );
        report.push((point, leaks));
        d.kill9();
    }
    let leaked: Vec<_> = report.iter().filter(|(_, l)| !l.is_empty()).collect();
    eprintln!(
        "crash points: {} tested in {:.0?}, {} leaked",
        report.len(),
        started.elapsed(),
        leaked.len()
    );
    assert!(
        leaked.is_empty(),
        "left behind after a crash:\n{}",
        leaked
            .iter()
            .map(|(p, l)| format!("{p}: {}", l.join("; ")))
            .collect::<Vec<_>>()
            .join("\n")
    );
    d.spawn().await;
    d.shutdown().await;
}

/// What is left after the cleanup, compared with `baseline`; waits up to 10 s for it to settle.
async fn leaks_after_cleanup(
    d: &Daemon,
    marker: &str,
    seen: &BTreeSet<String>,
    baseline: &Inventory,
) -> Vec<String> {
    // Exits of killed containers are seen asynchronously: give them a moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut leaks;
    loop {
        leaks = Vec::new();
        let procs = processes(d, marker);
        if !procs.is_empty() {
            leaks.push(format!("processes: {procs:?}"));
        }
        let cg = cgroups_of(seen);
        if !cg.is_empty() {
            leaks.push(format!("cgroups: {cg:?}"));
        }
        let inv = inventory(d);
        if inv != *baseline {
            leaks.push(format!(
                "root +{:?} -{:?}; run root +{:?} -{:?}; mounts {:?}; veths {:?}; nft equal: {}",
                inv.root.difference(&baseline.root).collect::<Vec<_>>(),
                baseline.root.difference(&inv.root).collect::<Vec<_>>(),
                inv.run_root
                    .difference(&baseline.run_root)
                    .collect::<Vec<_>>(),
                baseline
                    .run_root
                    .difference(&inv.run_root)
                    .collect::<Vec<_>>(),
                inv.mounts,
                inv.veths,
                inv.nft == baseline.nft,
            ));
            if inv.nft != baseline.nft {
                leaks.push(format!(
                    "nft now:\n{}\nbaseline:\n{}",
                    inv.nft, baseline.nft
                ));
            }
        }
        if leaks.is_empty() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    leaks
}
