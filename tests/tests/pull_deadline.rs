//! A registry that accepts connections and never answers: `kinglet image pull` fails within
//! the daemon's `pull-progress-timeout-secs`, saying so, and shows meanwhile that it is
//! waiting — plain lines when its output is not a terminal, indicatif's bar on a terminal
//! (driven through tmux).

use std::process::Command;
use std::time::{Duration, Instant};

use kinglet_tests::*;

/// Accept and hold every connection without writing a byte.
fn silent_registry() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in l.incoming().flatten() {
            held.push(s);
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread")]
async fn a_silent_registry_fails_within_the_progress_timeout_showing_progress() {
    let d = Daemon::start_with_config("pull-progress-timeout-secs = 7\n").await;
    let port = silent_registry();
    let image = format!("127.0.0.1:{port}/silent/app:1");

    // Not a terminal: a plain waiting line every 5 s, then the deadline's error.
    let started = Instant::now();
    let out = d.cli(&["image", "pull", &image]);
    let took = started.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("made no progress for 7 s"), "{err}");
    assert_eq!(
        err.matches(&format!("pull of {image}")).count(),
        1,
        "said once: {err}"
    );
    assert!(
        err.contains(&format!("{image}: waiting for the registry (")),
        "{err}"
    );
    assert!(
        took >= Duration::from_secs(7) && took < Duration::from_secs(20),
        "{took:?}"
    );
    assert!(
        !err.contains("\u{1b}["),
        "no terminal codes in plain output: {err:?}"
    );

    // On a terminal: the bar, then the same error.
    let sock = format!("kinglet-pull-{}", std::process::id());
    let tmux = |args: &[&str]| {
        Command::new("tmux")
            .args(["-L", &sock])
            .args(args)
            .output()
            .expect("tmux (Debian package tmux)")
    };
    let cmd = format!(
        "{} image --socket {} pull {image}; echo EXIT-$?; sleep 60",
        kinglet_bin().display(),
        d.socket.display()
    );
    assert!(tmux(&[
        "new-session",
        "-d",
        "-s",
        "p",
        "-x",
        "120",
        "-y",
        "10",
        &cmd
    ])
    .status
    .success());
    let screen = || {
        String::from_utf8_lossy(&tmux(&["capture-pane", "-p", "-J", "-t", "p"]).stdout).into_owned()
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut bar = String::new();
    while Instant::now() < deadline {
        bar = screen();
        if bar.contains("resolving") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        bar.contains(&format!("{image} ")) && bar.contains("resolving"),
        "{bar}"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut end = String::new();
    while Instant::now() < deadline {
        end = screen();
        if end.contains("EXIT-") {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = tmux(&["kill-server"]);
    assert!(
        end.contains("made no progress for 7 s") && end.contains("EXIT-1"),
        "{end}"
    );
    assert!(
        !end.contains("resolving"),
        "the bar is cleared at the end: {end}"
    );
    d.shutdown().await;
}
