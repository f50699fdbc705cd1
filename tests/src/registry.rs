//! A real image registry for tests: Debian's `docker-registry` (distribution 2.x) on
//! 127.0.0.1 with a free port, storage in a temp dir, in one of three modes: open, htpasswd
//! basic auth, or TLS with a CA generated for the test (openssl CLI). Images are pushed with
//! `skopeo copy` from the test image's OCI layout.
//!
//! The registry process is killed when the [`Registry`] is dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How the registry is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Open,
    /// htpasswd basic auth with one user.
    Basic {
        user: String,
        password: String,
    },
    /// HTTPS with a certificate signed by a CA the test made (`Registry::ca`).
    Tls,
}

/// A running registry.
pub struct Registry {
    pub dir: tempfile::TempDir,
    /// `127.0.0.1:<port>`.
    pub host: String,
    pub mode: Mode,
    child: Child,
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().unwrap().port()
}

impl Registry {
    /// Start `docker-registry` and wait until it answers.
    pub fn start(mode: Mode) -> Registry {
        let bin = Path::new("/usr/bin/docker-registry");
        assert!(
            bin.exists(),
            "/usr/bin/docker-registry not found: install the Debian package docker-registry (scripts/setup-debian.sh)"
        );
        let dir = tempfile::Builder::new()
            .prefix("kinglet-registry-")
            .tempdir()
            .unwrap();
        let d = dir.path();
        let port = free_port();
        let host = format!("127.0.0.1:{port}");
        let mut extra = String::new();
        match &mode {
            Mode::Open => {}
            Mode::Basic { user, password } => {
                run(Command::new("htpasswd")
                    .arg("-Bbc")
                    .arg(d.join("htpasswd"))
                    .arg(user)
                    .arg(password));
                extra.push_str(&format!(
                    "auth:\n  htpasswd:\n    realm: kinglet-test\n    path: {}\n",
                    d.join("htpasswd").display()
                ));
            }
            Mode::Tls => {
                make_certs(d);
                extra.push_str(&format!(
                    "  tls:\n    certificate: {}\n    key: {}\n",
                    d.join("server.pem").display(),
                    d.join("server.key").display()
                ));
            }
        }
        let (http_extra, auth_extra) = if mode == Mode::Tls {
            (extra, String::new())
        } else {
            (String::new(), extra)
        };
        let config = format!(
            "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {host}\n  secret: kinglet-test-secret\n{http_extra}{auth_extra}",
            d.join("data").display()
        );
        std::fs::write(d.join("config.yml"), config).unwrap();
        let log = std::fs::File::create(d.join("registry.log")).unwrap();
        let child = Command::new(bin)
            .arg("serve")
            .arg(d.join("config.yml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        let mut r = Registry {
            dir,
            host,
            mode,
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&r.host).is_err() {
            if let Some(st) = r.child.try_wait().unwrap() {
                panic!("docker-registry exited ({st}):\n{}", r.log());
            }
            assert!(
                Instant::now() < deadline,
                "registry did not listen:\n{}",
                r.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        r
    }

    /// The registry's log (access log included).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// The CA certificate (PEM) of a TLS registry.
    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// Push the OCI layout image `layout:layout_ref` as `<host>/<name>`.
    pub fn push(&self, layout: &Path, layout_ref: &str, name: &str) {
        let mut cmd = Command::new("skopeo");
        cmd.args([
            "--insecure-policy",
            "copy",
            "--quiet",
            "--all",
            "--dest-tls-verify=false",
        ]);
        if let Mode::Basic { user, password } = &self.mode {
            cmd.arg(format!("--dest-creds={user}:{password}"));
        }
        cmd.arg(format!("oci:{}:{layout_ref}", layout.display()))
            .arg(format!("docker://{}/{name}", self.host));
        run(&mut cmd);
    }

    /// How many GET requests the registry served for `path_part` (e.g. a blob digest).
    pub fn gets(&self, path_part: &str) -> usize {
        self.log()
            .lines()
            .filter(|l| l.contains("\"GET /v2/") && l.contains(path_part) && l.contains("\" 200 "))
            .count()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A CA and a server certificate for 127.0.0.1 signed by it, in `d`.
fn make_certs(d: &Path) {
    let p = |f: &str| d.join(f).display().to_string();
    run(Command::new("openssl").args([
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=kinglet test CA",
        "-keyout",
        &p("ca.key"),
        "-out",
        &p("ca.pem"),
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]));
    run(Command::new("openssl").args([
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        &p("server.key"),
        "-out",
        &p("server.csr"),
    ]));
    std::fs::write(
        d.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(Command::new("openssl").args([
        "x509",
        "-req",
        "-in",
        &p("server.csr"),
        "-CA",
        &p("ca.pem"),
        "-CAkey",
        &p("ca.key"),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        &p("ext.cnf"),
        "-out",
        &p("server.pem"),
    ]));
}
