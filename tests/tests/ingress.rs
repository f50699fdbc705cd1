//! Ingress end to end: real pods (busybox httpd, an nc WebSocket echo) behind Services,
//! reached through the daemon's ingress proxy on high ports: host and path routing, a
//! wildcard host, defaultBackend and 404, X-Forwarded-* headers, an Ingress of another class
//! ignored, TLS with SNI (two hosts, two certificates from a test CA, checked with a rustls
//! client trusting only that CA), HTTP/2 by ALPN, a Secret update rotating a certificate
//! without a restart, a bad TLS Secret refused, a WebSocket upgrade, the Ingress status, and
//! the listeners gone once the last Ingress is deleted.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use kinglet_tests::*;
use rustls::pki_types::{CertificateDer, ServerName};

/// The scripts of the backends: a CGI that prints its environment (the forwarded headers),
/// and a WebSocket "server" for `nc -e` that answers the upgrade with RFC 6455's example
/// accept key, then echoes every byte.
const SCRIPTS: &str = r#"apiVersion: v1
kind: ConfigMap
metadata: {name: scripts}
data:
  env: |
    #!/bin/sh
    echo Content-Type: text/plain
    echo
    env
  ws.sh: |
    #!/bin/sh
    cr=$(printf '\r')
    while read -r l; do
      [ -z "$l" ] && break
      [ "$l" = "$cr" ] && break
    done
    printf 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n'
    exec cat
"#;

const BACKEND: &str = r#"apiVersion: v1
kind: Pod
metadata: {name: NAME, labels: {app: NAME}}
spec:
  terminationGracePeriodSeconds: 1
  volumes: [{name: s, configMap: {name: scripts, defaultMode: 0755}}]
  containers:
  - name: web
    image: kinglet.test/busybox:latest
    imagePullPolicy: IfNotPresent
    command: [sh, -c, 'mkdir -p /www/api && echo NAME > /www/who && echo NAME > /www/api/who && exec httpd -f -p 8080 -h /www']
    volumeMounts: [{name: s, mountPath: /www/cgi-bin}]
    ports: [{name: http, containerPort: 8080}]
    readinessProbe:
      tcpSocket: {port: 8080}
      periodSeconds: 1
"#;

const WS: &str = r#"apiVersion: v1
kind: Pod
metadata: {name: ws, labels: {app: ws}}
spec:
  terminationGracePeriodSeconds: 1
  volumes: [{name: s, configMap: {name: scripts, defaultMode: 0755}}]
  containers:
  - name: ws
    image: kinglet.test/busybox:latest
    imagePullPolicy: IfNotPresent
    command: [nc, -ll, -p, '8080', -e, /s/ws.sh]
    volumeMounts: [{name: s, mountPath: /s}]
    readinessProbe:
      tcpSocket: {port: 8080}
      periodSeconds: 1
"#;

/// Ready (its probe always passes) but nothing listens on its port.
const DEAD: &str = r#"apiVersion: v1
kind: Pod
metadata: {name: dead, labels: {app: api}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: kinglet.test/busybox:latest
    imagePullPolicy: IfNotPresent
    command: [sleep, '3600']
    ports: [{name: http, containerPort: 8080}]
    readinessProbe:
      exec: {command: ['true']}
      periodSeconds: 1
"#;

const SERVICES: &str = r#"apiVersion: v1
kind: Service
metadata: {name: api}
spec:
  selector: {app: api}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: web, port: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: ws}
spec:
  selector: {app: ws}
  ports: [{port: 80, targetPort: 8080}]
"#;

const INGRESS: &str = r#"apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: kinglet}
spec: {controller: kinglet.io/ingress-controller}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: main}
spec:
  ingressClassName: kinglet
  DEFAULT
  tls:
  - {hosts: [a.example.test], secretName: a-tls}
  - {hosts: [b.example.test], secretName: b-tls}
  rules:
  - host: a.example.test
    http:
      paths:
      - {path: /api, pathType: Prefix, backend: {service: {name: api, port: {name: http}}}}
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 8080}}}}
  - host: b.example.test
    http:
      paths:
      - {path: /cgi-bin/env, pathType: Exact, backend: {service: {name: api, port: {number: 80}}}}
  - host: '*.wild.test'
    http:
      paths:
      - {path: /api, pathType: ImplementationSpecific, backend: {service: {name: api, port: {number: 80}}}}
  - host: ws.test
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: ws, port: {number: 80}}}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: foreign}
spec:
  ingressClassName: nginx
  rules:
  - host: foreign.test
    http:
      paths:
      - {path: /api, pathType: Prefix, backend: {service: {name: api, port: {number: 80}}}}
