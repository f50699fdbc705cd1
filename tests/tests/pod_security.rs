//! Pod security context and pod resources, end to end: runAsNonRoot (refused before the
//! container exists), fsGroup (groups of the process, ownership of volumes, kept across
//! ConfigMap updates), sysctls (set inside the pod's namespaces, refused at admission or as
//! InvalidArgument over the CRI), and the node's pod pids limit (a fork loop hits it).
//! Checked from inside the containers, as the user they run as.

use std::time::Duration;

use kinglet_proto::v1;
use kinglet_tests::*;

const PIDS_LIMIT: i64 = 24;

fn pods(hostpath: &str, color: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: ConfigMap
metadata: {{name: colors}}
data: {{color: {color}}}
---
apiVersion: v1
kind: Secret
metadata: {{name: creds}}
stringData: {{pw: hunter2}}
---
apiVersion: v1
kind: Pod
metadata: {{name: nonroot-image}}
spec:
  securityContext: {{runAsNonRoot: true}}
  containers:
  - {{name: c, image: kinglet.test/busybox:latest, imagePullPolicy: IfNotPresent, command: [sleep, "3600"]}}
---
apiVersion: v1
kind: Pod
metadata: {{name: nonroot-zero}}
spec:
  securityContext: {{runAsNonRoot: true, runAsUser: 1000}}
  containers:
  - name: c
    image: kinglet.test/busybox:latest
    imagePullPolicy: IfNotPresent
    command: [sleep, "3600"]
    securityContext: {{runAsUser: 0}}
---
apiVersion: v1
kind: Pod
metadata: {{name: owned}}
spec:
  securityContext:
    runAsNonRoot: true
    runAsUser: 1000
    runAsGroup: 3000
    fsGroup: 2000
    supplementalGroups: [4000]
  containers:
  - name: c
    image: kinglet.test/busybox:latest
    imagePullPolicy: IfNotPresent
    command: [sleep, "3600"]
    volumeMounts:
    - {{name: scratch, mountPath: /scratch}}
    - {{name: mem, mountPath: /mem}}
    - {{name: cm, mountPath: /cm}}
    - {{name: secret, mountPath: /secret}}
    - {{name: host, mountPath: /host}}
  volumes:
  - {{name: scratch, emptyDir: {{}}}}
  - {{name: mem, emptyDir: {{medium: Memory}}}}
  - {{name: cm, configMap: {{name: colors}}}}
  - {{name: secret, secret: {{secretName: creds, defaultMode: 0400}}}}
  - {{name: host, hostPath: {{path: {hostpath}, type: Directory}}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: tuned}}
spec:
  securityContext:
    sysctls:
    - {{name: kernel.shm_rmid_forced, value: "1"}}
    - {{name: net.ipv4.ip_local_port_range, value: "20000 30000"}}
    - {{name: kernel.msgmax, value: "12345"}}
  containers:
  - {{name: c, image: kinglet.test/busybox:latest, imagePullPolicy: IfNotPresent, command: [sleep, "3600"]}}
---
apiVersion: v1
kind: Pod
metadata: {{name: unsafe-sysctl}}
spec:
  securityContext:
    sysctls: [{{name: kernel.msgmnb, value: "1"}}]
  containers:
  - {{name: c, image: kinglet.test/busybox:latest, imagePullPolicy: IfNotPresent, command: [sleep, "3600"]}}
---
apiVersion: v1
kind: Pod
metadata: {{name: hostnet-sysctl}}
spec:
  hostNetwork: true
  securityContext:
    sysctls: [{{name: net.ipv4.tcp_syncookies, value: "1"}}]
  containers:
  - {{name: c, image: kinglet.test/busybox:latest, imagePullPolicy: IfNotPresent, command: [sleep, "3600"]}}
---
apiVersion: v1
kind: Pod
metadata: {{name: caps}}
spec:
  containers:
  - name: c
    image: kinglet.test/busybox:latest
    imagePullPolicy: IfNotPresent
    command: [sleep, "3600"]
    securityContext:
      capabilities: {{drop: [ALL], add: [NET_BIND_SERVICE]}}
      allowPrivilegeEscalation: false
  - {{name: plain, image: kinglet.test/busybox:latest, imagePullPolicy: IfNotPresent, command: [sleep, "3600"]}}
---
apiVersion: v1
kind: Pod
metadata: {{name: forker}}
spec:
  restartPolicy: Never
  containers:
  - name: c
    image: kinglet.test/busybox:latest
    imagePullPolicy: IfNotPresent
    command: [sh, -c, 'i=0; last=; while true; do sleep 60 & [ "$!" = "$last" ] && break; last=$!; i=$((i+1)); echo "started $i"; [ $i -ge 500 ] && break; done; exit 3']
"#
    )
}

