//! Releasing the memory the daemon only needed to start (issue 10's idle-RSS goal).
//!
//! Starting touches code all over the binary (CLI, config, recovery, nftables and network
//! setup, every controller's first pass, the gRPC server), and the kernel maps each touched
//! page of the executable with its neighbours (fault-around, 64 KiB): the idle daemon kept
//! ~22 MiB of clean text pages in its RSS, ten times its working set. Once it is ready and
//! has settled, the daemon
//! - drops its page-table entries for read-only file mappings that hold no private
//!   (copy-on-write) page — its own text and read-only data, those of the shared
//!   libraries — with `MADV_DONTNEED`: the pages stay in the page cache, and a page used
//!   again is mapped back on its next access (a minor fault), so what stays resident is what
//!   the idle loops use;
//! - returns the allocator's free heap to the kernel (`malloc_trim`).
//!
//! A mapping with private pages (relocated read-only data after RELRO, anything written) is
//! never touched: dropping those would lose their content.
//!
//! When: once the daemon has been idle for `trim-idle-secs` (30 s by default; no CRI call
//! from a client, no pod or controller pass: `kinglet_util::activity`), and again after each
//! busy period — what the Go runtime's scavenger does for the kubelet. Never while busy, so
//! busy latency is unchanged; only the first call after an idle period pays the minor faults
//! of the code it runs. The idle daemon's periodic passes are event-driven (no Service: no
//! services pass), so what was dropped stays dropped. `trim-startup-memory = true` also trims
//! right after READY.

use std::io::BufRead;
use std::time::Duration;

use kinglet_util::activity;

/// One mapping of `/proc/self/smaps` that may be dropped.
#[derive(Debug, PartialEq, Eq)]
struct Droppable {
    start: usize,
    end: usize,
}

/// The read-only, file-backed, private mappings of an smaps text without an anonymous
/// (copy-on-write) page: the ones whose page-table entries can be dropped safely.
fn droppable(smaps: impl BufRead) -> Vec<Droppable> {
    let mut out = Vec::new();
    // The current mapping, if it qualifies so far (read-only, private, a file).
    let mut current: Option<Droppable> = None;
    for line in smaps.lines().map_while(Result::ok) {
        let mut fields = line.split_whitespace();
        let Some(first) = fields.next() else { continue };
        if let Some((start, end)) = first.split_once('-').and_then(|(s, e)| {
            Some((
                usize::from_str_radix(s, 16).ok()?,
                usize::from_str_radix(e, 16).ok()?,
            ))
        }) {
            let perms = fields.next().unwrap_or("");
            let path = fields.nth(3).unwrap_or("");
            current = (perms.len() == 4
                && !perms.contains('w')
                && perms.ends_with('p')
                && path.starts_with('/'))
            .then_some(Droppable { start, end });
            continue;
        }
        // "Anonymous: N kB" comes once per mapping, after its header.
        if first == "Anonymous:" {
            let anon = fields.next().and_then(|v| v.parse::<u64>().ok());
            if let (Some(m), Some(0)) = (current.take(), anon) {
                out.push(m);
            }
        }
    }
    out
}

/// Drop the startup pages (see the module docs). Returns the bytes of mappings dropped.
/// Blocking (reads `/proc/self/smaps`): call off the async runtime.
pub fn release_startup_memory() -> usize {
    let dropped = match std::fs::File::open("/proc/self/smaps") {
        Ok(f) => droppable(std::io::BufReader::new(f))
            .into_iter()
            .filter(|m| dont_need(m.start, m.end - m.start))
            .map(|m| m.end - m.start)
            .sum(),
        Err(e) => {
            tracing::debug!(error = %e, "cannot read /proc/self/smaps; startup pages kept");
            0
        }
    };
    malloc_trim();
    tracing::debug!(mapped_bytes = dropped, "released the startup pages");
    dropped
}

/// Trim whenever the daemon has been idle for `after` since its last activity (see the
/// module docs). Runs for the daemon's lifetime; looks at the activity clock at most once per
/// `after` while idle.
pub async fn trim_when_idle(after: Duration) {
    let mut trimmed = None;
    loop {
        let mark = activity::mark();
        if trim_due(activity::idle_for(), after, mark, trimmed) {
            let dropped = tokio::task::spawn_blocking(release_startup_memory)
                .await
                .unwrap_or(0);
            tracing::debug!(mapped_bytes = dropped, "idle: released the clean pages");
            trimmed = Some(mark);
        }
        tokio::time::sleep(next_look(activity::idle_for(), after)).await;
    }
}