"#;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One HTTP/1.1 request on 127.0.0.1:`port` with `host`; (status line, body).
fn get(port: u16, host: &str, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nX-Forwarded-For: 6.6.6.6\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out.lines().next().unwrap_or("").to_owned();
    let body = out.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
    // Chunked bodies (the CGI answer) keep their chunk sizes: compare by content only.
    (status, body.trim().to_owned())
}

struct Pki {
    ca: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

impl Pki {
    fn new() -> Pki {
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "kinglet test CA");
        let key = rcgen::KeyPair::generate().unwrap();
        Pki {
            ca: rcgen::CertifiedIssuer::self_signed(p, key).unwrap(),
        }
    }

    /// (PEM certificate, PEM key, DER certificate) for `host`.
    fn leaf(&self, host: &str) -> (String, String, Vec<u8>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let c = rcgen::CertificateParams::new(vec![host.to_owned()])
            .unwrap()
            .signed_by(&key, &self.ca)
            .unwrap();
        (c.pem(), key.serialize_pem(), c.der().to_vec())
    }

    fn client(&self, alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.der().clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        tokio_rustls::TlsConnector::from(Arc::new(cfg))
    }
}

fn tls_secret(name: &str, crt: &str, key: &str) -> String {
    serde_json::json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
        "type": "kubernetes.io/tls",
        "stringData": {"tls.crt": crt, "tls.key": key},
    })
    .to_string()
}

/// The certificate served for SNI `host` on 127.0.0.1:`port` (verified against the test CA).
async fn served_cert(
    pki: &Pki,
    port: u16,
    host: &str,
) -> Result<(Vec<u8>, Option<Vec<u8>>), std::io::Error> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let name = ServerName::try_from(host.to_owned()).unwrap();
    let tls = pki.client(&[b"h2", b"http/1.1"]).connect(name, tcp).await?;
    let (_, conn) = tls.get_ref();
    let cert: &CertificateDer = &conn.peer_certificates().unwrap()[0];
    Ok((cert.to_vec(), conn.alpn_protocol().map(|p| p.to_vec())))
}

/// An HTTP/2 GET over TLS (ALPN h2); the body.
async fn h2_get(pki: &Pki, port: u16, host: &str, path: &str) -> String {
    use http_body_util::BodyExt;
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let name = ServerName::try_from(host.to_owned()).unwrap();
    let tls = pki.client(&[b"h2"]).connect(name, tcp).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get(format!("https://{host}{path}"))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200, "{resp:?}");
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8_lossy(&body).into_owned()
}

fn refused(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_err()
}

