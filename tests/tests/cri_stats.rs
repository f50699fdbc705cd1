//! The CRI stats RPCs on real containers: a container holding ~24 MiB and spinning shows that
//! memory in its working set and growing CPU time; a file written into its rootfs shows in its
//! writable layer; the sandbox filter returns exactly a pod's containers; a pod's stats cover
//! its containers, its cgroup and its network namespace; an exited container keeps its
//! attributes and writable layer; unknown ids are NotFound naming the id.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use kinglet_proto::v1;
use kinglet_tests::*;
use tonic::transport::Channel;
use tonic::Code;

type Rt = v1::runtime_service_client::RuntimeServiceClient<Channel>;

const MIB: u64 = 1024 * 1024;

async fn container_stats(rt: &mut Rt, id: &str) -> v1::ContainerStats {
    rt.container_stats(v1::ContainerStatsRequest {
        container_id: id.into(),
    })
    .await
    .expect("ContainerStats")
    .into_inner()
    .stats
    .expect("stats present")
}

fn working_set(s: &v1::ContainerStats) -> u64 {
    s.memory
        .as_ref()
        .and_then(|m| m.working_set_bytes.as_ref())
        .map_or(0, |v| v.value)
}

fn cpu_ns(s: &v1::ContainerStats) -> u64 {
    s.cpu
        .as_ref()
        .and_then(|c| c.usage_core_nano_seconds.as_ref())
        .expect("cpu usage present")
        .value
}

fn layer_bytes(s: &v1::ContainerStats) -> u64 {
    s.writable_layer
        .as_ref()
        .and_then(|w| w.used_bytes.as_ref())
        .expect("writable layer used bytes present")
        .value
}

