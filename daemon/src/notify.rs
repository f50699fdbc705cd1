//! systemd's service notification protocol (`sd_notify(3)`), written out: one datagram per
//! message to the unix socket named by `NOTIFY_SOCKET` (a path, or `@name` for the abstract
//! namespace). This module owns `READY=1`, `STATUS=`, `STOPPING=1` and the watchdog:
//! `WATCHDOG=1` is sent every `WATCHDOG_USEC / 2`, but only after a health check of the
//! daemon's own serving path passed within that interval — a hung daemon stops pinging and
//! systemd restarts it (`WatchdogSec=` in the unit).
//!
//! Outside systemd (no `NOTIFY_SOCKET`) every call is a no-op.

use std::future::Future;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// Where notifications go, read once from the environment at start.
#[derive(Debug)]
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// Read `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID`, and remove them from the
    /// environment so that the shims and hooks the daemon starts do not inherit them. Call it
    /// before any thread exists.
    pub fn from_env() -> Notifier {
        let socket = std::env::var_os("NOTIFY_SOCKET");
        let usec = std::env::var("WATCHDOG_USEC").ok();
        let pid = std::env::var("WATCHDOG_PID").ok();
        for v in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] {
            std::env::remove_var(v);
        }
        let target = socket.and_then(|s| {
            let s = s.to_string_lossy().into_owned();
            match open(&s) {
                Ok(t) => Some(t),
                Err(e) => {
                    tracing::warn!(socket = %s, error = %e, "NOTIFY_SOCKET unusable; not notifying systemd");
                    None
                }
            }
        });
        let watchdog = watchdog_interval(usec.as_deref(), pid.as_deref(), std::process::id());
        Notifier { target, watchdog }
    }

    /// A notifier that sends nothing.
    pub fn none() -> Notifier {
        Notifier {
            target: None,
            watchdog: None,
        }
    }

    /// How often to ping the watchdog (half of `WATCHDOG_USEC`), when systemd asked for it.
    pub fn watchdog(&self) -> Option<Duration> {
        self.target.as_ref().and(self.watchdog)
    }

    /// Send one message (`KEY=VALUE` lines); failures are logged, never fatal.
    pub fn send(&self, msg: &str) {
        if let Some((sock, addr)) = &self.target {
            if let Err(e) = sock.send_to_addr(msg.as_bytes(), addr) {
                tracing::warn!(error = %e, msg, "sd_notify failed");
            }
        }
    }

    /// `STATUS=` line shown by `systemctl status`.
    pub fn status(&self, text: &str) {
        self.send(&format!("STATUS={}", text.replace('\n', " ")));
    }

    /// Ping the watchdog every interval while `health` passes within it; log and skip the
    /// ping when it fails or hangs. Runs until the task is dropped.
    pub async fn watchdog_loop<H, F>(&self, interval: Duration, mut health: H)
    where
        H: FnMut() -> F,
        F: Future<Output = Result<(), String>>,
    {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match tokio::time::timeout(interval, health()).await {
                Ok(Ok(())) => self.send("WATCHDOG=1"),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "health check failed; not pinging the watchdog");
                }
                Err(_) => tracing::warn!(
                    timeout_ms = interval.as_millis() as u64,
                    "health check hung; not pinging the watchdog"
                ),
            }
        }
    }
}

fn open(name: &str) -> std::io::Result<(UnixDatagram, SocketAddr)> {
    let addr = match name.strip_prefix('@') {
        Some(abs) => SocketAddr::from_abstract_name(abs.as_bytes())?,
        None if name.starts_with('/') => SocketAddr::from_pathname(name)?,
        None => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "neither an absolute path nor @abstract",
            ))
        }
    };
    Ok((UnixDatagram::unbound()?, addr))
}

/// Half of `WATCHDOG_USEC`, when it is set, valid, and meant for this process.
fn watchdog_interval(usec: Option<&str>, pid: Option<&str>, me: u32) -> Option<Duration> {
    if let Some(pid) = pid {
        if pid.trim().parse::<u32>().ok() != Some(me) {
            return None;
        }
    }
    let usec: u64 = usec?.trim().parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    #[test]
    fn watchdog_interval_is_half_and_only_for_this_pid() {
        assert_eq!(
            watchdog_interval(Some("2000000"), None, 7),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            watchdog_interval(Some("2000000"), Some("7"), 7),
            Some(Duration::from_secs(1))
        );
        assert_eq!(watchdog_interval(Some("2000000"), Some("8"), 7), None);
        assert_eq!(watchdog_interval(Some("0"), None, 7), None);
        assert_eq!(watchdog_interval(Some("x"), None, 7), None);
        assert_eq!(watchdog_interval(None, None, 7), None);
    }

    #[test]
    fn relative_socket_names_are_refused() {
        assert!(open("notify.sock").is_err());
        assert!(open("/run/x/notify").is_ok());
        assert!(open("@kinglet-test").is_ok());
    }

    fn pair() -> (Notifier, UnixDatagram, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let rx = UnixDatagram::bind(&path).unwrap();
        rx.set_nonblocking(true).unwrap();
        let n = Notifier {
            target: Some(open(path.to_str().unwrap()).unwrap()),
            watchdog: Some(Duration::from_millis(50)),
        };
        (n, rx, dir)
    }

    fn drain(rx: &UnixDatagram) -> Vec<String> {
        let mut out = Vec::new();
        let mut buf = [0u8; 512];
        while let Ok(n) = rx.recv(&mut buf) {
            out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        out
    }

    #[tokio::test]
    async fn pings_only_while_healthy_and_stop_when_the_check_hangs() {
        let (n, rx, _dir) = pair();
        let hung = Arc::new(AtomicBool::new(false));
        let h = hung.clone();
        let n = Arc::new(n);
        let n2 = n.clone();
        let task = tokio::spawn(async move {
            n2.watchdog_loop(Duration::from_millis(50), move || {
                let hung = h.load(Ordering::SeqCst);
                async move {
                    if hung {
                        std::future::pending::<()>().await;
                    }
                    Ok(())
                }
            })
            .await
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        let healthy = drain(&rx);
        assert!(
            healthy.len() >= 3 && healthy.iter().all(|m| m == "WATCHDOG=1"),
            "{healthy:?}"
        );
        hung.store(true, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(120)).await;
        drain(&rx);
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(drain(&rx), Vec::<String>::new(), "pinged while hung");
        task.abort();
    }

    #[tokio::test]
    async fn failing_check_skips_the_ping() {
        let (n, rx, _dir) = pair();
        let task = tokio::spawn(async move {
            n.watchdog_loop(Duration::from_millis(30), || async {
                Err("runtime lock busy".to_owned())
            })
            .await
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(drain(&rx), Vec::<String>::new());
        task.abort();
    }

    #[test]
    fn status_is_one_line() {
        let (n, rx, _dir) = pair();
        n.status("recovering\n3 pods");
        n.send("READY=1");
        assert_eq!(drain(&rx), ["STATUS=recovering 3 pods", "READY=1"]);
    }
}
