//! The CRI streaming server driven by the upstream `crictl` (../shared/cri-tools): exec with
//! piped stdin and exit codes, exec with a terminal (through `script`, which gives crictl a real
//! pty), port-forward into a pod's network namespace and into a host-network pod, and the
//! request checks of the Exec/PortForward RPCs.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use kinglet_proto::v1;
use kinglet_tests::*;

/// The upstream crictl: `$CRICTL`, else `../shared/cri-tools/crictl` beside the workspace.
fn crictl_bin() -> PathBuf {
    let p = std::env::var_os("CRICTL")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/cri-tools/crictl")
        });
    assert!(
        p.exists(),
        "crictl not found at {} (set CRICTL, see ../shared/cri-tools/README.md)",
        p.display()
    );
    p
}

fn crictl(d: &Daemon) -> Command {
    let conf = d.dir.path().join("crictl.yaml");
    if !conf.exists() {
        std::fs::write(&conf, "").unwrap();
    }
    let ep = format!("unix://{}", d.socket.display());
    let mut c = Command::new(crictl_bin());
    c.args(["--config", conf.to_str().unwrap()]).args([
        "--runtime-endpoint",
        &ep,
        "--image-endpoint",
        &ep,
        "--timeout",
        "20s",
    ]);
    c
}

fn run_with_stdin(mut c: Command, input: &[u8]) -> Output {
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `crictl port-forward -r TRANSPORT POD LOCAL:REMOTE`, once it listens.
fn port_forward(d: &Daemon, pod: &str, remote: u16, transport: &str) -> (Child, u16) {
    let local = free_port();
    let mut child = crictl(d)
        .args([
            "port-forward",
            "-r",
            transport,
            pod,
            &format!("{local}:{remote}"),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", local)).is_err() {
        if let Ok(Some(st)) = child.try_wait() {
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            panic!("crictl port-forward exited ({st}): {err}");
        }
        assert!(Instant::now() < deadline, "port-forward never listened");
        std::thread::sleep(Duration::from_millis(50));
    }
    (child, local)
}

/// One plain HTTP/1.0 GET through `port`: the response, empty when the connection is closed or
/// reset before any (what a port-forward to a port nobody listens on does).
fn http_get_once(port: u16, path: &str) -> String {
    let attempt = (|| -> std::io::Result<String> {
        let mut s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(Duration::from_secs(20)))?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n")?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    })();
    match attempt {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => String::new(),
        Err(e) => panic!("GET {path} via :{port}: {e}"),
    }
}

/// A plain HTTP/1.0 GET through `port`; the whole response. Retried for a while when the
/// connection is reset or empty: the server in the pod may not listen yet, and a port-forward
/// closes the local connection when the pod's port refuses it, as the kubelet's does.
fn http_get(port: u16, path: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let out = http_get_once(port, path);
        if !out.is_empty() {
            return out;
        }
        assert!(Instant::now() < deadline, "GET {path} via :{port}: nothing");
        std::thread::sleep(Duration::from_millis(100));
    }
}

async fn web_pod(d: &Daemon, name: &str, host_network: bool, port: u16) -> (String, String) {
    let mut rt = d.runtime().await;
    let mut pod_cfg = pod_config(name, &d.dir.path().join("logs"));
    if host_network {
        pod_cfg.linux = Some(v1::LinuxPodSandboxConfig {
            security_context: Some(v1::LinuxSandboxSecurityContext {
                namespace_options: Some(v1::NamespaceOption {
                    network: v1::NamespaceMode::Node as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    let pod = run_pod(&mut rt, &pod_cfg).await;
    let script = format!(
        "mkdir -p /www && echo hello from {name} > /www/index.html && exec httpd -f -p 127.0.0.1:{port} -h /www"
    );
    let c = run_container(&mut rt, &pod, &pod_cfg, sh_container("web", &script)).await;
    (pod, c)
}

#[tokio::test(flavor = "multi_thread")]
async fn crictl_exec_and_port_forward() {
    let d = Daemon::start().await;
    d.import_test_image().await;
    let (pod, c) = web_pod(&d, "stream", false, 8080).await;

    for transport in ["spdy", "websocket"] {
        // Non-tty exec with stdin piped: output on both streams, stdin to its end (WebSocket:
        // the v5 close message), the exit code.
        let mut cmd = crictl(&d);
        cmd.args(["exec", "-r", transport, "-i", &c, "sh", "-c"])
            .arg("tr a-z A-Z; echo to-stderr >&2; exit 3");
        let out = run_with_stdin(cmd, b"hello\nworld\n");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "HELLO\nWORLD\n",
            "{transport}: {stderr}"
        );
        assert!(stderr.contains("to-stderr"), "{transport}: {stderr}");
        // The exit code travels as the kubelet's v4 Status; crictl reports it and fails.
        assert!(
            stderr.contains("command terminated with exit code 3"),
            "{transport}: {stderr}"
        );
        assert_eq!(out.status.code(), Some(1));

        // Output larger than any flow-control window spdystream could enforce (64 KiB).
        let out = crictl(&d)
            .args(["exec", "-r", transport, &c, "sh", "-c"])
            .arg("head -c 3000000 /dev/zero | tr '\\0' x")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{transport}: {stderr}");
        assert_eq!(out.stdout.len(), 3_000_000, "{transport}");

        // With a terminal: crictl gets a real pty from `script`; the command sees a tty of the
        // size crictl sent, and its output comes back on the one stream.
        let script = "tty; stty size; read line; echo got:$line; exit 5";
        let (text, _) = in_pty(
            &crictl_cmdline(&d, &format!("exec -r {transport} -it {c} sh -c '{script}'")),
            b"typed-line\n",
        );
        assert!(text.contains("/dev/pts/"), "{transport}: {text:?}");
        assert!(text.contains("37 91"), "{transport} window size: {text:?}");
        assert!(text.contains("got:typed-line"), "{transport}: {text:?}");
        assert!(
            text.contains("command terminated with exit code 5"),
            "{transport}: {text:?}"
        );

        // Port-forward into the pod's own network namespace: its server listens on 127.0.0.1
        // there, unreachable from the host.
        let (mut pf, local) = port_forward(&d, &pod, 8080, transport);
        for _ in 0..3 {
            let resp = http_get(local, "/index.html");
            assert!(resp.contains("hello from stream"), "{transport}: {resp}");
        }
        pf.kill().unwrap();
        pf.wait().unwrap();

        // A port nobody listens on: the local connection closes, crictl reports the error the
        // server sent on the error stream.
        let (mut pf, local) = port_forward(&d, &pod, 9, transport);
        assert_eq!(http_get_once(local, "/"), "", "{transport}");
        std::thread::sleep(Duration::from_millis(500));
        pf.kill().unwrap();
        let out = pf.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("error forwarding port 9 to pod") && stderr.contains("refused"),
            "{transport}: {stderr}"
        );
    }

    // A host-network pod: the port is the host's.
    let port = free_port();
    let (host_pod, _) = web_pod(&d, "hostnet", true, port).await;
    wait_for("the host-network server", Duration::from_secs(10), || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let (mut pf, local) = port_forward(&d, &host_pod, port, "spdy");
    let resp = http_get(local, "/index.html");
    assert!(resp.contains("hello from hostnet"), "response: {resp}");
    pf.kill().unwrap();
    pf.wait().unwrap();
    d.shutdown().await;
}

/// `crictl ARGS...` as one shell command line (for `script -c`).
fn crictl_cmdline(d: &Daemon, args: &str) -> String {
    let c = crictl(d);
    let mut line = crictl_bin().display().to_string();
    for a in c.get_args() {
        line.push(' ');
        line.push_str(a.to_str().unwrap());
    }
    format!("{line} {args}")
}

/// Run `cmdline` under `script` (a real pty of 91x37 for crictl), type `input` after a pause.
fn in_pty(cmdline: &str, input: &[u8]) -> (String, Option<i32>) {
    let mut child = Command::new("script")
        .args([
            "-qfec",
            &format!("stty cols 91 rows 37; {cmdline}"),
            "/dev/null",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    stdin.write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        out.status.code(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn crictl_attach_with_and_without_a_terminal() {
    let d = Daemon::start().await;
    d.import_test_image().await;
    let mut rt = d.runtime().await;
    let logs = d.dir.path().join("logs");
    let pod_cfg = pod_config("attach", &logs);
    let pod = run_pod(&mut rt, &pod_cfg).await;

    // stdin + stdin_once, no terminal (over WebSocket): the client's input is the shell's whole
    // script; its end closes the container's stdin, so the shell exits and the attach ends.
    let mut cfg = sh_container("once", "exec sh");
    cfg.stdin = true;
    cfg.stdin_once = true;
    let c = run_container(&mut rt, &pod, &pod_cfg, cfg).await;
    let mut cmd = crictl(&d);
    cmd.args(["attach", "-r", "websocket", "-i", &c]);
    let out = run_with_stdin(cmd, b"echo hi-attach; echo err-attach >&2; exit 4\n");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hi-attach\n",
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("err-attach"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let st = wait_exited(&mut rt, &c, Duration::from_secs(10)).await;
    assert_eq!(st.exit_code, 4, "the shell read its script from the attach");

    // A terminal (over SPDY): crictl attach -it from a real pty; the size follows crictl's terminal, input
    // is echoed, and the output is also in the CRI log as stdout.
    let mut cfg = sh_container("tty", "exec sh");
    cfg.stdin = true;
    cfg.tty = true;
    let c = run_container(&mut rt, &pod, &pod_cfg, cfg).await;
    let (text, _) = in_pty(
        &crictl_cmdline(&d, &format!("attach -it {c}")),
        b"stty size; echo sum=$((6*7)); exit 6\n",
    );
    assert!(text.contains("37 91"), "window size: {text:?}");
    assert!(text.contains("sum=42"), "{text:?}");
    let st = wait_exited(&mut rt, &c, Duration::from_secs(10)).await;
    assert_eq!(st.exit_code, 6);
    let log = std::fs::read_to_string(logs.join("tty.log")).unwrap();
    assert!(
        log.lines().any(|l| l.ends_with(" stdout F sum=42")),
        "tty output in the CRI log as stdout: {log}"
    );

    // An attach without stdin ends when its client goes away: the shim drops the connection.
    let c = run_container(
        &mut rt,
        &pod,
        &pod_cfg,
        sh_container("talker", "while true; do echo tick; sleep 0.1; done"),
    )
    .await;
    let shim: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            d.run_root
                .join("containers")
                .join(&c)
                .join("shim/shim.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let sockets = || {
        std::fs::read_dir(format!("/proc/{}/fd", shim["shim_pid"]))
            .unwrap()
            .filter_map(|e| std::fs::read_link(e.unwrap().path()).ok())
            .filter(|l| l.to_string_lossy().starts_with("socket:"))
            .count()
    };
    let before = sockets();
    let mut attached = crictl(&d)
        .args(["attach", &c])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 5];
    attached
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut first)
        .unwrap();
    assert_eq!(&first, b"tick\n");
    assert_eq!(sockets(), before + 1, "one attach client at the shim");
    attached.kill().unwrap();
    attached.wait().unwrap();
    wait_for(
        "the shim to drop the attach client",
        Duration::from_secs(10),
        || sockets() == before,
    );
    d.shutdown().await;
}

/// `kinglet exec -i/-t` and `kinglet port-forward` for a pod applied from YAML, through the
/// same streaming server (WebSocket).
#[tokio::test(flavor = "multi_thread")]
async fn kinglet_exec_it_and_port_forward_for_manifest_pods() {
    let d = Daemon::start().await;
    d.import_test_image().await;
    let yaml = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: shell\nspec:\n  containers:\n  - name: web\n    image: {IMAGE}\n    imagePullPolicy: IfNotPresent\n    command: [sh, -c, 'mkdir -p /www && echo manifest-pod > /www/index.html && exec httpd -f -p 127.0.0.1:8080 -h /www']\n"
    );
    let f = write(d.dir.path(), "shell.yaml", &yaml);
    d.cli_ok(&["apply", "-f", &f]);
    wait_for("pod shell running", Duration::from_secs(30), || {
        pod_json(&d, "shell")["status"]["phase"] == "Running"
    });
    let kinglet = kinglet_bin();
    let sock = d.socket.display().to_string();

    // -i: stdin to its end, stdout and stderr apart, the exit code as kinglet's own.
    let mut cmd = Command::new(&kinglet);
    cmd.args(["exec", "--socket", &sock, "-i", "shell", "--", "sh", "-c"])
        .arg("tr a-z A-Z; echo err >&2; exit 7");
    let out = run_with_stdin(cmd, b"abc\n");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ABC\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
    assert_eq!(out.status.code(), Some(7));

    // -it from a real terminal: raw mode, size, input echoed by the remote tty.
    let line = format!(
        "{} exec --socket {sock} -it shell -- sh -c 'stty size; read x; echo got:$x; exit 2'",
        kinglet.display()
    );
    let (text, code) = in_pty(&line, b"typed\r");
    assert!(text.contains("37 91"), "{text:?}");
    assert!(text.contains("got:typed"), "{text:?}");
    assert_eq!(code, Some(2), "{text:?}");

    // port-forward LOCAL:REMOTE into the pod's network namespace.
    let local = free_port();
    let mut pf = Command::new(&kinglet)
        .args(["port-forward", "--socket", &sock, "shell"])
        .arg(format!("{local}:8080"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(
        "kinglet port-forward listening",
        Duration::from_secs(10),
        || TcpStream::connect(("127.0.0.1", local)).is_ok(),
    );
    for _ in 0..2 {
        let resp = http_get(local, "/index.html");
        assert!(resp.contains("manifest-pod"), "{resp}");
    }
    pf.kill().unwrap();
    let out = pf.wait_with_output().unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains(&format!("Forwarding from 127.0.0.1:{local} -> 8080")),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn streaming_requests_are_checked() {
    let d = Daemon::start().await;
    d.import_test_image().await;
    let mut rt = d.runtime().await;
    let pod_cfg = pod_config("checks", &d.dir.path().join("logs"));
    let pod = run_pod(&mut rt, &pod_cfg).await;
    let c = run_container(&mut rt, &pod, &pod_cfg, sh_container("c", "sleep 1000")).await;

    let err = rt
        .exec(v1::ExecRequest {
            container_id: "nope".into(),
            cmd: vec!["true".into()],
            stdout: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{err}");
    let err = rt
        .exec(v1::ExecRequest {
            container_id: c.clone(),
            cmd: vec!["true".into()],
            tty: true,
            stdout: true,
            stderr: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    let err = rt
        .port_forward(v1::PortForwardRequest {
            pod_sandbox_id: "nope".into(),
            port: vec![80],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{err}");

    // A URL works once, on loopback, and only for its own kind.
    let url = rt
        .exec(v1::ExecRequest {
            container_id: c.clone(),
            cmd: vec!["true".into()],
            stdout: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .url;
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let pf_url = url.replace("/exec/", "/portforward/");
    let status = |u: &str| {
        let out = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", u])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(status(&pf_url), "404", "token of another kind");
    assert_eq!(status(&url), "404", "consumed by the previous attempt");
    let url = rt
        .exec(v1::ExecRequest {
            container_id: c.clone(),
            cmd: vec!["true".into()],
            stdout: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .url;
    assert_eq!(status(&url), "400", "no SPDY upgrade asked for");
    d.shutdown().await;
}
