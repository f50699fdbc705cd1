//! `kinglet logs`: reads a container's CRI log file (`TIMESTAMP STREAM P|F CONTENT` lines, as
//! the kubelet does) with kubectl's `--tail`, `--since`, `--timestamps` and `-f`, which follows
//! the file by inotify (also across rotation) until the container exits.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use kinglet_proto::v1;
use tonic::transport::Channel;
use v1::runtime_service_client::RuntimeServiceClient;

use crate::kubectl::{find_container, status_err};

/// kubectl's log options.
#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    /// Only the last N lines of what is there (-1 or unset: all).
    pub tail: Option<i64>,
    /// Only lines newer than this.
    pub since: Option<Duration>,
    /// Prefix each line with its RFC 3339 timestamp.
    pub timestamps: bool,
    pub follow: bool,
    pub previous: bool,
}

/// A Go-style duration as kubectl's `--since` takes it: `30s`, `5m`, `1h30m`, `1.5h`, `250ms`.
pub fn parse_since(s: &str) -> anyhow::Result<Duration> {
    let bad = || {
        anyhow::anyhow!("--since {s:?}: not a duration; use a number and a unit, e.g. 30s, 5m, 1h")
    };
    let mut total = 0f64;
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let value: f64 = rest[..n].parse().map_err(|_| bad())?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let scale = match &rest[..u] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += value * scale;
        rest = &rest[u..];
    }
    Ok(Duration::from_secs_f64(total))
}

/// One whole log line: its first segment's timestamp and the joined content.
#[derive(Debug, PartialEq)]
struct Line<'a> {
    ts: &'a str,
    content: String,
}

/// Whole lines of CRI log text (partial `P` segments joined to their `F` end).
fn lines(text: &str) -> Vec<Line<'_>> {
    let mut out = Vec::new();
    let mut open: Option<Line> = None;
    for l in text.lines() {
        let mut it = l.splitn(4, ' ');
        let (ts, _stream, tag, content) = (
            it.next().unwrap_or(""),
            it.next(),
            it.next(),
            it.next().unwrap_or(""),
        );
        let line = open.get_or_insert_with(|| Line {
            ts,
            content: String::new(),
        });
        line.content.push_str(content);
        if tag != Some("P") {
            out.extend(open.take());
        }
    }
    out
}

/// The text to print for `text` (whole lines only) under `opts`, with `now` for `--since`.
fn render(text: &str, opts: &LogOptions, now: DateTime<Utc>, first: bool) -> String {
    let cutoff = opts
        .since
        .and_then(|d| chrono::Duration::from_std(d).ok())
        .map(|d| now - d);
    let mut ls: Vec<Line> = lines(text)
        .into_iter()
        .filter(|l| {
            cutoff.is_none_or(|c| {
                DateTime::parse_from_rfc3339(l.ts).is_ok_and(|t| t.with_timezone(&Utc) >= c)
            })
        })
        .collect();
    if first {
        if let Some(n) = opts.tail.filter(|n| *n >= 0) {
            let n = usize::try_from(n).unwrap_or(usize::MAX);
            ls.drain(..ls.len().saturating_sub(n));
        }
    }
    let mut out = String::new();
    for l in ls {
        if opts.timestamps {
            out.push_str(l.ts);
            out.push(' ');
        }
        out.push_str(&l.content);
        out.push('\n');
    }
    out
}

/// Bytes of `path` from `offset` to its last newline; the new offset. A file shorter than
/// `offset` was rotated or truncated: read it from the start.
fn read_whole_lines(path: &Path, offset: &mut u64) -> anyhow::Result<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(String::new()),
        Err(e) => return Err(e).with_context(|| format!("read {}", path.display())),
    };
    let len = f.metadata()?.len();
    if len < *offset {
        *offset = 0;
    }
    f.seek(SeekFrom::Start(*offset))?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)?;
    let end = buf.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    *offset += end as u64;
    Ok(String::from_utf8_lossy(&buf[..end]).into_owned())
}

async fn state_and_path(
    rt: &mut RuntimeServiceClient<Channel>,
    id: &str,
) -> anyhow::Result<(i32, PathBuf)> {
    let st = rt
        .container_status(v1::ContainerStatusRequest {
            container_id: id.to_owned(),
            verbose: false,
        })
        .await
        .map_err(status_err("container status"))?
        .into_inner()
        .status
        .unwrap_or_default();
    Ok((st.state, PathBuf::from(st.log_path)))
}

