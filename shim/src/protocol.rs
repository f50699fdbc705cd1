//! The contract between the daemon and a shim: file names in the shim's state directory, the
//! JSON records the shim writes there, and the control-socket commands.
//!
//! Every record is written atomically (temp file, fsync, rename), so a reader sees either the old
//! or the new content, never a torn one — also after a crash of either side.

use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::ShimError;

/// Written once the container is created, rewritten when it starts.
pub const SHIM_RECORD: &str = "shim.json";
/// Written when the container's init has exited; its presence means "exited".
pub const EXIT_RECORD: &str = "exit.json";
/// Unix socket the shim listens on while the container lives.
pub const CONTROL_SOCKET: &str = "ctl.sock";
/// Where libcontainer hands a tty container's terminal master to the shim (during create).
pub const CONSOLE_SOCKET: &str = "console.sock";
/// The shim's own diagnostics (stderr after it detached).
pub const SHIM_LOG: &str = "shim.log";

/// Control command: start the created container.
pub const CMD_START: &str = "start";
/// Control command: reopen the CRI log file (after rotation).
pub const CMD_REOPEN_LOG: &str = "reopen-log";
/// Control command: attach to the container's stdio (`attach` or `attach stdin`, the latter
/// for a client that sends input). After the `ok` reply the connection carries frames, each
/// `[type: u8][length: u32 BE][payload]`: from the shim [`FRAME_STDOUT`] / [`FRAME_STDERR`]
/// (a tty container has only stdout); from the client [`FRAME_STDIN`], [`FRAME_STDIN_EOF`]
/// and [`FRAME_RESIZE`] (payload: columns, rows as u16 BE). The shim closes the connection
/// when the container exits, or when the client's stdin ends (unless the container is
/// `stdin_once` without a tty: then its stdin is closed instead and output keeps flowing).
pub const CMD_ATTACH: &str = "attach";
pub const FRAME_STDIN: u8 = 0;
pub const FRAME_STDOUT: u8 = 1;
pub const FRAME_STDERR: u8 = 2;
pub const FRAME_STDIN_EOF: u8 = 3;
pub const FRAME_RESIZE: u8 = 4;

/// Append one attach frame to `out`.
pub fn push_frame(out: &mut Vec<u8>, ty: u8, payload: &[u8]) {
    out.push(ty);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
}

/// The largest attach frame payload accepted. Writers send at most a read buffer (32 or
/// 64 KiB) per frame; a length prefix above this is refused before anything is buffered
/// towards it.
pub const MAX_FRAME: usize = 1 << 20;

/// Take the first complete frame off `buf`, if there is one; a frame announcing more than
/// [`MAX_FRAME`] bytes is an error (the connection is to be dropped).
pub fn next_frame(buf: &mut Vec<u8>) -> Result<Option<(u8, Vec<u8>)>, ShimError> {
    if buf.len() < 5 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
    if len > MAX_FRAME {
        return Err(ShimError::FrameTooLarge {
            len,
            max: MAX_FRAME,
        });
    }
    if buf.len() < 5 + len {
        return Ok(None);
    }
    let ty = buf[0];
    let payload = buf[5..5 + len].to_vec();
    buf.drain(..5 + len);
    Ok(Some((ty, payload)))
}

/// [`next_frame`] for a trusted peer: an oversized frame reads as never complete.
pub fn take_frame(buf: &mut Vec<u8>) -> Option<(u8, Vec<u8>)> {
    next_frame(buf).ok().flatten()
}

/// What the shim knows about the container it monitors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShimRecord {
    /// The monitor's pid (host pid namespace).
    pub shim_pid: i32,
    /// The container init's pid (host pid namespace).
    pub init_pid: i32,
    /// The init's start time in clock ticks since boot (`/proc/<pid>/stat` field 22), so that a
    /// reused pid is never mistaken for the container.
    pub init_start_ticks: u64,
    /// Unix nanoseconds when the container was created.
    pub created_at: i64,
    /// Unix nanoseconds when the container was started, once it was.
    pub started_at: Option<i64>,
}

