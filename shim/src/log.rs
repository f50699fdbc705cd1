//! The Kubernetes CRI container log file.
//!
//! The shim reads the container's stdout and stderr pipes and appends one entry per line to the
//! file the kubelet asked for (`ContainerConfig.log_path`), in the format the kubelet parses:
//!
//! ```text
//! 2016-10-06T00:17:09.669794202Z stdout F a complete line
//! 2016-10-06T00:17:09.6697942Z stderr P the first 16 KiB of a longer line
//! ```
//!
//! Behaviour follows containerd's CRI logger, the runtime the kubelet is tested against:
//!
//! - the timestamp is Go's `time.RFC3339Nano`, here always in UTC: the fraction has its trailing
//!   zeros removed and is left out entirely when the nanoseconds are zero;
//! - a line ending is `\n` or `\r\n`, and is not part of the content; a lone `\r` is content;
//! - a line whose content is longer than the maximum (16 KiB by default) is cut into entries of
//!   exactly the maximum tagged `P`, and the rest of the line is one `F` entry (a line of exactly
//!   the maximum is a single `F` entry);
//! - bytes without a line ending stay buffered, separately per stream, until the line ends; when
//!   the stream reaches EOF they are written as a `P` entry, since the container never ended that
//!   line.
//!
//! The framing is [`LineFramer`], a pure function of its input and a timestamp, so it is tested
//! without files; [`CriLogWriter`] adds the file, the clock and reopening after rotation.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{self, Write as _};
use std::num::NonZeroUsize;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Datelike, FixedOffset, Offset, TimeZone, Timelike};

use crate::log_rotate::{LogRotation, Rotator};

/// Default maximum content length of one log entry (containerd's `max_container_log_line_size`).
pub const DEFAULT_MAX_LINE_SIZE: NonZeroUsize = NonZeroUsize::new(16 * 1024).unwrap();

/// Mode of a newly created log file (as containerd creates it; subject to the umask).
const LOG_FILE_MODE: u32 = 0o640;

const TAG_PARTIAL: &str = "P";
const TAG_FULL: &str = "F";

/// Which of the container's output streams a piece of output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    /// The stream's name in the CRI log format.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }

    /// The stream named `name` in the CRI log format.
    pub fn from_name(name: &str) -> Option<Stream> {
        match name {
            "stdout" => Some(Stream::Stdout),
            "stderr" => Some(Stream::Stderr),
            _ => None,
        }
    }

    fn index(self) -> usize {
        match self {
            Stream::Stdout => 0,
            Stream::Stderr => 1,
        }
    }
}

/// Cuts a stream of output into CRI log entries. Holds the unfinished line of each stream.
#[derive(Debug)]
pub struct LineFramer {
    /// Longest content of one entry; `None` never splits a line.
    max_line: Option<NonZeroUsize>,
    /// Bytes of the current, unfinished line, per stream ([`Stream::index`]).
    pending: [Vec<u8>; 2],
}

impl LineFramer {
    pub fn new(max_line: Option<NonZeroUsize>) -> Self {
        LineFramer {
            max_line,
            pending: [Vec::new(), Vec::new()],
        }
    }

    /// Number of bytes of `stream` waiting for the end of their line.
    pub fn pending(&self, stream: Stream) -> usize {
        self.pending[stream.index()].len()
    }

    /// Frame `data` read from `stream`: append to `out` one entry for each line `data` completes,
    /// and `P` entries for an unfinished line once it is longer than the maximum. Every entry
    /// gets `timestamp`.
    pub fn push(&mut self, stream: Stream, data: &[u8], timestamp: &str, out: &mut Vec<u8>) {
        let max_line = self.max_line;
        let pending = &mut self.pending[stream.index()];
        let mut rest = data;
        while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
            pending.extend_from_slice(&rest[..nl]);
            rest = &rest[nl + 1..];
            let line = pending.strip_suffix(b"\r").unwrap_or(pending);
            frame_chunks(out, timestamp, stream, line, max_line, TAG_FULL);
            pending.clear();
        }
        pending.extend_from_slice(rest);

