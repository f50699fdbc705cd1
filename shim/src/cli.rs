//! The shim's command line, `shim run …` / `shim exec …`: one definition for both binaries
//! that run it, the slim `kinglet-shim` (what the daemon starts when it is installed beside
//! it) and the daemon's own hidden `kinglet shim` subcommand (the fallback).

use std::path::PathBuf;
use std::time::Duration;

/// A shim's verb and its arguments.
#[derive(Debug, clap::Subcommand)]
pub enum ShimCommand {
    Run {
        #[arg(long)]
        id: String,
        #[arg(long)]
        bundle: PathBuf,
        #[arg(long)]
        runtime_root: PathBuf,
        #[arg(long)]
        state_dir: PathBuf,
        #[arg(long)]
        log_path: Option<PathBuf>,
        /// Rotate the log file at this many bytes (0: never).
        #[arg(long, default_value_t = 0)]
        log_max_size: u64,
        /// Log files kept in all when rotating, the current one included.
        #[arg(long, default_value_t = 5)]
        log_max_files: usize,
        #[arg(long)]
        systemd_cgroup: bool,
        /// Keep the container's stdin open for attach clients.
        #[arg(long)]
        stdin: bool,
        /// Close the container's stdin when the first attach client's input ends.
        #[arg(long)]
        stdin_once: bool,
    },
    Exec {
        #[arg(long)]
        id: String,
        #[arg(long)]
        runtime_root: PathBuf,
        #[arg(long)]
        result: PathBuf,
        /// Seconds; 0 = no limit.
        #[arg(long, default_value_t = 0)]
        timeout: u64,
        /// Pass this process's stdin to the command (streaming exec).
        #[arg(long)]
        stdin: bool,
        /// Run the command on a terminal; its master goes to this unix socket.
        #[arg(long)]
        console_socket: Option<PathBuf>,
        /// The terminal's size from the start, COLUMNSxROWS.
        #[arg(long, value_parser = parse_console_size)]
        console_size: Option<(u16, u16)>,
        #[arg(last = true, required = true)]
        cmd: Vec<String>,
    },
}

/// `COLUMNSxROWS`, e.g. `80x24`.
pub fn parse_console_size(s: &str) -> Result<(u16, u16), String> {
    let (c, r) = s
        .split_once('x')
        .ok_or_else(|| format!("console size {s:?} is not COLUMNSxROWS"))?;
    let n = |v: &str| {
        v.parse::<u16>()
            .map_err(|e| format!("console size {s:?}: {e}"))
    };
    Ok((n(c)?, n(r)?))
}

/// Log to stderr (the shim's log file) at the level `RUST_LOG` names (`off`, `error`, `warn`,
/// …; the daemon sets it), else `warn`.
pub fn init_logging() {
    let level = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.parse::<tracing_subscriber::filter::LevelFilter>().ok())
        .unwrap_or(tracing_subscriber::filter::LevelFilter::WARN);
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_ansi(false)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Run the shim verb; its exit code. Call while the process is single-threaded.
pub fn main(command: ShimCommand) -> i32 {
    match command {
        ShimCommand::Run {
            id,
            bundle,
            runtime_root,
            state_dir,
            log_path,
            log_max_size,
            log_max_files,
            systemd_cgroup,
            stdin,
            stdin_once,
        } => crate::run::main(&crate::run::RunArgs {
            id,
            bundle,
            runtime_root,
            state_dir,
            log_path,
            log_rotation: crate::log_rotate::LogRotation::new(log_max_size, log_max_files),
            systemd_cgroup,
            stdin,
            stdin_once,
        }),
        ShimCommand::Exec {
            id,
            runtime_root,
            result,
            timeout,
            stdin,
            console_socket,
            console_size,
            cmd,
        } => crate::exec::main(&crate::exec::ExecArgs {
            id,
            runtime_root,
            result,
            timeout: Duration::from_secs(timeout),
            cmd,
            stdin,
            console_socket,
            console_size,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_size_is_columns_x_rows() {
        assert_eq!(parse_console_size("80x24"), Ok((80, 24)));
        assert!(parse_console_size("80")
            .unwrap_err()
            .contains("COLUMNSxROWS"));
        assert!(parse_console_size("80x99999").is_err());
    }
}