/// How the container's init ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    /// Exit code as the CRI reports it: the code, or 128 + signal number.
    pub exit_code: i32,
    /// The signal that killed the init, if one did.
    pub signal: Option<i32>,
    /// Unix nanoseconds when the exit was observed.
    pub finished_at: i64,
    /// The container's memory cgroup recorded an OOM kill.
    pub oom_killed: bool,
}

/// Result of one `kinglet shim exec`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecResult {
    pub exit_code: i32,
    pub timed_out: bool,
    /// Set when the command could not be run at all.
    pub error: Option<String>,
}

/// A path to `dir/name` short enough for a unix socket address (108 bytes), whatever the length
/// of `dir`: `/proc/self/fd/<fd of dir>/name`. Valid while `dir` stays open.
pub fn socket_path_via_fd(dir: &std::fs::File, name: &str) -> std::path::PathBuf {
    use std::os::fd::AsRawFd;
    std::path::PathBuf::from(format!("/proc/self/fd/{}/{name}", dir.as_raw_fd()))
}

/// Write `value` as JSON to `path` atomically (temp + fsync + rename + fsync of the directory).
pub fn write_record<T: Serialize>(path: &Path, value: &T) -> Result<(), ShimError> {
    let bytes = serde_json::to_vec(value).map_err(|source| ShimError::Record {
        path: path.to_owned(),
        source,
    })?;
    write_atomic(path, &bytes)
}

/// Atomically replace `path` with `bytes`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ShimError> {
    kinglet_util::write_atomic(path, bytes).map_err(|e| ShimError::io(path, e))
}

/// Read a JSON record; `Ok(None)` when the file does not exist.
pub fn read_record<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>, ShimError> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| ShimError::Record {
                path: path.to_owned(),
                source,
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ShimError::io(path, e)),
    }
}

pub use kinglet_util::now_nanos;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(EXIT_RECORD);
        assert_eq!(read_record::<ExitRecord>(&p).unwrap(), None);
        let rec = ExitRecord {
            exit_code: 137,
            signal: Some(9),
            finished_at: 5,
            oom_killed: true,
        };
        write_record(&p, &rec).unwrap();
        assert_eq!(read_record::<ExitRecord>(&p).unwrap(), Some(rec));
        // Only the record itself is left in the directory: no temp files.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn attach_frames_round_trip_whole_or_split() {
        let mut wire = Vec::new();
        push_frame(&mut wire, FRAME_STDOUT, b"hello");
        push_frame(&mut wire, FRAME_RESIZE, &[0, 80, 0, 24]);
        let mut buf = wire[..7].to_vec();
        assert_eq!(take_frame(&mut buf), None, "incomplete frame waits");
        buf.extend_from_slice(&wire[7..]);
        assert_eq!(
            take_frame(&mut buf),
            Some((FRAME_STDOUT, b"hello".to_vec()))
        );
        assert_eq!(
            take_frame(&mut buf),
            Some((FRAME_RESIZE, vec![0, 80, 0, 24]))
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn an_oversized_frame_length_is_refused_before_its_payload() {
        let mut buf = vec![FRAME_STDIN];
        buf.extend_from_slice(&u32::MAX.to_be_bytes());
        let err = next_frame(&mut buf).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "attach frame of {} bytes refused: the most is {MAX_FRAME}",
                u32::MAX
            )
        );
        assert_eq!(take_frame(&mut buf), None);
        // The largest allowed frame still passes whole.
        let mut wire = Vec::new();
        push_frame(&mut wire, FRAME_STDIN, &vec![7u8; MAX_FRAME]);
        let (ty, payload) = next_frame(&mut wire).unwrap().unwrap();
        assert_eq!((ty, payload.len()), (FRAME_STDIN, MAX_FRAME));
        assert!(wire.is_empty());
    }

    #[test]
    fn torn_record_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(SHIM_RECORD);
        fs::write(&p, b"{\"shim_pid\": 1").unwrap();
        let err = read_record::<ShimRecord>(&p).unwrap_err();
        assert!(err.to_string().contains(SHIM_RECORD), "{err}");
    }
}