        // Emit the part of an unfinished line that is already over the limit. A trailing `\r`
        // may still turn out to be half of a `\r\n` line ending, so it does not count yet.
        let Some(max) = max_line.map(NonZeroUsize::get) else {
            return;
        };
        let content_len = pending.len() - usize::from(pending.ends_with(b"\r"));
        if content_len > max {
            let cut = (content_len - 1) / max * max;
            for chunk in pending[..cut].chunks(max) {
                frame_entry(out, timestamp, stream, TAG_PARTIAL, chunk);
            }
            pending.drain(..cut);
        }
    }

    /// `stream` reached EOF: append its unfinished line, if any, to `out` as `P` entries.
    pub fn finish(&mut self, stream: Stream, timestamp: &str, out: &mut Vec<u8>) {
        let pending = &mut self.pending[stream.index()];
        if !pending.is_empty() {
            frame_chunks(out, timestamp, stream, pending, self.max_line, TAG_PARTIAL);
            pending.clear();
        }
    }
}

/// Append `content` as entries of at most `max_line` bytes: all `P` but the last, tagged
/// `last_tag`. Empty content is one entry.
fn frame_chunks(
    out: &mut Vec<u8>,
    timestamp: &str,
    stream: Stream,
    content: &[u8],
    max_line: Option<NonZeroUsize>,
    last_tag: &str,
) {
    let max = max_line.map_or(usize::MAX, NonZeroUsize::get);
    let mut rest = content;
    while rest.len() > max {
        let (chunk, tail) = rest.split_at(max);
        frame_entry(out, timestamp, stream, TAG_PARTIAL, chunk);
        rest = tail;
    }
    frame_entry(out, timestamp, stream, last_tag, rest);
}