/// Whether to trim now: idle for at least `after`, and active since the last trim (`trimmed`:
/// the activity mark it was made at).
fn trim_due(idle_for: Duration, after: Duration, mark: u64, trimmed: Option<u64>) -> bool {
    idle_for >= after && trimmed != Some(mark)
}

/// How long to sleep before looking again: until `after` since the last activity, or `after`
/// once already idle that long (a new busy period is noticed at most `after` late).
fn next_look(idle_for: Duration, after: Duration) -> Duration {
    match after.checked_sub(idle_for) {
        Some(left) if !left.is_zero() => left + Duration::from_millis(10),
        _ => after,
    }
}

/// `madvise(MADV_DONTNEED)` on one mapping; false when the kernel refused.
fn dont_need(start: usize, len: usize) -> bool {
    // SAFETY: the range is one whole mapping that `droppable` found read-only, private,
    // file-backed and without an anonymous page: dropping its page-table entries loses no
    // data (every page is re-read from the page cache on its next access), and no Rust
    // object owns or aliases it mutably.
    unsafe { libc::madvise(start as *mut libc::c_void, len, libc::MADV_DONTNEED) == 0 }
}

/// Give the allocator's free memory back to the kernel (glibc). Blocking (walks every
/// arena): call off the async runtime.
pub fn malloc_trim() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free heap memory; no pointer is invalidated.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
55d0c0000000-55d0c1000000 r--p 00000000 fd:00 123 /usr/bin/kinglet
Size:              16384 kB
Rss:                4096 kB
Anonymous:             0 kB
55d0c1000000-55d0c2000000 r-xp 01000000 fd:00 123 /usr/bin/kinglet
Size:              16384 kB
Anonymous:             0 kB
55d0c2000000-55d0c2100000 r--p 02000000 fd:00 123 /usr/bin/kinglet
Size:               1024 kB
Anonymous:           900 kB
55d0c2100000-55d0c2200000 rw-p 02100000 fd:00 123 /usr/bin/kinglet
Anonymous:            12 kB
7f0000000000-7f0000100000 rw-p 00000000 00:00 0 
Anonymous:          1024 kB
7f0000200000-7f0000300000 r--s 00000000 fd:00 9 /dev/shm/shared
Anonymous:             0 kB
7f0000400000-7f0000500000 r-xp 00000000 fd:00 77 /usr/lib/x86_64-linux-gnu/libc.so.6
Anonymous:             0 kB
7ffd00000000-7ffd00001000 r-xp 00000000 00:00 0 [vdso]
Anonymous:             0 kB
";

    #[test]
    fn only_clean_read_only_private_file_mappings_are_dropped() {
        let got = droppable(SMAPS.as_bytes());
        assert_eq!(
            got,
            vec![
                Droppable {
                    start: 0x55d0c0000000,
                    end: 0x55d0c1000000
                },
                Droppable {
                    start: 0x55d0c1000000,
                    end: 0x55d0c2000000
                },
                Droppable {
                    start: 0x7f0000400000,
                    end: 0x7f0000500000
                },
            ],
            "not: RELRO data with private pages, writable data, anonymous memory, \
             shared mappings, the vdso"
        );
    }

    #[test]
    fn trims_once_per_idle_period_and_never_while_busy() {
        let after = Duration::from_secs(30);
        let s = Duration::from_secs;
        // Busy: not yet, and look again when the idle time would be reached.
        assert!(!trim_due(s(5), after, 7, None));
        assert_eq!(next_look(s(5), after), s(25) + Duration::from_millis(10));
        // Idle long enough, never trimmed: trim.
        assert!(trim_due(s(30), after, 7, None));
        // Trimmed at this mark: nothing happened since, nothing to do however long it sleeps.
        assert!(!trim_due(s(300), after, 7, Some(7)));
        assert_eq!(next_look(s(300), after), after);
        // Activity since (a new mark), then idle again: trim again.
        assert!(!trim_due(s(1), after, 9, Some(7)));
        assert!(trim_due(s(31), after, 9, Some(7)));
    }

    fn rss_kib() -> u64 {
        let s = std::fs::read_to_string("/proc/self/smaps_rollup").unwrap();
        s.lines()
            .find_map(|l| l.strip_prefix("Rss:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    #[test]
    fn releasing_lowers_rss_and_keeps_the_process_working() {
        let table: Vec<u64> = (0..100_000u64).map(|i| i * 3).collect();
        let before = rss_kib();
        assert!(release_startup_memory() > 0, "the test binary has mappings");
        let after = rss_kib();
        assert!(after < before, "RSS {before} kB -> {after} kB");
        // Code and read-only data fault back in; private data is intact.
        assert_eq!(table.iter().sum::<u64>(), 3 * 99_999 * 100_000 / 2);
        assert_eq!(format!("{}", 42), "42");
    }
}
