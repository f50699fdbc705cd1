//! The daemon under systemd's notification protocol, without systemd: the test binds the
//! `NOTIFY_SOCKET` datagram socket itself and checks READY=1 (only once the CRI socket
//! answers), STATUS= lines, WATCHDOG=1 pings at `WATCHDOG_USEC / 2`, and STOPPING=1 on SIGTERM.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use kinglet_proto::v1;
use kinglet_proto::v1::runtime_service_client::RuntimeServiceClient;
use kinglet_tests::{connect, Daemon};

fn recv(rx: &UnixDatagram) -> Option<(Instant, String)> {
    let mut buf = [0u8; 1024];
    match rx.recv(&mut buf) {
        Ok(n) => Some((
            Instant::now(),
            String::from_utf8_lossy(&buf[..n]).into_owned(),
        )),
        Err(e)
            if e.kind() == std::io::ErrorKind::WouldBlock
                || e.kind() == std::io::ErrorKind::TimedOut =>
        {
            None
        }
        Err(e) => panic!("recv on the notify socket: {e}"),
    }
}

async fn answers(socket: &std::path::Path) -> bool {
    match connect(socket).await {
        Ok(ch) => RuntimeServiceClient::new(ch)
            .version(v1::VersionRequest::default())
            .await
            .is_ok(),
        Err(_) => false,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn ready_after_the_socket_answers_watchdog_pings_and_stopping_on_sigterm() {
    let mut d = Daemon::unstarted("", |_| Vec::new());
    let notify_path = d.dir.path().join("notify.sock");
    let rx = UnixDatagram::bind(&notify_path).unwrap();
    rx.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let child = d
        .command()
        .env("NOTIFY_SOCKET", &notify_path)
        .env("WATCHDOG_USEC", "1000000")
        .spawn()
        .expect("start kinglet daemon");
    let pid = child.id();
    d.adopt(child);

    // Everything up to READY=1; the CRI socket must answer the moment READY=1 arrives.
    let mut before = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(
            Instant::now() < deadline,
            "no READY=1 within 30 s; got {before:?}; log:\n{}",
            d.log()
        );
        if let Some((_, m)) = recv(&rx) {
            if m == "READY=1" {
                assert!(
                    answers(&d.socket).await,
                    "READY=1 sent before the CRI socket answers"
                );
                break;
            }
            before.push(m);
        } else if let Some(st) = d.child().unwrap().try_wait().unwrap() {
            panic!("daemon exited ({st}); log:\n{}", d.log());
        }
    }
    assert!(
        before.iter().any(|m| m.starts_with("STATUS=recovering")),
        "{before:?}"
    );
    assert!(
        !before.iter().any(|m| m == "WATCHDOG=1"),
        "watchdog pinged before READY: {before:?}"
    );

    // Pings every WATCHDOG_USEC/2 = 500 ms, from a health check that passes.
    let mut pings = Vec::new();
    let mut others = Vec::new();
    let until = Instant::now() + Duration::from_millis(3200);
    while Instant::now() < until {
        if let Some((t, m)) = recv(&rx) {
            if m == "WATCHDOG=1" {
                pings.push(t);
            } else {
                others.push(m);
            }
        }
    }
    assert!(
        others
            .iter()
            .any(|m| m.starts_with("STATUS=serving CRI on ")),
        "{others:?}"
    );
    assert!(
        (4..=8).contains(&pings.len()),
        "{} pings in 3.2 s at a 500 ms interval; log:\n{}",
        pings.len(),
        d.log()
    );
    for w in pings.windows(2).skip(1) {
        let gap = w[1] - w[0];
        assert!(
            // 500 ms, give or take the health check's own time on a loaded machine.
            gap >= Duration::from_millis(250) && gap <= Duration::from_millis(1000),
            "watchdog gap {gap:?}, expected ~500 ms"
        );
    }

    // SIGTERM: STOPPING=1, then a clean exit.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut after = Vec::new();
    while !after.iter().any(|m| m == "STOPPING=1") {
        assert!(
            Instant::now() < deadline,
            "no STOPPING=1 after SIGTERM: {after:?}"
        );
        if let Some((_, m)) = recv(&rx) {
            after.push(m);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(st) = d.child().unwrap().try_wait().unwrap() {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "daemon still running after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "daemon exit after SIGTERM: {status}");
    assert!(!d.socket.exists(), "socket left behind after SIGTERM");
}
