//! `kinglet get -w` / `--watch-only` against a real daemon and real containers: the table
//! once, then a row for each change (a pod going Pending → Running, then its deletion), from
//! the daemon's `Objects/Watch` stream; other kinds; kubectl's refusals.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use kinglet_tests::*;

const POD: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: watched}
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - name: c
    image: kinglet.test/busybox:latest
    imagePullPolicy: Never
    command: ["sh", "-c", "exec sleep 3600"]
"#;

const CM: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: conf}
data: {mode: fast}
"#;

/// A `kinglet get ... -w` process whose stdout lines arrive on a channel.
struct Watcher {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Watcher {
    fn start(d: &Daemon, args: &[&str]) -> Watcher {
        let mut child = Command::new(kinglet_bin())
            .arg("get")
            .arg("--socket")
            .arg(&d.socket)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start kinglet get -w");
        let (tx, lines) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Watcher {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Wait for a line that `f` accepts; every line read is kept in `seen`.
    fn wait_line(&mut self, what: &str, within: Duration, f: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if f(&l) {
                        return l;
                    }
                }
                Err(_) => panic!(
                    "no line with {what} within {within:?}; got {:#?}",
                    self.seen
                ),
            }
        }
    }

    /// Stop the watch; its stderr.
    fn stop(mut self) -> String {
        let _ = self.child.kill();
        let out = self.child.wait_with_output().unwrap();
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

fn cols(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn get_watch_prints_the_table_once_then_a_row_per_change() {
    require_root();
    let d = Daemon::start().await;
    d.import_test_image().await;
    let pod = write(d.dir.path(), "pod.yaml", POD);
    let cm = write(d.dir.path(), "cm.yaml", CM);

    // Nothing yet: kubectl's message on stderr, then the header with the first row.
    let mut pods = Watcher::start(&d, &["pods", "-w"]);
    let mut names = Watcher::start(&d, &["configmaps", "--watch-only", "-o", "name"]);
    // The watch has begun once the daemon streams to it; give both clients time to connect.
    std::thread::sleep(Duration::from_secs(2));
    d.cli_ok(&["apply", "-f", &pod, "-f", &cm]);

    let header = pods.wait_line("the header", Duration::from_secs(30), |l| {
        l.starts_with("NAME")
    });
    assert_eq!(
        cols(&header),
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    );
    let first = pods.wait_line("the pod's first row", Duration::from_secs(30), |l| {
        l.starts_with("watched ")
    });
    let running = pods.wait_line("the pod Running", Duration::from_secs(60), |l| {
        cols(l).get(2) == Some(&"Running")
    });
    assert_eq!(cols(&running)[..2], ["watched", "1/1"], "{running}");
    assert_ne!(
        first, running,
        "the first row is the pod before it runs: {first}"
    );
    // Columns stay under the header's.
    assert_eq!(
        header.find("STATUS"),
        running.find("Running"),
        "{header}\n{running}"
    );
    names.wait_line("configmap/conf", Duration::from_secs(30), |l| {
        l == "configmap/conf"
    });

    // A second watch lists first: the table once, the running pod in it.
    let mut again = Watcher::start(&d, &["pods", "-w"]);
    again.wait_line("the header", Duration::from_secs(30), |l| {
        l.starts_with("NAME")
    });
    let listed = again.wait_line("the listed pod", Duration::from_secs(30), |l| {
        l.starts_with("watched ")
    });
    assert_eq!(cols(&listed)[2], "Running", "{listed}");

    // Deleting it: rows for its last states, the header never again.
    d.cli_ok(&["delete", "pod", "watched"]);
    d.cli_ok(&["delete", "configmap", "conf"]);
    let before = pods.seen.len();
    pods.wait_line("a row after the delete", Duration::from_secs(60), |l| {
        l.starts_with("watched ")
    });
    // The deletion itself: no further change comes for the pod after it is gone.
    std::thread::sleep(Duration::from_secs(3));
    while let Ok(l) = pods.lines.try_recv() {
        pods.seen.push(l);
    }
    let after: Vec<&String> = pods.seen[before..].iter().collect();
    assert!(!after.is_empty(), "{:#?}", pods.seen);
    assert_eq!(
        pods.seen.iter().filter(|l| l.starts_with("NAME")).count(),
        1,
        "the header once: {:#?}",
        pods.seen
    );
    // The pod is gone from a plain get, so the last row was its deletion.
    let gone = d.cli(&["get", "pod", "watched"]);
    assert!(!gone.status.success());
    let pods_err = pods.stop();
    assert!(
        pods_err.contains("No resources found in default namespace."),
        "{pods_err}"
    );
    assert!(again.stop().is_empty());
    // With --watch-only, no "No resources found" either.
    let names_err = names.stop();
    assert!(!names_err.contains("No resources"), "{names_err}");
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn get_watch_refuses_several_kinds_and_a_missing_named_object() {
    require_root();
    let d = Daemon::start().await;
    let out = d.cli(&["get", "pods,svc", "-w"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("one kind at a time"), "{err}");
    let out = d.cli(&["get", "pod", "nopod", "-w"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not found"), "{err}");
    let out = d.cli(&["get", "nokind", "-w"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown kind"), "{err}");
    d.shutdown().await;
}