/// Append one entry: `<timestamp> <stream> <tag> <content>\n`.
fn frame_entry(out: &mut Vec<u8>, timestamp: &str, stream: Stream, tag: &str, content: &[u8]) {
    out.reserve(timestamp.len() + content.len() + 11);
    out.extend_from_slice(timestamp.as_bytes());
    out.push(b' ');
    out.extend_from_slice(stream.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(tag.as_bytes());
    out.push(b' ');
    out.extend_from_slice(content);
    out.push(b'\n');
}

/// Format `t` like Go's `time.RFC3339Nano` (`2006-01-02T15:04:05.999999999Z07:00`): the
/// fraction loses its trailing zeros, and the dot too when nothing is left. UTC is written `Z`.
pub fn format_timestamp<Tz: TimeZone>(t: &DateTime<Tz>) -> String {
    let offset = t.offset().fix().local_minus_utc();
    let local = t.naive_local();
    let mut s = String::with_capacity(35);
    // Writing into a String cannot fail.
    let _ = write!(
        s,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        local.year(),
        local.month(),
        local.day(),
        local.hour(),
        local.minute(),
        local.second(),
    );
    // chrono keeps a leap second as nanoseconds >= 1e9 of second 59.
    let nanos = local.nanosecond() % 1_000_000_000;
    if nanos != 0 {
        let frac = format!("{nanos:09}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    if offset == 0 {
        s.push('Z');
    } else {
        let sign = if offset < 0 { '-' } else { '+' };
        let minutes = offset.unsigned_abs() / 60;
        let _ = write!(s, "{sign}{:02}:{:02}", minutes / 60, minutes % 60);
    }
    s
}

/// Appends a container's output to its CRI log file.
///
/// Write errors are returned, and the output that failed is dropped: the caller keeps draining
/// the pipes so that the container never blocks on a full pipe because of its log.
#[derive(Debug)]
pub struct CriLogWriter {
    path: PathBuf,
    file: File,
    framer: LineFramer,
    /// Framed entries of the current call, written with one `write` where possible.
    out: Vec<u8>,
    /// Rotate the file itself at a size ([`crate::log_rotate`]); `None`: never.
    rotator: Option<Rotator>,
    /// Bytes in the current file.
    size: u64,
}

impl CriLogWriter {
    /// Open (create, or append to) the log file at `path`, splitting lines longer than
    /// [`DEFAULT_MAX_LINE_SIZE`].
    pub fn open(path: &Path) -> io::Result<Self> {
        let file = open_log_file(path)?;
        Ok(CriLogWriter {
            path: path.to_owned(),
            size: file.metadata()?.len(),
            file,
            framer: LineFramer::new(Some(DEFAULT_MAX_LINE_SIZE)),
            out: Vec::new(),
            rotator: None,
        })
    }

    /// Rotate the file when it reaches a size, keeping a number of files.
    pub fn with_rotation(mut self, rotation: Option<LogRotation>) -> Self {
        self.rotator = rotation.map(|r| Rotator::new(&self.path, r));
        self
    }

    /// Split lines longer than `max` bytes of content; `None` never splits. Call before the
    /// first write.
    pub fn with_max_line_size(mut self, max: Option<NonZeroUsize>) -> Self {
        self.framer.max_line = max;
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Log `data`, read from `stream`.
    pub fn write(&mut self, stream: Stream, data: &[u8]) -> io::Result<()> {
        let timestamp = now();
        self.framer.push(stream, data, &timestamp, &mut self.out);
        self.write_out()
    }

    /// `stream` reached EOF: log its unfinished line, if any, as a partial entry.
    pub fn flush_partial(&mut self, stream: Stream) -> io::Result<()> {
        if self.framer.pending(stream) == 0 {
            return Ok(());
        }
        let timestamp = now();
        self.framer.finish(stream, &timestamp, &mut self.out);
        self.write_out()
    }

    /// [`Self::flush_partial`] for the pipe loop, which has no one to return an error to.
    pub fn end_of_stream(&mut self, stream: Stream) {
        if let Err(e) = self.flush_partial(stream) {
            tracing::warn!(path = %self.path.display(), stream = stream.as_str(), err = %e,
                "writing container log failed");
        }
    }

    /// The container is gone: log what is left of both streams, even if a pipe never reached
    /// EOF (another process may still hold it), and wait for rotated files to be compressed.
    pub fn finish(&mut self) {
        self.end_of_stream(Stream::Stdout);
        self.end_of_stream(Stream::Stderr);
        if let Some(r) = self.rotator.as_mut() {
            r.finish();
        }
    }

    /// Close the file and open `path` again (CRI `ReopenContainerLog`, after the kubelet rotated
    /// the log by renaming it). Unfinished lines are kept. If the path cannot be opened, the old
    /// file stays in use and the error is returned.
    pub fn reopen(&mut self) -> io::Result<()> {
        let file = open_log_file(&self.path)?;
        self.size = file.metadata()?.len();
        self.file = file;
        Ok(())
    }

    fn write_out(&mut self) -> io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        // Rotate before a write that would take the file past its size, so that no file is
        // larger than the limit (unless one write alone is).
        if let Some(r) = self.rotator.as_mut() {
            if self.size > 0 && self.size + self.out.len() as u64 > r.rotation().max_size {
                let rotated = r.rotate().and_then(|()| self.reopen());
                if let Err(e) = rotated {
                    self.out.clear();
                    return Err(e);
                }
            }
        }
        let res = self.file.write_all(&self.out);
        if res.is_ok() {
            self.size += self.out.len() as u64;
        }
        self.out.clear();
        res
    }
}

fn open_log_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(LOG_FILE_MODE)
        .open(path)
}

fn now() -> String {
    format_timestamp(&chrono::Utc::now())
}

/// One entry of a CRI log file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CriLogLine<'a> {
    pub timestamp: DateTime<FixedOffset>,
    pub stream: Stream,
    /// `P`: the content continues in the next entry of the same stream. Otherwise the content
    /// was followed by a line ending in the container's output.
    pub partial: bool,
    /// The output, without the entry's `\n`.
    pub content: &'a str,
}

