//! Small helpers shared by every Kinglet crate, one copy each: rendering an error with its
//! sources on one line, replacing a file atomically, the wall clock in unix nanoseconds, and
//! the daemon's activity clock (`activity`).
//!
//! Depends on nothing of Kinglet's (every other crate may depend on it).

pub mod activity;

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// Render an error and all of its sources as `a: b: c`, skipping a source whose text the
/// previous message already contains.
pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        let s = e.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = e.source();
    }
    out
}

/// Replace `path` with `bytes` atomically: a temp file beside it (`.tmp-*`), fsync, rename,
/// fsync the directory. The error names neither path: callers add the context.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    File::open(dir)?.sync_all()
}

/// Unix time in nanoseconds (saturating; 0 before the epoch).
pub fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct E(&'static str, Option<Box<E>>);
    impl std::fmt::Display for E {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }
    impl std::error::Error for E {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    #[test]
    fn chain_joins_sources_and_skips_repeats() {
        let e = E(
            "open /x: denied",
            Some(Box::new(E("denied", Some(Box::new(E("eacces", None)))))),
        );
        assert_eq!(chain(&e), "open /x: denied: eacces");
        assert_eq!(chain(&E("alone", None)), "alone");
    }

    #[test]
    fn write_atomic_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        let missing = dir.path().join("no/such/f");
        assert!(write_atomic(&missing, b"x").is_err());
    }

    #[test]
    fn now_nanos_is_after_2020() {
        assert!(now_nanos() > 1_577_836_800_000_000_000);
    }
}
