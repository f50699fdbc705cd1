//! Pods from manifests with `spec.hostUsers: false`, end to end: each gets its own 65536 IDs
//! from the node's range (`pod-userns-ids`, two blocks here), `/proc/self/uid_map` inside
//! shows it, ConfigMap/Secret/emptyDir volumes are readable and writable as the container's
//! user, a third pod waits with FailedCreatePodSandBox while both blocks are held, the
//! mappings survive kill -9 of the daemon (same mapping, no block handed out twice), and a
//! deleted pod's block goes to the waiting pod. Host namespaces with hostUsers: false are
//! refused at apply, as the API server does.

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use kinglet_tests::*;

/// 65536 × 3000: the node's range for this test, two pods' worth.
const FIRST: u32 = 196_608_000;
const BLOCK: u32 = 65536;

fn pod(name: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  hostUsers: false
  terminationGracePeriodSeconds: 1
  securityContext: {{runAsUser: 1000, runAsGroup: 1000, fsGroup: 2000}}
  containers:
  - name: c
    image: kinglet.test/busybox:latest
    imagePullPolicy: IfNotPresent
    command: [sleep, "3600"]
    volumeMounts:
    - {{name: cm, mountPath: /cm}}
    - {{name: sec, mountPath: /sec}}
    - {{name: scratch, mountPath: /scratch}}
  volumes:
  - {{name: cm, configMap: {{name: greeting}}}}
  - {{name: sec, secret: {{secretName: creds, defaultMode: 0440}}}}
  - {{name: scratch, emptyDir: {{}}}}
"#
    )
}

const OBJECTS: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: greeting}
data: {hello: world}
---
apiVersion: v1
kind: Secret
metadata: {name: creds}
stringData: {pw: hunter2}
"#;

fn uid_map(d: &Daemon, pod: &str) -> String {
    let out = d.cli_ok(&[
        "exec",
        pod,
        "--",
        "cat",
        "/proc/self/uid_map",
        "/proc/self/gid_map",
    ]);
    out.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join("\n")
}

fn mapped(first: u32) -> String {
    format!("0 {first} 65536\n0 {first} 65536")
}

