//! The clock check: the kernel's NTP state (`adjtimex(2)`, what `timedatectl` shows as
//! "System clock synchronized") and a sanity bound on the time itself. TLS to registries and
//! the kubelet's back-off and probe timings need a correct, steady clock.

use super::Finding;

const C: &str = "clock";

/// Whether the kernel considers the clock synchronized (`STA_UNSYNC` clear); `None` when the
/// call fails.
fn synchronized() -> Option<bool> {
    // SAFETY: an all-zero `timex` is a valid value of this plain C struct; `modes = 0` makes
    // adjtimex read-only, and the pointer is to a live local for the duration of the call.
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    // SAFETY: see above; the kernel only writes into `tx`.
    let state = unsafe { libc::adjtimex(&mut tx) };
    if state < 0 {
        return None;
    }
    Some(state != libc::TIME_ERROR && tx.status & libc::STA_UNSYNC == 0)
}

/// Run the check on this host.
pub fn check() -> Finding {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    verdict(synchronized(), now)
}

/// 2024-01-01T00:00:00Z: a clock before this is certainly wrong.
const SANE_AFTER: u64 = 1_704_067_200;

/// The decision: fail when the time is before 2024, warn when not synchronized.
pub fn verdict(synced: Option<bool>, unix_secs: u64) -> Finding {
    let now = chrono::DateTime::from_timestamp(unix_secs as i64, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| unix_secs.to_string());
    if unix_secs < SANE_AFTER {
        return Finding::fail(
            C,
            format!("{now}: before 2024, certainly wrong (TLS certificates will not verify)"),
            "set the time (timedatectl set-time, or start an NTP client: apt-get install \
             systemd-timesyncd)",
        );
    }
    match synced {
        Some(true) => Finding::pass(C, format!("{now}, synchronized")),
        Some(false) => Finding::warn(
            C,
            format!("{now}, not synchronized by NTP"),
            "apt-get install systemd-timesyncd (or chrony); timedatectl set-ntp true",
        ),
        None => Finding::warn(
            C,
            format!("{now}; synchronization state unknown (adjtimex failed)"),
            "check `timedatectl`",
        ),
    }
}
