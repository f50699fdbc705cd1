//! Where the daemon's log goes: plain text on stderr, or journald's native protocol with
//! structured fields when it runs under systemd (`--log-format journald`, or `auto` with
//! stderr connected to the journal as `JOURNAL_STREAM` says). In the journal, the fields of an
//! event and of its enclosing spans become journal fields of the same name, upper-cased and
//! without a prefix, so `journalctl -u kinglet POD=web CONTAINER=app` selects a pod's and a
//! container's lines; levels map to PRIORITY (error 3, warn 4, info 5, debug 6, trace 7).

use std::os::unix::fs::MetadataExt;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// journald when stderr is the journal (JOURNAL_STREAM), else text.
    #[default]
    Auto,
    /// Plain lines on stderr.
    Text,
    /// journald's native protocol, with the events' and spans' fields as journal fields.
    Journald,
}

/// Whether `JOURNAL_STREAM` (`DEVICE:INODE`, set by systemd for a unit whose stderr goes to
/// the journal) names the file stderr is: systemd's documented test, which a child that
/// inherited the variable but not the stream fails.
pub fn stderr_is_journal(journal_stream: Option<&str>, stderr: Option<(u64, u64)>) -> bool {
    let (Some(value), Some((dev, ino))) = (journal_stream, stderr) else {
        return false;
    };
    let Some((d, i)) = value.split_once(':') else {
        return false;
    };
    d.parse() == Ok(dev) && i.parse() == Ok(ino)
}

/// The device and inode of this process's stderr.
fn stderr_id() -> Option<(u64, u64)> {
    let m = std::fs::metadata("/proc/self/fd/2").ok()?;
    Some((m.dev(), m.ino()))
}

/// Install the subscriber: `RUST_LOG`, else `default`, filters; `format` chooses the sink.
/// journald that cannot be reached falls back to text, saying so.
pub fn init(format: LogFormat, default: &str) {
    let filter = || {
        tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default))
    };
    let journald = match format {
        LogFormat::Text => false,
        LogFormat::Journald => true,
        LogFormat::Auto => {
            stderr_is_journal(std::env::var("JOURNAL_STREAM").ok().as_deref(), stderr_id())
        }
    };
    let failed = if journald {
        match tracing_journald::layer() {
            Ok(layer) => {
                let layer = layer
                    .with_field_prefix(None)
                    .with_syslog_identifier("kinglet".into());
                let _ = tracing_subscriber::registry()
                    .with(filter())
                    .with(layer)
                    .try_init();
                return;
            }
            Err(e) => Some(e),
        }
    } else {
        None
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_ansi(false)
        .with_writer(std::io::stderr)
        .try_init();
    if let Some(e) = failed {
        tracing::warn!(err = %e, "journald is not reachable; logging to stderr");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_stream_must_name_stderr() {
        assert!(stderr_is_journal(Some("8:1234"), Some((8, 1234))));
        assert!(!stderr_is_journal(Some("8:1234"), Some((8, 99))));
        assert!(!stderr_is_journal(Some("8:1234"), None));
        assert!(!stderr_is_journal(None, Some((8, 1234))));
        assert!(!stderr_is_journal(Some("garbage"), Some((8, 1234))));
        assert!(!stderr_is_journal(Some(""), Some((0, 0))));
    }
}
