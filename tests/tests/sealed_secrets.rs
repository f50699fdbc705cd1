//! Secrets never on disk in plain text: `kinglet secret keygen/seal` writes age-sealed
//! manifests; the daemon opens them in memory (manifests directory and `kinglet apply -f`),
//! a pod sees the value through a volume and env, no file under the daemon's root holds it, a
//! file sealed for another key is reported by name while the other files are applied, and
//! manifests among the systemd credentials (`$CREDENTIALS_DIRECTORY`) are applied too.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use kinglet_tests::*;

const VALUE: &str = "hunter2-s3cr3t-7f1c";

fn secret(name: &str, value: &str) -> String {
    format!("apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\nstringData:\n  password: {value}\n")
}

const POD: &str = "apiVersion: v1
kind: Pod
metadata:
  name: app
spec:
  containers:
  - name: main
    image: kinglet.test/busybox:latest
    imagePullPolicy: Never
    command: [sleep, '3600']
    env:
    - name: DB_PASSWORD
      valueFrom: {secretKeyRef: {name: db, key: password}}
    volumeMounts: [{name: db, mountPath: /etc/db}]
  volumes:
  - name: db
    secret: {secretName: db}
";

/// `kinglet secret ...` (no daemon involved); stdout, failing the test on error.
fn secret_cli(args: &[&str]) -> String {
    let out = Command::new(kinglet_bin())
        .arg("secret")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kinglet secret {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Seal `text` for the recipient of `identity`; the sealed file is written to `to`.
fn seal(dir: &Path, text: &str, identity: &Path, to: &Path) {
    let plain = dir.join("plain-input.yaml");
    std::fs::write(&plain, text).unwrap();
    let sealed = secret_cli(&[
        "seal",
        "-f",
        plain.to_str().unwrap(),
        "-i",
        identity.to_str().unwrap(),
    ]);
    std::fs::remove_file(&plain).unwrap();
    std::fs::write(to, sealed).unwrap();
}

/// Every regular file below `dir` whose bytes contain `needle`.
fn files_holding(dir: &Path, needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let (p, ft) = (e.path(), e.file_type().unwrap());
        if ft.is_dir() {
            found.extend(files_holding(&p, needle));
        } else if ft.is_file() {
            let b = std::fs::read(&p).unwrap_or_default();
            if b.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                found.push(p.display().to_string());
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread")]
async fn sealed_secrets_reach_pods_and_never_touch_disk_in_plain_text() {
    let mut d = Daemon::unstarted("", |_| Vec::new());
    let dir = d.dir.path().to_owned();
    let key = dir.join("age.key");
    let other_key = dir.join("other.key");
    let recipient = secret_cli(&["keygen", "-o", key.to_str().unwrap()]);
    assert!(recipient.starts_with("age1"), "{recipient}");
    secret_cli(&["keygen", "-o", other_key.to_str().unwrap()]);
    assert_eq!(
        secret_cli(&["recipient", "-i", key.to_str().unwrap()]),
        recipient
    );
    let cfg = dir.join("kinglet.toml");
    std::fs::write(&cfg, format!("age-identity-file = {:?}\n", key)).unwrap();
    d.config = Some(cfg);

    let m = d.manifests();
    std::fs::create_dir_all(&m).unwrap();
    let sealed = m.join("db.sealed.yaml");
    seal(&dir, &secret("db", VALUE), &key, &sealed);
    // Sealed for another node's key: reported by name, the other files still applied.
    let wrong = m.join("wrong.sealed.yaml");
    seal(&dir, &secret("wrong", "x"), &other_key, &wrong);
    std::fs::write(m.join("plain.yaml"), secret("plain", "visible")).unwrap();
    // A manifest among the systemd credentials (decrypted by systemd, in memory).
    let creds = dir.join("credentials");
    std::fs::create_dir_all(&creds).unwrap();
    std::fs::write(creds.join("cred.yaml"), secret("fromcred", "c")).unwrap();

    let child = d
        .command()
        .env("CREDENTIALS_DIRECTORY", &creds)
        .spawn()
        .unwrap();
    d.adopt(child);
    wait_for("the daemon answers", Duration::from_secs(20), || {
        d.cli(&["version"]).status.success()
    });
    d.import_test_image().await;
    std::fs::write(m.join("app.yaml"), POD).unwrap();

    let text = std::fs::read_to_string(&sealed).unwrap();
    assert!(
        text.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"),
        "{text}"
    );
    assert!(
        !text.contains(VALUE) && !text.contains("password"),
        "{text}"
    );

    wait_for("pod app running", Duration::from_secs(60), || {
        let out = d.cli(&["get", "pod", "app", "-o", "json"]);
        out.status.success()
            && serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["status"]["phase"]
                == "Running"
    });
    let ex = |cmd: &[&str]| {
        let mut a = vec!["exec", "app", "--"];
        a.extend_from_slice(cmd);
        d.cli_ok(&a)
    };
    assert_eq!(ex(&["cat", "/etc/db/password"]), VALUE);
    assert_eq!(ex(&["sh", "-c", "printf %s \"$DB_PASSWORD\""]), VALUE);
    d.cli_ok(&["get", "secret", "fromcred"]);

    // The wrong key: a clear error naming the file; its Secret is not there.
    let log = d.log();
    let shown = wrong.display().to_string();
    assert!(
        log.lines()
            .any(|l| l.contains(&shown)
                && l.contains("cannot decrypt with this node's age identity")),
        "{log}"
    );
    assert!(!d.cli(&["get", "secret", "wrong"]).status.success());

    // `kinglet apply -f` of a sealed file, and of one sealed for another key.
    let api = dir.join("api.sealed.yaml");
    seal(&dir, &secret("api", VALUE), &key, &api);
    assert_eq!(
        d.cli_ok(&["apply", "-f", api.to_str().unwrap()]),
        "secret/api created\n"
    );
    let out = d.cli(&["apply", "-f", wrong.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains(&shown) && err.contains("cannot decrypt"),
        "{err}"
    );

    // The plain-text Secret is warned about once, not at every re-read of the directory;
    // the credential's Secret is not warned about.
    std::fs::write(
        m.join("touch.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: t}\n",
    )
    .unwrap();
    wait_for("configmap t", Duration::from_secs(20), || {
        d.cli(&["get", "configmap", "t"]).status.success()
    });
    let log = d.log();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("a Secret in plain text on disk"))
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("plain.yaml"), "{warnings:?}");

    // Nothing the daemon wrote to disk holds the value (root: records, objects, logs).
    assert_eq!(files_holding(&d.root, VALUE), Vec::<String>::new());
    assert!(!log.contains(VALUE), "the value is never logged");
    d.shutdown().await;
}