fn phase(d: &Daemon, pod: &str) -> String {
    pod_json(d, pod)["status"]["phase"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

fn waiting_message(d: &Daemon, pod: &str) -> String {
    pod_json(d, pod)["status"]["containerStatuses"][0]["state"]["waiting"]["message"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

/// The pod uids holding a mapping file under the daemon's root.
fn held(d: &Daemon) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(d.root.join("userns"))
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .filter_map(|n| n.strip_suffix(".json").map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn uid_of(d: &Daemon, pod: &str) -> String {
    pod_json(d, pod)["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn manifest_pods_with_host_users_false_get_their_own_id_ranges() {
    require_root();
    let mut d =
        Daemon::start_with_config(&format!("pod-userns-ids = \"{FIRST}:{}\"\n", 2 * BLOCK)).await;
    d.import_test_image().await;
    let dir = d.dir.path().to_owned();

    // The API server's rule: no host namespaces with hostUsers: false.
    let bad = write(
        &dir,
        "bad.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: bad}\nspec:\n  hostUsers: false\n  hostNetwork: true\n  containers: [{name: c, image: kinglet.test/busybox:latest}]\n",
    );
    let out = d.cli(&["apply", "-f", &bad]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("spec.hostNetwork: Forbidden: when `hostUsers` is false"),
        "{err}"
    );

    let f = write(
        &dir,
        "pods.yaml",
        &format!("{OBJECTS}---{}---{}", pod("ua"), pod("ub")),
    );
    let out = d.cli_ok(&["apply", "-f", &f]);
    assert!(!out.contains("ignored"), "hostUsers is acted on: {out}");
    for p in ["ua", "ub"] {
        d.wait_or_explain(&format!("{p} running"), Duration::from_secs(60), || {
            phase(&d, p) == "Running"
        });
    }
    // Disjoint ranges, lowest first, uids and gids alike.
    let (ma, mb) = (uid_map(&d, "ua"), uid_map(&d, "ub"));
    let mut got = [ma.clone(), mb.clone()];
    got.sort();
    assert_eq!(got, [mapped(FIRST), mapped(FIRST + BLOCK)]);

    // Volumes as the container's user (1000, group 1000, fsGroup 2000).
    let script = "id; cat /cm/hello; echo; cat /sec/pw; echo; stat -L -c '%u:%g %a' /sec/pw; \
                  echo data > /scratch/f && stat -c '%u:%g' /scratch/f";
    let out = d.cli_ok(&["exec", "ua", "--", "sh", "-c", script]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("uid=1000(") && lines[0].contains(" gid=1000("),
        "{out}"
    );
    assert!(
        lines[0].contains(",2000"),
        "fsGroup among the groups: {out}"
    );
    assert_eq!(
        lines[1..],
        ["world", "hunter2", "0:2000 440", "1000:2000"],
        "{out}"
    );
    // On the host, the emptyDir file is stored under the container's ids (idmapped mount) and
    // the container's processes run as the pod's host ids.
    let ua = uid_of(&d, "ua");
    let file = std::process::Command::new("find")
        .arg(d.root.join("volumes").join(&ua))
        .args(["-name", "f", "-type", "f"])
        .output()
        .unwrap();
    let file = String::from_utf8_lossy(&file.stdout).trim().to_owned();
    let meta = std::fs::metadata(&file).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (1000, 2000), "{file}");
    let ua_first = if ma == mapped(FIRST) {
        FIRST
    } else {
        FIRST + BLOCK
    };
    let ps = sh("ps", &["-eo", "uid,args"]);
    assert!(
        ps.lines().any(|l| l
            .trim_start()
            .starts_with(&format!("{} sleep 3600", ua_first + 1000))),
        "a sleep of ua runs as host uid {}: {ps}",
        ua_first + 1000
    );

    // A third pod while both blocks are held: it waits, saying why.
    let fc = write(&dir, "uc.yaml", &pod("uc"));
    d.cli_ok(&["apply", "-f", &fc]);
    wait_for("uc refused", Duration::from_secs(30), || {
        waiting_message(&d, "uc").contains("no free user namespace")
    });
    let desc = d.cli_ok(&["describe", "pod", "uc"]);
    assert!(desc.contains("FailedCreatePodSandBox"), "{desc}");
    let ub = uid_of(&d, "ub");
    let mut both = vec![ua.clone(), ub.clone()];
    both.sort();
    assert_eq!(held(&d), both);

    // kill -9 and a new daemon: same mappings, same containers, and still no third block.
    let before = container_id(&pod_json(&d, "ua"), "c");
    d.kill9();
    d.spawn().await;
    assert_eq!(uid_map(&d, "ua"), ma);
    assert_eq!(uid_map(&d, "ub"), mb);
    assert_eq!(container_id(&pod_json(&d, "ua"), "c"), before);
    std::thread::sleep(Duration::from_secs(3));
    assert_ne!(phase(&d, "uc"), "Running");
    assert!(
        waiting_message(&d, "uc").contains("no free user namespace"),
        "{}",
        waiting_message(&d, "uc")
    );
    assert_eq!(held(&d), both);

    // Deleting ua frees its block, which the waiting pod then gets.
    d.cli_ok(&["delete", "pod", "ua"]);
    wait_for("uc running", Duration::from_secs(90), || {
        phase(&d, "uc") == "Running"
    });
    assert_eq!(uid_map(&d, "uc"), ma);
    let uc = uid_of(&d, "uc");
    let mut now = vec![ub, uc];
    now.sort();
    wait_for("ua's file removed", Duration::from_secs(30), || {
        held(&d) == now
    });

    d.cli_ok(&["delete", "pod", "ub"]);
    d.cli_ok(&["delete", "pod", "uc"]);
    wait_for("all ranges free", Duration::from_secs(90), || {
        held(&d).is_empty()
    });
    d.shutdown().await;
}
