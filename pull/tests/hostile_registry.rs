//! A registry that sends too much (issue 16): a manifest or index that never ends or announces
//! gigabytes, a config or a layer that streams past its descriptor's size. Each pull fails with
//! an error naming what was too big, reads only about the limit off the socket, and leaves no
//! image and no partial file behind. Real HTTP over loopback, no root needed.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kinglet_image::ImageStore;
use kinglet_pull::{PullConfig, PullError, Puller};
use sha2::{Digest, Sha256};

/// containerd's manifest limit, which the puller uses.
const LIMIT: u64 = 4 * 1048 * 1048;

/// How the server answers one path.
#[derive(Clone)]
enum Body {
    Json(Vec<u8>),
    /// Bytes until the client hangs up, with this Content-Length announced (if any).
    Endless(Option<u64>),
}

/// A registry serving `routes` by path; counts the body bytes it wrote per path.
struct Registry {
    port: u16,
    sent: Arc<Mutex<HashMap<String, u64>>>,
}

fn serve(routes: HashMap<String, Body>) -> Registry {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let sent = Arc::new(Mutex::new(HashMap::new()));
    let counts = sent.clone();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let (routes, counts) = (routes.clone(), counts.clone());
            std::thread::spawn(move || answer(s, &routes, &counts));
        }
    });
    Registry { port, sent }
}

fn answer(s: TcpStream, routes: &HashMap<String, Body>, counts: &Mutex<HashMap<String, u64>>) {
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    r.read_line(&mut line).unwrap_or(0);
    let path = line.split(' ').nth(1).unwrap_or("").to_owned();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
            break;
        }
    }
    let mut w = s;
    let body = match path.as_str() {
        "/v2/" => Body::Json(b"{}".to_vec()),
        p => match routes.get(p) {
            Some(b) => b.clone(),
            None => {
                let _ = w.write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
                return;
            }
        },
    };
    match body {
        Body::Json(b) => {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                b.len()
            );
            let _ = w.write_all(head.as_bytes()).and_then(|_| w.write_all(&b));
        }
        Body::Endless(len) => {
            let mut head = "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nConnection: close\r\n".to_owned();
            if let Some(n) = len {
                head.push_str(&format!("Content-Length: {n}\r\n"));
            }
            head.push_str("\r\n");
            if w.write_all(head.as_bytes()).is_err() {
                return;
            }
            // JSON-looking filler, so nothing fails before the size check would.
            let chunk = [b' '; 64 << 10];
            let mut n = 0u64;
            while w.write_all(&chunk).is_ok() {
                n += chunk.len() as u64;
                *counts.lock().unwrap().entry(path.clone()).or_default() = n;
            }
        }
    }
}

fn digest(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(b)))
}

fn manifest(config: (&str, u64), layer: (&str, u64)) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.0, "size": config.1},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer.0, "size": layer.1}],
    }))
    .unwrap()
}

fn config_json() -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "architecture": std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"),
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [digest(b"layer")]},
    }))
    .unwrap()
}

/// Pull `app:1` from `reg`; the error, and the store's root for the leftovers check.
async fn pull(reg: &Registry) -> (Arc<PullError>, tempfile::TempDir, Arc<ImageStore>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(ImageStore::open(dir.path()).unwrap());
    let puller = Puller::new(
        store.clone(),
        PullConfig {
            progress_timeout: Duration::from_secs(20),
            connect_timeout: Duration::from_secs(2),
            ..Default::default()
        },
    );
    let image = format!("127.0.0.1:{}/hostile/app:1", reg.port);
    let e = tokio::time::timeout(Duration::from_secs(60), puller.pull(&image, Vec::new()))
        .await
        .expect("the pull ends well before its deadline")
        .unwrap_err();
    (e, dir, store)
}

/// No image, and no file in the store but those of a fresh store and whole verified blobs
/// named `keep`.
fn assert_nothing_left(dir: &Path, store: &ImageStore, keep: &[&str]) {
    assert!(store.list().is_empty(), "no image recorded");
    let fresh = tempfile::tempdir().unwrap();
    drop(ImageStore::open(fresh.path()).unwrap());
    let initial: Vec<_> = files(fresh.path())
        .into_iter()
        .map(|p| p.strip_prefix(fresh.path()).unwrap().to_owned())
        .collect();
    let blob = |p: &Path| {
        keep.iter()
            .any(|k| p.ends_with(k.trim_start_matches("sha256:")))
    };
    let stray: Vec<_> = files(dir)
        .into_iter()
        .filter(|p| !blob(p) && !initial.iter().any(|i| dir.join(i) == *p))
        .collect();
    assert!(stray.is_empty(), "left behind: {stray:?}");
}

fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                files.push(e.path());
            }
        }
    }
    files
}

fn sent(reg: &Registry, path: &str) -> u64 {
    reg.sent.lock().unwrap().get(path).copied().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_endless_manifest_is_cut_at_the_limit() {
    let path = "/v2/hostile/app/manifests/1";
    let reg = serve(HashMap::from([(path.to_owned(), Body::Endless(None))]));
    let (e, dir, store) = pull(&reg).await;
    let msg = e.to_string();
    assert!(
        msg.contains("manifest of 127.0.0.1")
            && msg.contains(&format!("larger than {LIMIT} bytes")),
        "{msg}"
    );
    // Give the server a moment to notice the hang-up, then check it could not send much more
    // than the limit (socket buffers take a few MiB).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let n = sent(&reg, path);
    assert!(
        (LIMIT / 2..LIMIT + (32 << 20)).contains(&n),
        "sent {n} bytes"
    );
    assert_nothing_left(dir.path(), &store, &[]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_manifest_announcing_gigabytes_is_refused_unread() {
    let path = "/v2/hostile/app/manifests/1";
    let reg = serve(HashMap::from([(
        path.to_owned(),
        Body::Endless(Some(8 << 30)),
    )]));
    let (e, dir, store) = pull(&reg).await;
    assert!(
        e.to_string()
            .contains(&format!("larger than {LIMIT} bytes")),
        "{e}"
    );
    assert_nothing_left(dir.path(), &store, &[]);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_endless_platform_manifest_behind_an_index_is_cut_at_the_limit() {
    let arch = std::env::consts::ARCH
        .replace("x86_64", "amd64")
        .replace("aarch64", "arm64");
    let target = digest(b"the platform manifest");
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": target, "size": 100, "platform": {"os": "linux", "architecture": arch}}],
    }))
    .unwrap();
    let platform_path = format!("/v2/hostile/app/manifests/{target}");
    let reg = serve(HashMap::from([
        (
            "/v2/hostile/app/manifests/1".to_owned(),
            Body::Json(index.clone()),
        ),
        (platform_path.clone(), Body::Endless(None)),
    ]));
    let (e, dir, store) = pull(&reg).await;
    assert!(
        e.to_string()
            .contains(&format!("larger than {LIMIT} bytes")),
        "{e}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(sent(&reg, &platform_path) < LIMIT + (32 << 20));
    // The index itself was whole and verified: it may stay as a blob, as any verified blob
    // of an interrupted pull does; nothing else.
    assert_nothing_left(dir.path(), &store, &[&digest(&index)]);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_endless_config_is_cut_at_its_descriptor_size() {
    let cfg = config_json();
    let (cd, ld) = (digest(&cfg), digest(b"layer"));
    let m = manifest((&cd, cfg.len() as u64), (&ld, 5));
    let cfg_path = format!("/v2/hostile/app/blobs/{cd}");
    let reg = serve(HashMap::from([
        ("/v2/hostile/app/manifests/1".to_owned(), Body::Json(m)),
        (cfg_path.clone(), Body::Endless(None)),
    ]));
    let (e, dir, store) = pull(&reg).await;
    let msg = e.to_string();
    assert!(msg.starts_with("image config of"), "{msg}");
    assert!(
        msg.contains(&format!("more than its descriptor's {} bytes", cfg.len())),
        "{msg}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(sent(&reg, &cfg_path) < 32 << 20);
    assert_nothing_left(dir.path(), &store, &[]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_layer_longer_than_its_descriptor_is_cut_and_not_kept() {
    let cfg = config_json();
    let (cd, ld) = (digest(&cfg), digest(b"layer"));
    let m = manifest((&cd, cfg.len() as u64), (&ld, 1000));
    let layer_path = format!("/v2/hostile/app/blobs/{ld}");
    let reg = serve(HashMap::from([
        ("/v2/hostile/app/manifests/1".to_owned(), Body::Json(m)),
        (format!("/v2/hostile/app/blobs/{cd}"), Body::Json(cfg)),
        (layer_path.clone(), Body::Endless(None)),
    ]));
    let (e, dir, store) = pull(&reg).await;
    let msg = e.to_string();
    assert!(msg.starts_with("layer of"), "{msg}");
    assert!(
        msg.contains(&format!(
            "{ld}: the registry sent more than its descriptor's 1000 bytes"
        )),
        "{msg}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(sent(&reg, &layer_path) < 32 << 20);
    // The config was whole and verified: kept for the next pull; no layer file, no temp file.
    assert_nothing_left(dir.path(), &store, &[&cd]);
}
