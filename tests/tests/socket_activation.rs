//! Socket activation as systemd does it (sd_listen_fds): the daemon is given a listening unix
//! socket at fd 3 with LISTEN_PID/LISTEN_FDS, serves the CRI on it without binding its own,
//! and leaves the socket file in place when it stops.

use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

use kinglet_proto::v1;
use kinglet_tests::*;
use v1::runtime_service_client::RuntimeServiceClient;

#[tokio::test(flavor = "multi_thread")]
async fn the_daemon_serves_the_socket_systemd_passes() {
    let mut d = Daemon::unstarted("", |_| Vec::new());
    // What systemd's kinglet.socket does: bind and listen before the daemon exists.
    let listener = std::os::unix::net::UnixListener::bind(&d.socket).unwrap();
    let fd = listener.as_raw_fd();
    let inner = d.command();
    let log = std::fs::File::create(d.dir.path().join("daemon.log")).unwrap();
    // LISTEN_PID must be the daemon's pid: a shell sets it to its own and execs the daemon.
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c")
        .arg("LISTEN_PID=$$ LISTEN_FDS=1 exec \"$0\" \"$@\"")
        .arg(inner.get_program())
        .args(inner.get_args())
        .env("RUST_LOG", "info")
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    // SAFETY: only async-signal-safe calls (dup2, fcntl) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if fd == 3 {
                if libc::fcntl(3, libc::F_SETFD, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            } else if libc::dup2(fd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    d.adopt(cmd.spawn().unwrap());
    let deadline = Instant::now() + Duration::from_secs(30);
    let version = loop {
        if let Ok(ch) = connect(&d.socket).await {
            if let Ok(v) = RuntimeServiceClient::new(ch)
                .version(v1::VersionRequest::default())
                .await
            {
                break v.into_inner();
            }
        }
        if let Some(st) = d.child().unwrap().try_wait().unwrap() {
            panic!("daemon exited ({st}); log:\n{}", d.log());
        }
        assert!(Instant::now() < deadline, "no answer; log:\n{}", d.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(version.runtime_name, "kinglet");
    // It did not bind its own: a live socket at the path would have been refused as in use.
    assert!(
        d.log().contains("serving the socket systemd passed"),
        "{}",
        d.log()
    );
    assert!(d.cli_ok(&["get", "pods"]).is_empty());
    // SIGTERM: it stops and leaves systemd's socket file.
    let pid = d.pid() as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let child = d.child().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "daemon did not stop");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(d.socket.exists(), "the socket file is systemd's");
    // No pods were made: dropping the daemon cleans its directories.
    drop(listener);
    drop(d);
}
