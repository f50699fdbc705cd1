//! The trust model at the daemon's edge: a plain-text Secret in the manifests directory is
//! warned about by file, and a manifests directory or config file others can write is refused
//! at start with a message naming it.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use kinglet_tests::*;

const SECRET: &str =
    "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\nstringData:\n  password: hunter2\n";

#[tokio::test(flavor = "multi_thread")]
async fn a_plain_text_secret_in_the_manifests_directory_is_warned_about_by_file() {
    let mut d = Daemon::unstarted("", |_| Vec::new());
    std::fs::create_dir_all(d.manifests()).unwrap();
    let file = d.manifests().join("db-secret.yaml");
    std::fs::write(&file, SECRET).unwrap();
    d.spawn().await;
    let want = file.display().to_string();
    wait_for(
        "the plain-text Secret warning",
        Duration::from_secs(20),
        || {
            d.log()
                .lines()
                .any(|l| l.contains("a Secret in plain text on disk") && l.contains(&want))
        },
    );
    assert!(
        !d.log().contains("hunter2"),
        "the secret itself is never logged"
    );
    d.shutdown().await;
}

/// Start the daemon and wait for it to exit; returns its log.
fn refused(d: &mut Daemon) -> String {
    d.adopt(d.command().spawn().expect("start kinglet daemon"));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(st) = d.child().unwrap().try_wait().unwrap() {
            assert!(!st.success(), "the daemon exits with an error");
            return d.log();
        }
        assert!(
            Instant::now() < deadline,
            "the daemon started; log:\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_manifests_directory_or_config_others_can_write_is_refused() {
    let mut d = Daemon::unstarted("", |_| Vec::new());
    std::fs::create_dir_all(d.manifests()).unwrap();
    std::fs::set_permissions(d.manifests(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let log = refused(&mut d);
    assert!(log.contains("refusing the manifests directory"), "{log}");
    assert!(log.contains(&d.manifests().display().to_string()), "{log}");

    let mut d = Daemon::unstarted("pod-pids-limit = 100\n", |_| Vec::new());
    let cfg = d.config.clone().unwrap();
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o666)).unwrap();
    let log = refused(&mut d);
    assert!(log.contains("refusing the config file"), "{log}");
    assert!(log.contains("writable by group or others (0666)"), "{log}");
    // Fixed as the message says, it starts.
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o600)).unwrap();
    d.spawn().await;
    d.shutdown().await;
}