/// Parse one entry of a CRI log file (with or without its `\n`), as the kubelet does: the tag
/// field may hold several `:`-separated tags, of which only the first (`P` or `F`) is read.
pub fn parse_cri_log_line(line: &str) -> Option<CriLogLine<'_>> {
    let line = line.strip_suffix('\n').unwrap_or(line);
    let (timestamp, rest) = line.split_once(' ')?;
    let (stream, rest) = rest.split_once(' ')?;
    let (tags, content) = rest.split_once(' ')?;
    let first_tag = tags.split(':').next().filter(|t| !t.is_empty())?;
    Some(CriLogLine {
        timestamp: DateTime::parse_from_rfc3339(timestamp).ok()?,
        stream: Stream::from_name(stream)?,
        partial: first_tag == TAG_PARTIAL,
        content,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    const TS: &str = "2016-10-06T00:17:09.669794202Z";

    fn framer(max: usize) -> LineFramer {
        LineFramer::new(NonZeroUsize::new(max))
    }

    fn push(f: &mut LineFramer, stream: Stream, data: &str) -> String {
        let mut out = Vec::new();
        f.push(stream, data.as_bytes(), TS, &mut out);
        String::from_utf8(out).unwrap()
    }

    fn finish(f: &mut LineFramer, stream: Stream) -> String {
        let mut out = Vec::new();
        f.finish(stream, TS, &mut out);
        String::from_utf8(out).unwrap()
    }

    /// (stream, partial, content) of each entry.
    fn entries(framed: &str) -> Vec<(Stream, bool, String)> {
        framed
            .split_inclusive('\n')
            .map(|l| {
                let e = parse_cri_log_line(l).unwrap_or_else(|| panic!("bad entry {l:?}"));
                (e.stream, e.partial, e.content.to_owned())
            })
            .collect()
    }

    fn full(s: &str) -> (Stream, bool, String) {
        (Stream::Stdout, false, s.to_owned())
    }

    fn part(s: &str) -> (Stream, bool, String) {
        (Stream::Stdout, true, s.to_owned())
    }

    #[test]
    fn short_line() {
        let mut f = framer(16);
        assert_eq!(
            push(&mut f, Stream::Stdout, "hello\n"),
            format!("{TS} stdout F hello\n")
        );
        assert_eq!(f.pending(Stream::Stdout), 0);
    }

    #[test]
    fn several_lines_in_one_write() {
        let mut f = framer(16);
        let out = push(&mut f, Stream::Stdout, "a\nbb\nccc\n");
        assert_eq!(entries(&out), [full("a"), full("bb"), full("ccc")]);
    }

    #[test]
    fn line_split_across_writes() {
        let mut f = framer(16);
        assert_eq!(push(&mut f, Stream::Stdout, "hel"), "");
        assert_eq!(push(&mut f, Stream::Stdout, "lo wo"), "");
        assert_eq!(f.pending(Stream::Stdout), 8);
        let out = push(&mut f, Stream::Stdout, "rld\nnext");
        assert_eq!(entries(&out), [full("hello world")]);
        assert_eq!(f.pending(Stream::Stdout), 4);
    }

    #[test]
    fn line_of_exactly_max_is_one_entry() {
        let mut f = framer(4);
        assert_eq!(push(&mut f, Stream::Stdout, "abcd"), "");
        assert_eq!(entries(&push(&mut f, Stream::Stdout, "\n")), [full("abcd")]);
        assert_eq!(
            entries(&push(&mut f, Stream::Stdout, "wxyz\r\n")),
            [full("wxyz")]
        );
    }

    #[test]
    fn line_over_max_is_partials_then_full() {
        let mut f = framer(4);
        let out = push(&mut f, Stream::Stdout, "abcdefghij\n");
        assert_eq!(entries(&out), [part("abcd"), part("efgh"), full("ij")]);
        // A multiple of the maximum ends with a full entry of the maximum, not an empty one.
        let out = push(&mut f, Stream::Stdout, "abcdefgh\n");
        assert_eq!(entries(&out), [part("abcd"), full("efgh")]);
    }

    #[test]
    fn long_unfinished_line_is_emitted_before_its_end() {
        let mut f = framer(4);
        assert_eq!(push(&mut f, Stream::Stdout, "abcd"), "");
        assert_eq!(entries(&push(&mut f, Stream::Stdout, "e")), [part("abcd")]);
        let out = push(&mut f, Stream::Stdout, "fghijklm");
        assert_eq!(entries(&out), [part("efgh"), part("ijkl")]);
        assert_eq!(entries(&push(&mut f, Stream::Stdout, "\n")), [full("m")]);
    }

    #[test]
    fn crlf_is_a_line_ending_even_across_writes() {
        let mut f = framer(4);
        // "\r" past the maximum may be half of "\r\n": it must not force a split.
        assert_eq!(push(&mut f, Stream::Stdout, "abcd\r"), "");
        assert_eq!(entries(&push(&mut f, Stream::Stdout, "\n")), [full("abcd")]);
        // A lone "\r" is content.
        let out = push(&mut f, Stream::Stdout, "a\rb\r\r\n");
        assert_eq!(entries(&out), [full("a\rb\r")]);
    }

    #[test]
    fn streams_keep_separate_buffers() {
        let mut f = framer(16);
        assert_eq!(push(&mut f, Stream::Stdout, "out-"), "");
        assert_eq!(push(&mut f, Stream::Stderr, "err-"), "");
        let out = push(&mut f, Stream::Stderr, "1\n");
        assert_eq!(entries(&out), [(Stream::Stderr, false, "err-1".to_owned())]);
        let out = push(&mut f, Stream::Stdout, "1\n");
        assert_eq!(entries(&out), [full("out-1")]);
        assert!(out.contains(" stdout F out-1\n"));
    }

    #[test]
    fn empty_line_is_an_empty_full_entry() {
        let mut f = framer(16);
        let out = push(&mut f, Stream::Stdout, "\n\r\n");
        assert_eq!(out, format!("{TS} stdout F \n{TS} stdout F \n"));
        assert_eq!(entries(&out), [full(""), full("")]);
    }

    #[test]
    fn eof_without_newline_is_partial() {
        let mut f = framer(16);
        assert_eq!(push(&mut f, Stream::Stdout, "no newline"), "");
        assert_eq!(
            finish(&mut f, Stream::Stdout),
            format!("{TS} stdout P no newline\n")
        );
        assert_eq!(f.pending(Stream::Stdout), 0);
        // Nothing pending: nothing written.
        assert_eq!(finish(&mut f, Stream::Stdout), "");
        // A trailing "\r" that no "\n" followed is content.
        push(&mut f, Stream::Stdout, "abcd\r");
        assert_eq!(entries(&finish(&mut f, Stream::Stdout)), [part("abcd\r")]);
    }

    #[test]
    fn eof_only_flushes_its_stream() {
        let mut f = framer(16);
        push(&mut f, Stream::Stdout, "o");
        push(&mut f, Stream::Stderr, "e");
        assert_eq!(
            entries(&finish(&mut f, Stream::Stderr)),
            [(Stream::Stderr, true, "e".to_owned())]
        );
        assert_eq!(f.pending(Stream::Stdout), 1);
    }

    #[test]
    fn no_limit_never_splits() {
        let mut f = LineFramer::new(None);
        let long = "x".repeat(100_000);
        assert_eq!(push(&mut f, Stream::Stdout, &long), "");
        let out = push(&mut f, Stream::Stdout, "\n");
        assert_eq!(entries(&out), [full(&long)]);
    }

    #[test]
    fn timestamp_matches_go_rfc3339nano() {
        let at = |nanos| {
            Utc.with_ymd_and_hms(2016, 10, 6, 0, 17, 9).unwrap()
                + chrono::Duration::nanoseconds(nanos)
        };
        assert_eq!(format_timestamp(&at(669_794_202)), TS);
        assert_eq!(
            format_timestamp(&at(669_794_200)),
            "2016-10-06T00:17:09.6697942Z"
        );
        assert_eq!(format_timestamp(&at(500_000_000)), "2016-10-06T00:17:09.5Z");
        assert_eq!(format_timestamp(&at(0)), "2016-10-06T00:17:09Z");
        assert_eq!(format_timestamp(&at(1)), "2016-10-06T00:17:09.000000001Z");
        let plus2 = FixedOffset::east_opt(2 * 3600 + 30 * 60).unwrap();
        assert_eq!(
            format_timestamp(&at(0).with_timezone(&plus2)),
            "2016-10-06T02:47:09+02:30"
        );
        let now = Utc::now();
        let parsed = DateTime::parse_from_rfc3339(&format_timestamp(&now)).unwrap();
        assert_eq!(parsed, now);
    }

    #[test]
    fn parse_line() {
        let e =
            parse_cri_log_line("2016-10-06T00:17:09.669794202Z stderr P:x some  text\n").unwrap();
        assert_eq!(e.stream, Stream::Stderr);
        assert!(e.partial);
        assert_eq!(e.content, "some  text");
        assert_eq!(e.timestamp.timestamp_subsec_nanos(), 669_794_202);
        let e = parse_cri_log_line("2016-10-06T00:17:09Z stdout F ").unwrap();
        assert!(!e.partial);
        assert_eq!(e.content, "");
        assert!(parse_cri_log_line("2016-10-06T00:17:09Z stdout F").is_none());
        assert!(parse_cri_log_line("2016-10-06T00:17:09Z stdin F x").is_none());
        assert!(parse_cri_log_line("yesterday stdout F x").is_none());
        assert!(parse_cri_log_line("").is_none());
    }

    fn read_entries(path: &Path) -> Vec<(Stream, bool, String)> {
        entries(&std::fs::read_to_string(path).unwrap())
    }

    #[test]
    fn writer_rotates_at_its_size_and_keeps_its_number_of_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let mut w = CriLogWriter::open(&path)
            .unwrap()
            .with_rotation(LogRotation::new(200, 3));
        for i in 0..100 {
            w.write(Stream::Stdout, format!("line {i}\n").as_bytes())
                .unwrap();
        }
        w.finish();
        let rotated = crate::log_rotate::rotated_files(&path).unwrap();
        assert_eq!(rotated.len(), 2, "{rotated:?}");
        // The older rotated file is compressed, the newest is not (as the kubelet leaves them).
        let mut older = String::new();
        std::io::Read::read_to_string(
            &mut flate2::read::GzDecoder::new(std::fs::File::open(&rotated[0]).unwrap()),
            &mut older,
        )
        .unwrap();
        assert!(rotated[0].to_string_lossy().ends_with(".gz"));
        assert!(older.len() <= 200 && !entries(&older).is_empty(), "{older}");
        for p in [&rotated[1], &path] {
            assert!(std::fs::metadata(p).unwrap().len() <= 200, "{p:?}");
            assert!(!read_entries(p).is_empty());
        }
        // The newest lines are in the current file, whole entries in every file.
        assert_eq!(read_entries(&path).last().unwrap(), &full("line 99"));
    }

    #[test]
    fn writer_appends_with_mode_0640_and_real_timestamps() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");

        let before = Utc::now();
        let mut w = CriLogWriter::open(&path).unwrap();
        w.write(Stream::Stdout, b"one\ntw").unwrap();
        w.write(Stream::Stderr, b"err\n").unwrap();
        w.end_of_stream(Stream::Stdout);
        drop(w);
        let mut w = CriLogWriter::open(&path).unwrap();
        w.write(Stream::Stdout, b"three\n").unwrap();

        assert_eq!(
            read_entries(&path),
            [
                full("one"),
                (Stream::Stderr, false, "err".to_owned()),
                part("tw"),
                full("three")
            ]
        );
        let text = std::fs::read_to_string(&path).unwrap();
        for line in text.lines() {
            let ts = parse_cri_log_line(line).unwrap().timestamp;
            assert!(ts >= before && ts <= Utc::now(), "{line}");
        }
        // The umask can only remove bits.
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & !LOG_FILE_MODE, 0, "mode {mode:o}");
    }

    #[test]
    fn writer_finish_flushes_both_streams() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let mut w = CriLogWriter::open(&path)
            .unwrap()
            .with_max_line_size(NonZeroUsize::new(2));
        w.write(Stream::Stdout, b"abc").unwrap();
        w.write(Stream::Stderr, b"e").unwrap();
        w.finish();
        w.finish();
        assert_eq!(
            read_entries(&path),
            [
                part("ab"),
                part("c"),
                (Stream::Stderr, true, "e".to_owned())
            ]
        );
    }

    #[test]
    fn reopen_after_rename_writes_to_new_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let rotated = dir.path().join("0.log.20240101-000000");
        let mut w = CriLogWriter::open(&path).unwrap();
        w.write(Stream::Stdout, b"before\nhalf ").unwrap();
        std::fs::rename(&path, &rotated).unwrap();
        // Until the reopen, output still goes to the renamed file.
        w.write(Stream::Stdout, b"line\n").unwrap();
        w.reopen().unwrap();
        w.write(Stream::Stdout, b"after\n").unwrap();

        assert_eq!(read_entries(&rotated), [full("before"), full("half line")]);
        assert_eq!(read_entries(&path), [full("after")]);
    }

    #[test]
    fn failed_reopen_keeps_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        let path = sub.join("0.log");
        let moved = dir.path().join("moved.log");
        let mut w = CriLogWriter::open(&path).unwrap();
        std::fs::rename(&path, &moved).unwrap();
        std::fs::remove_dir(&sub).unwrap();
        assert!(w.reopen().is_err());
        w.write(Stream::Stdout, b"kept\n").unwrap();
        assert_eq!(read_entries(&moved), [full("kept")]);
    }
}
