//! The terminal parts of the CLI, driven through tmux as a person would type: `exec -it`
//! gives a shell a real terminal (raw mode: keys pass through, the prompt echoes) and follows
//! window resizes; leaving the shell restores the local terminal.

use std::process::Command;
use std::time::Duration;

use kinglet_tests::*;

const POD: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: tty}
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - {name: c, image: kinglet.test/busybox:latest, imagePullPolicy: Never, command: [sleep, "3600"]}
"#;

/// A tmux session of its own (its own server socket), killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .expect("tmux (Debian package tmux)");
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "t"])
    }

    fn wait_for(&self, what: &str, f: impl Fn(&str) -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let s = self.screen();
            if f(&s) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no {what} on the screen:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_it_is_a_real_terminal_that_follows_resizes() {
    let d = Daemon::start().await;
    d.import_test_image().await;
    let f = write(d.dir.path(), "tty.yaml", POD);
    d.cli_ok(&["apply", "-f", &f]);
    wait_for("pod tty running", Duration::from_secs(60), || {
        d.cli_ok(&["get", "pods", "tty"]).contains("1/1")
    });
    let t = Tmux {
        socket: format!("kinglet-test-{}", std::process::id()),
    };
    let cmd = format!(
        "{} exec --socket {} -it tty -- sh; echo LOCAL-BACK-$((40+2)); stty -a | grep -q -- -icanon && echo MODE-RAW || echo MODE-COOKED; sleep 60",
        kinglet_bin().display(),
        d.socket.display()
    );
    t.run(&["new-session", "-d", "-s", "t", "-x", "80", "-y", "24", &cmd]);
    t.wait_for("the container's prompt", |s| s.contains("/ #"));
    // Typed keys reach the shell; its output comes back on the same terminal.
    t.run(&[
        "send-keys",
        "-t",
        "t",
        "echo in-$((6*7))-$(hostname)",
        "Enter",
    ]);
    t.wait_for("the command's output", |s| s.contains("in-42-tty"));
    t.run(&["send-keys", "-t", "t", "tty; stty size", "Enter"]);
    t.wait_for("the first size", |s| s.contains("24 80"));
    assert!(t.screen().contains("/dev/pts/"), "{}", t.screen());
    // A resize of the local window reaches the container's terminal.
    t.run(&["resize-window", "-t", "t", "-x", "100", "-y", "30"]);
    std::thread::sleep(Duration::from_millis(500));
    t.run(&["send-keys", "-t", "t", "clear; stty size", "Enter"]);
    t.wait_for("the new size", |s| s.contains("30 100"));
    // Ctrl-D ends the shell and the exec; the local terminal is back in cooked mode (echo on).
    t.run(&["send-keys", "-t", "t", "C-d"]);
    t.wait_for("the local shell", |s| s.contains("LOCAL-BACK-42"));
    t.wait_for("the local mode", |s| s.contains("MODE-"));
    assert!(t.screen().contains("MODE-COOKED"), "{}", t.screen());
    d.shutdown().await;
}