/// `kinglet logs POD [-c C]`.
pub async fn logs(
    ch: Channel,
    pod: &str,
    ns: &str,
    container: Option<&str>,
    opts: &LogOptions,
) -> anyhow::Result<()> {
    let mut rt = RuntimeServiceClient::new(ch.clone());
    let c = find_container(ch, &mut rt, pod, ns, container, opts.previous).await?;
    let (mut state, path) = state_and_path(&mut rt, &c.id).await?;
    if path.as_os_str().is_empty() {
        bail!("container {} of pod {ns}/{pod} has no log file", c.id);
    }
    let mut offset = 0u64;
    let text = read_whole_lines(&path, &mut offset)?;
    emit(&render(&text, opts, Utc::now(), true))?;
    if !opts.follow {
        return Ok(());
    }
    // Follow: wake on writes to the file and on files created in its directory (rotation),
    // and at least every second to notice that the container exited.
    let dir = path.parent().unwrap_or(Path::new("/"));
    let inotify = inotify::Inotify::init().context("inotify")?;
    inotify
        .watches()
        .add(
            dir,
            inotify::WatchMask::MODIFY | inotify::WatchMask::CREATE | inotify::WatchMask::MOVED_TO,
        )
        .with_context(|| format!("watch {}", dir.display()))?;
    let mut events = inotify.into_event_stream([0u8; 4096]).context("inotify")?;
    loop {
        let exited = state == v1::ContainerState::ContainerExited as i32;
        if !exited {
            let _ = tokio::time::timeout(Duration::from_secs(1), events.next()).await;
        }
        let text = read_whole_lines(&path, &mut offset)?;
        emit(&render(&text, opts, Utc::now(), false))?;
        if exited {
            return Ok(());
        }
        state = state_and_path(&mut rt, &c.id).await?.0;
    }
}

fn emit(s: &str) -> anyhow::Result<()> {
    if !s.is_empty() {
        let mut out = std::io::stdout().lock();
        out.write_all(s.as_bytes())?;
        out.flush()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "2026-01-01T10:00:00.000000001Z stdout F one\n\
                       2026-01-01T10:00:30Z stderr P tw\n\
                       2026-01-01T10:00:31Z stderr F o\n\
                       2026-01-01T10:01:00Z stdout F three\n";

    fn now() -> DateTime<Utc> {
        "2026-01-01T10:01:10Z".parse().unwrap()
    }

    #[test]
    fn partial_lines_are_joined_and_tail_keeps_the_last_whole_lines() {
        let all = LogOptions::default();
        assert_eq!(render(LOG, &all, now(), true), "one\ntwo\nthree\n");
        let tail = LogOptions {
            tail: Some(2),
            ..Default::default()
        };
        assert_eq!(render(LOG, &tail, now(), true), "two\nthree\n");
        // Only the first read is cut: followed lines all come.
        assert_eq!(render(LOG, &tail, now(), false), "one\ntwo\nthree\n");
        let zero = LogOptions {
            tail: Some(0),
            ..Default::default()
        };
        assert_eq!(render(LOG, &zero, now(), true), "");
        let minus = LogOptions {
            tail: Some(-1),
            ..Default::default()
        };
        assert_eq!(render(LOG, &minus, now(), true), "one\ntwo\nthree\n");
    }

    #[test]
    fn partial_log_lines_are_joined() {
        let text = "2026-01-01T00:00:00Z stdout P ab\n2026-01-01T00:00:00Z stdout F cd\n2026-01-01T00:00:00Z stderr F \n";
        assert_eq!(
            render(text, &LogOptions::default(), now(), true),
            "abcd\n\n"
        );
    }

    #[test]
    fn since_and_timestamps() {
        let o = LogOptions {
            since: Some(parse_since("1m").unwrap()),
            timestamps: true,
            ..Default::default()
        };
        assert_eq!(
            render(LOG, &o, now(), true),
            "2026-01-01T10:00:30Z two\n2026-01-01T10:01:00Z three\n"
        );
    }

    #[test]
    fn since_takes_go_durations_and_refuses_others() {
        assert_eq!(parse_since("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_since("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_since("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_since("1.5h").unwrap(), Duration::from_secs(5400));
        for bad in ["", "5", "m", "5x", "-5s"] {
            let e = parse_since(bad).unwrap_err().to_string();
            assert!(e.contains("e.g. 30s, 5m, 1h"), "{bad}: {e}");
        }
    }

    #[test]
    fn reading_follows_whole_lines_and_restarts_after_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("0.log");
        std::fs::write(&p, "a\nb").unwrap();
        let mut off = 0;
        assert_eq!(read_whole_lines(&p, &mut off).unwrap(), "a\n");
        std::fs::write(&p, "a\nbc\n").unwrap();
        assert_eq!(read_whole_lines(&p, &mut off).unwrap(), "bc\n");
        std::fs::write(&p, "z\n").unwrap();
        assert_eq!(read_whole_lines(&p, &mut off).unwrap(), "z\n");
    }
}