#[tokio::test(flavor = "multi_thread")]
async fn ingress_routes_terminates_tls_and_upgrades() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (http, https) = (free_port(), free_port());
    let d = Daemon::start_with_config(&format!(
        "service-cidr = \"10.221.1.0/24\"\n[ingress]\nhttp-port = {http}\nhttps-port = {https}\n"
    ))
    .await;
    d.import_test_image().await;
    let pki = Pki::new();
    let (a_crt, a_key, a_der) = pki.leaf("a.example.test");
    let (b_crt, b_key, b_der) = pki.leaf("b.example.test");

    // A TLS Secret whose key is not its certificate's is refused, naming the problem.
    let bad = write(
        d.dir.path(),
        "bad.json",
        &tls_secret("bad-tls", &a_crt, &b_key),
    );
    let out = d.cli(&["apply", "-f", &bad]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "bad TLS Secret accepted");
    assert!(
        err.contains("Secret \"bad-tls\"") && err.contains("does not match"),
        "{err}"
    );

    let objs = [
        SCRIPTS.to_owned(),
        BACKEND.replace("NAME", "api"),
        BACKEND.replace("NAME", "web"),
        WS.to_owned(),
        SERVICES.to_owned(),
        tls_secret("a-tls", &a_crt, &a_key),
        tls_secret("b-tls", &b_crt, &b_key),
    ];
    let f = write(d.dir.path(), "app.yaml", &objs.join("\n---\n"));
    d.cli_ok(&["apply", "-f", &f]);
    for p in ["api", "web", "ws"] {
        wait_for(&format!("pod {p} ready"), Duration::from_secs(60), || {
            pod_json(&d, p)["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        });
    }
    // No Ingress yet: nothing listens.
    assert!(
        refused(http) && refused(https),
        "listening before any Ingress"
    );

    let with_default = INGRESS.replace(
        "DEFAULT",
        "defaultBackend: {service: {name: web, port: {name: web}}}",
    );
    let ing = write(d.dir.path(), "ing.yaml", &with_default);
    let out = d.cli_ok(&["apply", "-f", &ing]);
    assert!(out.contains("ingress"), "{out}");
    wait_for("routes through the proxy", Duration::from_secs(20), || {
        !refused(http) && get(http, "a.example.test", "/api/who").1 == "api"
    });

    // Host and path rules; Prefix is element-wise; a single-label wildcard; the default.
    assert_eq!(get(http, "a.example.test", "/who").1, "web");
    assert_eq!(get(http, "A.EXAMPLE.TEST:80", "/api/who").1, "api");
    assert_eq!(get(http, "x.wild.test", "/api/who").1, "api");
    assert_eq!(get(http, "y.x.wild.test", "/api/who").1, "web");
    assert_eq!(get(http, "unknown.test", "/api/who").1, "web");
    // An Ingress of another class is not routed.
    assert_eq!(get(http, "foreign.test", "/api/who").1, "web");
    // X-Forwarded-*: the client as the proxy saw it, not what it claimed.
    let (status, env) = get(http, "b.example.test", "/cgi-bin/env");
    assert!(status.contains("200"), "{status} {env}");
    for want in [
        "HTTP_X_FORWARDED_FOR=127.0.0.1",
        "HTTP_X_FORWARDED_PROTO=http",
        "HTTP_X_FORWARDED_HOST=b.example.test",
    ] {
        assert!(env.contains(want), "{want} missing in:\n{env}");
    }
    assert!(!env.contains("6.6.6.6"), "{env}");

    // TLS: each host its certificate by SNI; an unknown name gets the self-signed default,
    // which the test CA does not vouch for.
    let (cert, alpn) = served_cert(&pki, https, "a.example.test").await.unwrap();
    assert_eq!(cert, a_der);
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
    assert_eq!(
        served_cert(&pki, https, "b.example.test").await.unwrap().0,
        b_der
    );
    let e = served_cert(&pki, https, "nocert.test").await.unwrap_err();
    assert!(e.to_string().contains("UnknownIssuer"), "{e}");
    // HTTP/2 over TLS, with X-Forwarded-Proto https.
    assert_eq!(
        h2_get(&pki, https, "a.example.test", "/api/who")
            .await
            .trim(),
        "api"
    );
    let env = h2_get(&pki, https, "b.example.test", "/cgi-bin/env").await;
    assert!(env.contains("HTTP_X_FORWARDED_PROTO=https"), "{env}");

    // A Secret update rotates the certificate, daemon untouched.
    let pid = d.pid();
    let (a2_crt, a2_key, a2_der) = pki.leaf("a.example.test");
    let rot = write(
        d.dir.path(),
        "rot.json",
        &tls_secret("a-tls", &a2_crt, &a2_key),
    );
    d.cli_ok(&["apply", "-f", &rot]);
    let mut now = Vec::new();
    for _ in 0..40 {
        now = served_cert(&pki, https, "a.example.test").await.unwrap().0;
        if now == a2_der {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(now, a2_der, "certificate not rotated within 4 s");
    assert_eq!(d.pid(), pid);

    // WebSocket: the upgrade goes through and the connection becomes a byte pipe.
    {
        let mut s = TcpStream::connect(("127.0.0.1", http)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"GET /chat HTTP/1.1\r\nHost: ws.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").unwrap();
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            assert_eq!(s.read(&mut b).unwrap(), 1, "closed in the handshake");
            head.push(b[0]);
        }
        let head = String::from_utf8_lossy(&head);
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        assert!(head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{head}");
        // A masked text frame "hello", echoed byte for byte by the backend.
        let frame = [
            0x81u8, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        s.write_all(&frame).unwrap();
        let mut back = [0u8; 11];
        s.read_exact(&mut back).unwrap();
        assert_eq!(back, frame);
    }

    // An endpoint that is Ready but refuses connections: every request still lands, on the
    // other endpoint (the proxy retries another one on a connection failure).
    let dead = write(d.dir.path(), "dead.yaml", DEAD);
    d.cli_ok(&["apply", "-f", &dead]);
    wait_for("two api endpoints", Duration::from_secs(30), || {
        let v: serde_json::Value =
            serde_json::from_str(&d.cli_ok(&["get", "endpointslices", "-o", "json"])).unwrap();
        let items = v["items"]
            .as_array()
            .cloned()
            .unwrap_or_else(|| vec![v.clone()]);
        items
            .iter()
            .filter(|s| s["metadata"]["labels"]["kubernetes.io/service-name"] == "api")
            .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
            .filter(|e| e["conditions"]["ready"] == true)
            .count()
            == 2
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for _ in 0..10 {
        assert_eq!(get(http, "a.example.test", "/api/who").1, "api");
    }
    assert!(
        d.log().contains("endpoint refused; trying another"),
        "the dead endpoint was never tried"
    );

    // port-forward svc/api: the Service port 80 is the oldest ready pod's targetPort http.
    {
        use std::io::BufRead;
        let mut child = std::process::Command::new(kinglet_bin())
            .arg("port-forward")
            .arg("--socket")
            .arg(&d.socket)
            .args(["svc/api", "0:80"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.ends_with("-> 8080\n"), "{line}");
        let port: u16 = line
            .split(':')
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {line:?}"));
        let (status, body) = get(port, "x", "/api/who");
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(body, "api", "{status}");
    }

    // Status: the host's address.
    let st: serde_json::Value =
        serde_json::from_str(&d.cli_ok(&["get", "ingress", "main", "-o", "json"])).unwrap();
    let ip = st["status"]["loadBalancer"]["ingress"][0]["ip"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(ip.parse::<std::net::Ipv4Addr>().is_ok(), "{st}");
    let table = d.cli_ok(&["get", "ingress"]);
    assert!(
        table.contains("NAME")
            && table.contains("CLASS")
            && table.contains("main")
            && table.contains(&ip),
        "{table}"
    );

    let classes = d.cli_ok(&["get", "ingressclass"]);
    assert!(
        classes.contains("CONTROLLER") && classes.contains("kinglet.io/ingress-controller"),
        "{classes}"
    );
    let desc = d.cli_ok(&["describe", "ingress", "main"]);
    for want in [
        "a-tls terminates a.example.test",
        "/api  api:http (",
        ":8080",
    ] {
        assert!(desc.contains(want), "{want} in:\n{desc}");
    }

    // Without a default backend, what matches no rule is 404.
    let without = write(d.dir.path(), "ing2.yaml", &INGRESS.replace("DEFAULT", ""));
    d.cli_ok(&["apply", "-f", &without]);
    wait_for(
        "404 without defaultBackend",
        Duration::from_secs(10),
        || get(http, "unknown.test", "/who").0.contains("404"),
    );
    assert_eq!(get(http, "a.example.test", "/api/who").1, "api");

    // The last Ingress of Kinglet's class gone: both listeners closed.
    d.cli_ok(&["delete", "ingress", "main"]);
    wait_for("listeners closed", Duration::from_secs(10), || {
        refused(http) && refused(https)
    });
    let ss = sh("ss", &["-ltnH"]);
    for p in [http, https] {
        assert!(
            !ss.contains(&format!(":{p} ")),
            "port {p} still listening:\n{ss}"
        );
    }
    d.shutdown().await;
}
