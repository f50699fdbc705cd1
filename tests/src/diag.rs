//! Waits that say why they timed out: a failed wait prints the pods, the recent events and
//! the tail of the daemon's log, so a failure seen once in CI can be understood from its
//! output alone.

use std::time::Duration;

use crate::Daemon;

impl Daemon {
    /// Wait until `f` holds, polling every 100 ms; after `within`, fail the test with
    /// [`Daemon::explain`].
    pub fn wait_or_explain(&self, what: &str, within: Duration, f: impl FnMut() -> bool) {
        if !crate::poll_until(within, f) {
            panic!("timed out waiting for {what}\n{}", self.explain());
        }
    }

    /// What the daemon says of its pods: `get pods -A -o wide`, `get events -A` and the last
    /// 60 lines of its log.
    pub fn explain(&self) -> String {
        let run = |args: &[&str]| {
            let out = self.cli(args);
            format!(
                "$ kinglet {}\n{}{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        };
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(60)..].join("\n");
        format!(
            "{}{}daemon log (last 60 lines):\n{tail}",
            run(&["get", "pods", "-A", "-o", "wide"]),
            run(&["get", "events", "-A"])
        )
    }
}