fn waiting(pod: &serde_json::Value) -> (String, String) {
    let w = &pod["status"]["containerStatuses"][0]["state"]["waiting"];
    (
        w["reason"].as_str().unwrap_or("").to_owned(),
        w["message"].as_str().unwrap_or("").to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn security_context_sysctls_and_pids_limit_of_pods_from_manifests() {
    let d = Daemon::start_with_config(&format!(
        "allowed-unsafe-sysctls = [\"kernel.msgmax\"]\npod-pids-limit = {PIDS_LIMIT}\n"
    ))
    .await;
    d.import_test_image().await;
    let dir = d.dir.path().to_owned();
    let host = dir.join("hostdir");
    std::fs::create_dir(&host).unwrap();
    let host_msgmax = std::fs::read_to_string("/proc/sys/kernel/msgmax").unwrap();
    let f = write(
        &dir,
        "pods.yaml",
        &pods(&host.display().to_string(), "blue"),
    );
    let out = d.cli_ok(&["apply", "-f", &f]);
    assert!(
        !out.contains("ignored") && !out.contains("warning"),
        "security fields are acted on, not ignored: {out}"
    );

    // The CRI reports the test image's user (none: root) as uid 0.
    let mut images = d.images().await;
    let img = images
        .image_status(v1::ImageStatusRequest {
            image: Some(v1::ImageSpec {
                image: IMAGE.into(),
                ..Default::default()
            }),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
        .image
        .unwrap();
    assert_eq!(
        (img.uid.map(|u| u.value), img.username.as_str()),
        (Some(0), "")
    );

    // runAsNonRoot: the container is never created, and the reason says why.
    for (pod, want) in [
        (
            "nonroot-image",
            "container has runAsNonRoot and image will run as root",
        ),
        (
            "nonroot-zero",
            "container's runAsUser breaks non-root policy",
        ),
    ] {
        wait_for(&format!("{pod} refused"), Duration::from_secs(30), || {
            waiting(&pod_json(&d, pod)).0 == "CreateContainerConfigError"
        });
        let p = pod_json(&d, pod);
        let uid = p["metadata"]["uid"].as_str().unwrap();
        let (_, msg) = waiting(&p);
        assert_eq!(
            msg,
            format!("{want} (pod: \"{pod}_default({uid})\", container: c)")
        );
        assert_eq!(container_id(&p, "c"), "", "{pod}: no container was created");
        assert_eq!(p["status"]["phase"], "Pending");
    }

    // Sysctls outside the allowlist, or of a namespace shared with the host: refused at
    // admission, as the kubelet does.
    for (pod, why) in [
        ("unsafe-sysctl", "\"kernel.msgmnb\" not allowlisted"),
        (
            "hostnet-sysctl",
            "\"net.ipv4.tcp_syncookies\" not allowed with host net enabled",
        ),
    ] {
        wait_for(&format!("{pod} rejected"), Duration::from_secs(30), || {
            pod_json(&d, pod)["status"]["phase"] == "Failed"
        });
        let s = &pod_json(&d, pod)["status"];
        assert_eq!(s["reason"], "SysctlForbidden", "{s}");
        assert_eq!(
            s["message"].as_str().unwrap(),
            format!("Pod was rejected: forbidden sysctl: {why}")
        );
    }

    for pod in ["owned", "tuned", "caps"] {
        wait_for(&format!("{pod} running"), Duration::from_secs(30), || {
            pod_json(&d, pod)["status"]["phase"] == "Running"
        });
    }
    let ex = |pod: &str, script: &str| d.cli_ok(&["exec", pod, "--", "sh", "-c", script]);

    // Capabilities as seen from inside: drop ALL + add NET_BIND_SERVICE leaves only that one
    // (bit 10) in every set, with no_new_privs; the neighbour has containerd's default set.
    let caps = d.cli_ok(&[
        "exec",
        "caps",
        "-c",
        "c",
        "--",
        "grep",
        "-E",
        "^(CapEff|CapBnd|CapPrm|NoNewPrivs)",
        "/proc/self/status",
    ]);
    assert_eq!(
        caps,
        "CapPrm:\t0000000000000400\nCapEff:\t0000000000000400\nCapBnd:\t0000000000000400\nNoNewPrivs:\t1\n"
    );
    let plain = d.cli_ok(&[
        "exec",
        "caps",
        "-c",
        "plain",
        "--",
        "grep",
        "^CapEff",
        "/proc/self/status",
    ]);
    assert_eq!(plain, "CapEff:\t00000000a80425fb\n");

    // fsGroup: a supplementary group of the process, and the group of every managed volume.
    let id = ex("owned", "id");
    assert!(
        id.starts_with("uid=1000") && id.contains(" gid=3000 groups="),
        "{id}"
    );
    let groups = id.split("groups=").nth(1).unwrap();
    assert!(groups.contains("2000") && groups.contains("4000"), "{id}");
    for vol in ["/scratch", "/mem"] {
        assert_eq!(
            ex("owned", &format!("stat -c '%g %a' {vol}")),
            "2000 2777\n"
        );
        // A non-root user writes, and new files inherit the group (setgid directory).
        assert_eq!(
            ex(
                "owned",
                &format!("echo hi > {vol}/f && stat -c '%u %g' {vol}/f")
            ),
            "1000 2000\n",
            "{vol}"
        );
    }
    assert_eq!(ex("owned", "stat -L -c '%g %a' /cm/color"), "2000 644\n");
    assert_eq!(ex("owned", "stat -L -c '%g %a' /secret/pw"), "2000 440\n");
    assert_eq!(ex("owned", "cat /secret/pw /cm/color"), "hunter2blue");
    assert_eq!(ex("owned", "stat -c '%g' /cm /secret"), "2000\n2000\n");
    // hostPath is not managed.
    assert_eq!(ex("owned", "stat -c '%g' /host"), "0\n");
    assert!(ex("owned", "touch /host/x 2>&1; echo rc=$?").contains("rc=1"));

    // A ConfigMap update keeps the ownership.
    let f = write(
        &dir,
        "pods.yaml",
        &pods(&host.display().to_string(), "green"),
    );
    d.cli_ok(&["apply", "-f", &f]);
    wait_for("configmap update", Duration::from_secs(20), || {
        ex("owned", "cat /cm/color") == "green"
    });
    assert_eq!(ex("owned", "stat -L -c '%g %a' /cm/color"), "2000 644\n");

    // Sysctls, set in the pod's own namespaces; the host's are untouched.
    assert_eq!(
        ex(
            "tuned",
            "cat /proc/sys/kernel/shm_rmid_forced /proc/sys/net/ipv4/ip_local_port_range /proc/sys/kernel/msgmax"
        ),
        "1\n20000\t30000\n12345\n"
    );
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/msgmax").unwrap(),
        host_msgmax
    );

    // The pod pids limit: on the pod's cgroup, and a fork loop runs into it.
    wait_for("forker failed", Duration::from_secs(30), || {
        pod_json(&d, "forker")["status"]["phase"] == "Failed"
    });
    let log = d.cli_ok(&["logs", "forker"]);
    let started = log
        .lines()
        .filter_map(|l| l.strip_prefix("started "))
        .filter_map(|n| n.trim().parse::<i64>().ok())
        .max()
        .unwrap_or(0);
    assert!(
        started > PIDS_LIMIT / 2 && started < PIDS_LIMIT,
        "forks stopped at {started} (limit {PIDS_LIMIT}): {log}"
    );
    let mut rt = d.runtime().await;
    let sandbox = rt
        .list_pod_sandbox(v1::ListPodSandboxRequest {
            filter: Some(v1::PodSandboxFilter {
                label_selector: [("io.kubernetes.pod.name".to_string(), "forker".to_string())]
                    .into_iter()
                    .collect(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .items
        .remove(0)
        .id;
    assert_eq!(
        std::fs::read_to_string(format!("/sys/fs/cgroup/pids/kinglet/{sandbox}/pids.max"))
            .unwrap()
            .trim(),
        PIDS_LIMIT.to_string()
    );
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cri_sandbox_sysctls_apply_in_the_pod_namespaces_or_are_invalid() {
    let d = Daemon::start().await;
    d.import_test_image().await;
    let mut rt = d.runtime().await;
    let logs = d.dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let host_range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap();

    // As critest does: safe sysctls of the ipc and net namespaces, read from a container.
    let mut cfg = pod_config("sysctls", &logs);
    cfg.linux = Some(v1::LinuxPodSandboxConfig {
        sysctls: [
            ("kernel.shm_rmid_forced".to_string(), "1".to_string()),
            (
                "net.ipv4.ip_local_port_range".to_string(),
                "1024 65000".to_string(),
            ),
        ]
        .into_iter()
        .collect(),
        ..Default::default()
    });
    let pod = run_pod(&mut rt, &cfg).await;
    let c = run_container(&mut rt, &pod, &cfg, sh_container("c", "sleep 3600")).await;
    let (out, _, code) = exec(
        &mut rt,
        &c,
        &[
            "cat",
            "/proc/sys/kernel/shm_rmid_forced",
            "/proc/sys/net/ipv4/ip_local_port_range",
        ],
    )
    .await;
    assert_eq!((out.as_str(), code), ("1\n1024\t65000\n", 0));
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap(),
        host_range
    );

    // Sysctls that cannot be set in the pod's own namespaces are the client's error.
    let node = v1::NamespaceMode::Node as i32;
    for (i, (key, value, net)) in [
        ("vm.swappiness", "10", v1::NamespaceMode::Pod as i32),
        ("net.ipv4.tcp_syncookies", "1", node),
        (
            "net.ipv4.no_such_sysctl",
            "1",
            v1::NamespaceMode::Pod as i32,
        ),
        (
            "kernel.shm_rmid_forced",
            "not-a-number",
            v1::NamespaceMode::Pod as i32,
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let mut cfg = pod_config(&format!("bad{i}"), &logs);
        cfg.linux = Some(v1::LinuxPodSandboxConfig {
            sysctls: [(key.to_string(), value.to_string())].into_iter().collect(),
            security_context: Some(v1::LinuxSandboxSecurityContext {
                namespace_options: Some(v1::NamespaceOption {
                    network: net,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
        let e = rt
            .run_pod_sandbox(v1::RunPodSandboxRequest {
                config: Some(cfg),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{key}: {e:?}");
        assert!(e.message().contains(key), "{key}: {}", e.message());
    }
    // Nothing is left of the refused sandboxes.
    let left = rt
        .list_pod_sandbox(v1::ListPodSandboxRequest::default())
        .await
        .unwrap()
        .into_inner()
        .items;
    assert_eq!(left.len(), 1, "{left:?}");
    d.shutdown().await;
}

/// The cgroup hierarchies are read-only in an unprivileged container (libcontainer mounts
/// cgroup v1 hierarchies writable whatever the mount says); a privileged one has nothing
/// masked or read-only: `sysctl -w` of a namespaced key works, as with containerd.
#[tokio::test(flavor = "multi_thread")]
async fn cgroups_read_only_unless_privileged_and_proc_sys_writable_when_privileged() {
    let d = Daemon::start().await;
    d.import_test_image().await;
    let f = write(
        d.dir.path(),
        "p.yaml",
        r#"
apiVersion: v1
kind: Pod
metadata: {name: plain}
spec:
  containers:
  - {name: c, image: kinglet.test/busybox:latest, imagePullPolicy: IfNotPresent, command: [sleep, "3600"]}
---
apiVersion: v1
kind: Pod
metadata: {name: priv}
spec:
  containers:
  - name: c
    image: kinglet.test/busybox:latest
    imagePullPolicy: IfNotPresent
    command: [sleep, "3600"]
    securityContext: {privileged: true}
"#,
    );
    d.cli_ok(&["apply", "-f", &f]);
    for pod in ["plain", "priv"] {
        wait_for(&format!("{pod} running"), Duration::from_secs(30), || {
            pod_json(&d, pod)["status"]["phase"] == "Running"
        });
    }
    let ex = |pod: &str, script: &str| d.cli_ok(&["exec", pod, "--", "sh", "-c", script]);
    let cgroups = "ls /sys/fs/cgroup | wc -l; \
        for h in /sys/fs/cgroup/*; do mkdir $h/x 2>/dev/null && echo WRITABLE $h; done; \
        touch /sys/fs/cgroup/x 2>/dev/null && echo WRITABLE tmpfs; echo done";
    let out = ex("plain", cgroups);
    assert!(
        !out.contains("WRITABLE") && out.ends_with("done\n"),
        "{out}"
    );
    let listed: usize = out.lines().next().unwrap().trim().parse().unwrap();
    assert!(
        listed > 0,
        "the hierarchies are still there, read-only: {out}"
    );
    assert!(
        ex(
            "plain",
            "echo 0 > /proc/sys/net/ipv4/tcp_syncookies 2>/dev/null || echo RO"
        )
        .contains("RO"),
        "/proc/sys stays read-only in an unprivileged container"
    );
    let out = ex(
        "priv",
        "echo 0 > /proc/sys/net/ipv4/tcp_syncookies && cat /proc/sys/net/ipv4/tcp_syncookies",
    );
    assert_eq!(out.trim(), "0", "privileged: /proc/sys writable");
    d.shutdown().await;
}