async fn list_ids(rt: &mut Rt, filter: v1::ContainerStatsFilter) -> BTreeSet<String> {
    rt.list_container_stats(v1::ListContainerStatsRequest {
        filter: Some(filter),
    })
    .await
    .expect("ListContainerStats")
    .into_inner()
    .stats
    .into_iter()
    .map(|s| s.attributes.expect("attributes").id)
    .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn stats_report_cpu_memory_layer_and_pods() {
    let d = Daemon::start().await;
    d.import_test_image().await;
    let mut rt = d.runtime().await;
    let logs = d.dir.path().join("logs");

    let cfg_a = pod_config("stats-a", &logs);
    let pod_a = run_pod(&mut rt, &cfg_a).await;
    // 4 MiB written into the rootfs, then ~24 MiB held in a shell variable, then a busy loop.
    let mut hog = sh_container(
        "hog",
        "head -c 4194304 /dev/zero > /layer.bin; \
         x=$(head -c 25165824 /dev/zero | tr '\\0' a); touch /ready; \
         while :; do :; done",
    );
    hog.labels.insert("role".into(), "hog".into());
    let hog = run_container(&mut rt, &pod_a, &cfg_a, hog).await;
    let idle = run_container(&mut rt, &pod_a, &cfg_a, sh_container("idle", "sleep 1000")).await;
    let done = run_container(&mut rt, &pod_a, &cfg_a, sh_container("done", "true")).await;

    let cfg_b = pod_config("stats-b", &logs);
    let pod_b = run_pod(&mut rt, &cfg_b).await;
    let other = run_container(&mut rt, &pod_b, &cfg_b, sh_container("other", "sleep 1000")).await;

    // Memory: the working set reaches the ~24 MiB the shell holds.
    let deadline = Instant::now() + Duration::from_secs(60);
    let first = loop {
        let s = container_stats(&mut rt, &hog).await;
        // RSS can trail the working set by a few pages: wait for both.
        let rss = s
            .memory
            .as_ref()
            .and_then(|m| m.rss_bytes.as_ref())
            .map_or(0, |v| v.value);
        if working_set(&s) >= 20 * MIB && rss >= 20 * MIB {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "hog's working set or RSS stayed below 20 MiB: {:?}",
            s.memory
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let attrs = first.attributes.as_ref().unwrap();
    assert_eq!(attrs.id, hog);
    assert_eq!(attrs.metadata.as_ref().unwrap().name, "hog");
    assert_eq!(attrs.labels.get("role").map(String::as_str), Some("hog"));
    let mem = first.memory.as_ref().unwrap();
    assert!(mem.timestamp > 0);
    assert!(mem.usage_bytes.as_ref().unwrap().value >= working_set(&first));
    assert!(mem.rss_bytes.as_ref().unwrap().value >= 20 * MIB, "{mem:?}");
    assert!(mem.page_faults.as_ref().unwrap().value > 0, "{mem:?}");
    assert!(mem.major_page_faults.is_some());

    // CPU: cumulative time grows while it spins; the second sample has a rate.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let second = container_stats(&mut rt, &hog).await;
    let (c1, c2) = (cpu_ns(&first), cpu_ns(&second));
    assert!(c2 > c1 + 100_000_000, "cpu went from {c1} to {c2} ns");
    let cpu = second.cpu.as_ref().unwrap();
    assert!(cpu.timestamp > first.cpu.as_ref().unwrap().timestamp);
    let rate = cpu.usage_nano_cores.as_ref().expect("nanocores").value;
    assert!(rate > 100_000_000, "spinning at {rate} nanocores");

    // Writable layer: the 4 MiB file is there, not in the idle container's layer.
    let idle_stats = container_stats(&mut rt, &idle).await;
    assert!(
        layer_bytes(&second) >= 4 * MIB,
        "{:?}",
        second.writable_layer
    );
    assert!(
        layer_bytes(&idle_stats) < 4 * MIB,
        "{:?}",
        idle_stats.writable_layer
    );
    let layer = second.writable_layer.as_ref().unwrap();
    assert!(layer.inodes_used.as_ref().unwrap().value >= 2);
    assert!(!layer.fs_id.as_ref().unwrap().mountpoint.is_empty());
    assert!(idle_stats.cpu.is_some() && idle_stats.memory.is_some());

    // An exited container keeps its attributes and layer; its cgroup (CPU, memory) is gone.
    wait_exited(&mut rt, &done, Duration::from_secs(30)).await;
    let done_stats = container_stats(&mut rt, &done).await;
    assert_eq!(done_stats.attributes.as_ref().unwrap().id, done);
    assert!(done_stats.writable_layer.is_some());
    assert!(done_stats.cpu.is_none() && done_stats.memory.is_none());

    // Filters: by sandbox exactly its containers, by id prefix, by label.
    let want_a: BTreeSet<String> = [&hog, &idle, &done].map(|s| s.clone()).into();
    let by_pod = |id: &str| v1::ContainerStatsFilter {
        pod_sandbox_id: id.into(),
        ..Default::default()
    };
    assert_eq!(list_ids(&mut rt, by_pod(&pod_a)).await, want_a);
    assert_eq!(
        list_ids(&mut rt, by_pod(&pod_b)).await,
        BTreeSet::from([other.clone()])
    );
    let all = list_ids(&mut rt, v1::ContainerStatsFilter::default()).await;
    assert_eq!(all.len(), 4, "{all:?}");
    let by_id = v1::ContainerStatsFilter {
        id: idle[..12].into(),
        ..Default::default()
    };
    assert_eq!(
        list_ids(&mut rt, by_id).await,
        BTreeSet::from([idle.clone()])
    );
    let by_label = v1::ContainerStatsFilter {
        label_selector: [("role".to_string(), "hog".to_string())].into(),
        ..Default::default()
    };
    assert_eq!(
        list_ids(&mut rt, by_label).await,
        BTreeSet::from([hog.clone()])
    );

    // The pod: its cgroup holds the hog's memory, its containers are all there, its processes
    // counted, its network namespace's eth0 shown.
    let p = rt
        .pod_sandbox_stats(v1::PodSandboxStatsRequest {
            pod_sandbox_id: pod_a.clone(),
        })
        .await
        .expect("PodSandboxStats")
        .into_inner()
        .stats
        .expect("pod stats present");
    let pa = p.attributes.as_ref().unwrap();
    assert_eq!(pa.id, pod_a);
    assert_eq!(pa.metadata.as_ref().unwrap().name, "stats-a");
    let linux = p.linux.as_ref().expect("linux stats");
    let ids: BTreeSet<String> = linux
        .containers
        .iter()
        .map(|c| c.attributes.as_ref().unwrap().id.clone())
        .collect();
    assert_eq!(ids, want_a);
    let pod_ws = linux
        .memory
        .as_ref()
        .and_then(|m| m.working_set_bytes.as_ref())
        .expect("pod memory")
        .value;
    assert!(pod_ws >= 20 * MIB, "pod working set {pod_ws}");
    let pod_cpu = linux
        .cpu
        .as_ref()
        .and_then(|c| c.usage_core_nano_seconds.as_ref())
        .expect("pod cpu")
        .value;
    assert!(pod_cpu >= c1, "pod cpu {pod_cpu} below the hog's {c1}");
    let procs = linux
        .process
        .as_ref()
        .and_then(|p| p.process_count.as_ref())
        .expect("process count")
        .value;
    assert!(
        procs >= 2,
        "{procs} processes (hog's shell and idle's sleep at least)"
    );
    let net = linux.network.as_ref().expect("pod network");
    let eth0 = net.default_interface.as_ref().expect("eth0");
    assert_eq!(eth0.name, "eth0");
    assert!(eth0.rx_bytes.is_some() && eth0.tx_errors.is_some());
    assert!(net.interfaces.iter().all(|i| i.name != "lo"));

    // ListPodSandboxStats: both pods, or one by id.
    let list = |f: v1::PodSandboxStatsFilter| v1::ListPodSandboxStatsRequest { filter: Some(f) };
    let all = rt
        .list_pod_sandbox_stats(list(Default::default()))
        .await
        .expect("ListPodSandboxStats")
        .into_inner()
        .stats;
    let pods: BTreeSet<String> = all
        .iter()
        .map(|s| s.attributes.as_ref().unwrap().id.clone())
        .collect();
    assert_eq!(pods, BTreeSet::from([pod_a.clone(), pod_b.clone()]));
    let only_b = rt
        .list_pod_sandbox_stats(list(v1::PodSandboxStatsFilter {
            id: pod_b.clone(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .stats;
    assert_eq!(only_b.len(), 1);
    let b_containers = &only_b[0].linux.as_ref().unwrap().containers;
    assert_eq!(b_containers.len(), 1);
    assert_eq!(b_containers[0].attributes.as_ref().unwrap().id, other);

    // Unknown ids.
    let e = rt
        .container_stats(v1::ContainerStatsRequest {
            container_id: "feedface0000".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert!(e.message().contains("feedface0000"), "{}", e.message());
    let e = rt
        .pod_sandbox_stats(v1::PodSandboxStatsRequest {
            pod_sandbox_id: "deadbeef0000".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert!(e.message().contains("deadbeef0000"), "{}", e.message());

    // A stopped pod has no stats (as containerd: only ready sandboxes are measured).
    rt.stop_pod_sandbox(v1::StopPodSandboxRequest {
        pod_sandbox_id: pod_b.clone(),
    })
    .await
    .expect("StopPodSandbox");
    let e = rt
        .pod_sandbox_stats(v1::PodSandboxStatsRequest {
            pod_sandbox_id: pod_b.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{}", e.message());
    let left = rt
        .list_pod_sandbox_stats(list(Default::default()))
        .await
        .unwrap()
        .into_inner()
        .stats;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].attributes.as_ref().unwrap().id, pod_a);

    d.shutdown().await;
}
