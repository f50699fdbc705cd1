//! The image store end to end on real files: import of layouts and oci-archives, tag rules,
//! resolution, removal with garbage collection, bad input, crash leftovers, concurrency.

mod common;

use std::fs;
use std::path::Path;
use std::sync::{Arc, Barrier};

use common::*;
use kinglet_image::{Digest, ImageError, ImageStore};
use serde_json::json;

const CONTAINERD_NAME: &str = "io.containerd.image.name";

fn store(root: &Path) -> ImageStore {
    ImageStore::open(root).expect("open store")
}

/// A layout with one image (two layers: gzip and zstd) tagged by `ref_name`.
fn one_image_layout(dir: &Path, label: &str, ref_name: Option<&str>) -> Written {
    let mut l = Layout::new(dir);
    let spec = ImageSpec::new(
        label,
        vec![
            Layer::gzip(simple_tar(&format!("{label}-base"))),
            Layer::zstd(simple_tar(&format!("{label}-top"))),
        ],
    );
    let w = l.image(&spec);
    let ann: Vec<(&str, &str)> = ref_name.map(|r| (REF_NAME, r)).into_iter().collect();
    l.add(w.descriptor(&ann));
    l.finish();
    w
}

fn blob_names(root: &Path) -> Vec<String> {
    names(&root.join("blobs/sha256"))
}

#[test]
fn imports_a_layout_directory_with_its_config_and_layers() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("store");
    let layout = t.path().join("layout");
    let mut l = Layout::new(&layout);
    let mut spec = ImageSpec::new(
        "a",
        vec![Layer::gzip(simple_tar("a1")), Layer::zstd(simple_tar("a2"))],
    );
    spec.config = json!({
        "Entrypoint": ["/bin/tool"],
        "Cmd": ["--flag"],
        "Env": ["PATH=/bin", "A=1"],
        "WorkingDir": "/work",
        "User": "1000:1000",
        "StopSignal": "SIGQUIT",
        "ExposedPorts": {"8080/tcp": {}, "53/udp": {}},
        "Volumes": {"/data": {}},
    });
    let w = l.image(&spec);
    l.add(w.descriptor(&[(REF_NAME, "kinglet.test/app:1.0")]));
    l.finish();

    let s = store(&root);
    let imported = s.import(&layout, None).expect("import");
    assert_eq!(imported.len(), 1);
    let r = &imported[0];
    assert_eq!(r.id, w.config_digest);
    assert_eq!(r.manifest_digest, w.manifest_digest);
    assert_eq!(r.repo_tags, ["kinglet.test/app:1.0"]);
    assert_eq!(
        r.repo_digests,
        [format!("kinglet.test/app@{}", w.manifest_digest)]
    );
    assert_eq!(r.size, w.config_size + w.layer_sizes.iter().sum::<u64>());
    assert_eq!(r.config.entrypoint, ["/bin/tool"]);
    assert_eq!(r.config.cmd, ["--flag"]);
    assert_eq!(r.config.env, ["PATH=/bin", "A=1"]);
    assert_eq!(r.config.working_dir, "/work");
    assert_eq!(r.config.user, "1000:1000");
    assert_eq!(r.config.stop_signal.as_deref(), Some("SIGQUIT"));
    assert_eq!(r.config.exposed_ports, ["53/udp", "8080/tcp"]);
    assert_eq!(r.config.volumes, ["/data"]);
    assert_eq!(
        r.config.labels.get("test.label").map(String::as_str),
        Some("a")
    );
    let layer_digests: Vec<_> = r.layers.iter().map(|l| l.digest.clone()).collect();
    assert_eq!(layer_digests, w.layer_digests);
    let diff_ids: Vec<_> = r.layers.iter().map(|l| l.diff_id.clone()).collect();
    assert_eq!(diff_ids, w.diff_ids);
    assert_eq!(r.layers[0].media_type, LAYER_GZIP);
    assert!(r.created_at > 0);

    // Every blob is in the content store; nothing is left in tmp/.
    let mut want: Vec<String> = [&w.manifest_digest, &w.config_digest]
        .into_iter()
        .chain(&w.layer_digests)
        .map(|d| d["sha256:".len()..].to_owned())
        .collect();
    want.sort();
    assert_eq!(blob_names(&root), want);
    assert!(names(&root.join("tmp")).is_empty());
    assert_eq!(s.list(), imported);

    // The records survive a restart.
    drop(s);
    let s = store(&root);
    assert_eq!(s.list(), imported);
}

#[test]
fn imports_an_oci_archive() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("store");
    let layout = t.path().join("layout");
    let w = one_image_layout(&layout, "arch", Some("kinglet.test/busybox:latest"));
    let archive = t.path().join("busybox.tar");
    Layout::new(&layout).archive(&archive);

    let s = store(&root);
    let imported = s.import(&archive, None).expect("import archive");
    assert_eq!(imported.len(), 1);
    assert_eq!(imported[0].id, w.config_digest);
    assert_eq!(imported[0].repo_tags, ["kinglet.test/busybox:latest"]);
    assert_eq!(blob_names(&root).len(), 4);
    let dirs = s.layer_dirs(&imported[0]).expect("unpack");
    assert_eq!(dirs.len(), 2);
    assert_eq!(fs::read(dirs[1].join("etc/arch-top")).unwrap(), b"arch-top");

    // Importing the same image again (from the directory, under another name) merges names.
    let again = s.import(&layout, Some("other:v2")).expect("re-import");
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].id, imported[0].id);
    assert_eq!(again[0].created_at, imported[0].created_at);
    assert_eq!(s.list().len(), 1);
    assert_eq!(s.list()[0].repo_tags, ["kinglet.test/busybox:latest"]);
}

#[test]
fn tag_rules_follow_annotations_name_and_stem() {
    let t = tempfile::tempdir().unwrap();
    let s = store(&t.path().join("store"));
    let import = |dir: &str, ann: &[(&str, &str)], name: Option<&str>, archive: bool| {
        let layout = t.path().join(dir);
        let mut l = Layout::new(&layout);
        let w = l.image(&ImageSpec::new(dir, vec![Layer::gzip(simple_tar(dir))]));
        l.add(w.descriptor(ann));
        l.finish();
        let path = if archive {
            let p = t.path().join(format!("{dir}.tar"));
            l.archive(&p);
            p
        } else {
            layout
        };
        s.import(&path, name).expect("import").remove(0).repo_tags
    };
    // Bare tag, no name: localhost/<stem>:<tag>, from the archive's file stem or directory name.
    assert_eq!(
        import("MyImage", &[(REF_NAME, "v1")], None, true),
        ["localhost/myimage:v1"]
    );
    assert_eq!(
        import("dir-img", &[(REF_NAME, "v1")], None, false),
        ["localhost/dir-img:v1"]
    );
    // Bare tag with a name: the name with that tag, unless the name has its own tag.
    assert_eq!(
        import("b", &[(REF_NAME, "v3")], Some("myapp"), true),
        ["docker.io/library/myapp:v3"]
    );
    assert_eq!(
        import("c", &[(REF_NAME, "v3")], Some("myapp:pinned"), true),
        ["docker.io/library/myapp:pinned"]
    );
    // Full references are normalized.
    assert_eq!(
        import("d", &[(REF_NAME, "busybox:1.36")], None, true),
        ["docker.io/library/busybox:1.36"]
    );
    assert_eq!(
        import("e", &[(REF_NAME, "team/tool")], None, true),
        ["docker.io/team/tool:latest"]
    );
    // containerd's annotation wins.
    assert_eq!(
        import(
            "f",
            &[(REF_NAME, "v9"), (CONTAINERD_NAME, "quay.io/x/y:z")],
            None,
            true
        ),
        ["quay.io/x/y:z"]
    );
    // No annotation: the name (tag latest), or no tag at all.
    assert_eq!(
        import("g", &[], Some("r.example:5000/app"), false),
        ["r.example:5000/app:latest"]
    );
    assert!(import("h", &[], None, false).is_empty());
    // An invalid name is an error naming it, and imports nothing.
    let before = s.list().len();
    let layout = t.path().join("bad");
    let mut l = Layout::new(&layout);
    let w = l.image(&ImageSpec::new("bad", vec![Layer::gzip(simple_tar("bad"))]));
    l.add(w.descriptor(&[]));
    l.finish();
    let err = s.import(&layout, Some("Not/Valid")).unwrap_err();
    assert!(err.to_string().contains("\"Not/Valid\""), "{err}");
    assert_eq!(s.list().len(), before);
}

#[test]
fn a_tag_moves_to_the_image_imported_last() {
    let t = tempfile::tempdir().unwrap();
    let s = store(&t.path().join("store"));
    let one = t.path().join("one");
    let two = t.path().join("two");
    one_image_layout(&one, "one", Some("app:1"));
    one_image_layout(&two, "two", Some("app:1"));
    let a = s.import(&one, None).unwrap().remove(0);
    let b = s.import(&two, None).unwrap().remove(0);
    assert_eq!(s.resolve("app:1").unwrap().id, b.id);
    let a_now = s.resolve(&a.id).unwrap();
    assert!(a_now.repo_tags.is_empty(), "{a_now:?}");
    // Its digest reference still works.
    assert_eq!(s.resolve(&a.repo_digests[0]).unwrap().id, a.id);
}

#[test]
fn resolves_by_name_id_prefix_and_digest() {
    let t = tempfile::tempdir().unwrap();
    let s = store(&t.path().join("store"));
    let layout = t.path().join("layout");
    let w = one_image_layout(&layout, "r", Some("docker.io/library/busybox:latest"));
    let r = s.import(&layout, None).unwrap().remove(0);
    let hex = w.hex();
    for good in [
        "busybox",
        "busybox:latest",
        "library/busybox",
        "docker.io/library/busybox:latest",
        &w.config_digest,
        hex,
        &hex[..12],
        &format!("sha256:{}", &hex[..12]),
        &format!("busybox@{}", w.manifest_digest),
        &format!("docker.io/library/busybox@{}", w.manifest_digest),
    ] {
        assert_eq!(s.resolve(good).map(|x| x.id), Some(r.id.clone()), "{good}");
    }
    let other = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
    for bad in [
        "busybox:other",
        "alpine",
        &hex[..11],
        &format!("busybox@{other}"),
        &format!("alpine@{}", w.manifest_digest),
        other,
        "Invalid Reference",
    ] {
        assert!(s.resolve(bad).is_none(), "{bad}");
    }
}

#[test]
fn remove_collects_blobs_and_layers_only_when_unused() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("store");
    let s = store(&root);
    let shared = Layer::gzip(simple_tar("shared"));
    let mut l = Layout::new(&t.path().join("layout"));
    let wa = l.image(&ImageSpec::new(
        "a",
        vec![shared.clone(), Layer::gzip(simple_tar("only-a"))],
    ));
    let wb = l.image(&ImageSpec::new(
        "b",
        vec![shared.clone(), Layer::zstd(simple_tar("only-b"))],
    ));
    l.add(wa.descriptor(&[(REF_NAME, "img/a:1")]));
    l.add(wb.descriptor(&[(REF_NAME, "img/b:1")]));
    l.finish();
    let imported = s.import(&l.dir, None).unwrap();
    assert_eq!(imported.len(), 2);
    let a = s.resolve("img/a:1").unwrap();
    let b = s.resolve("img/b:1").unwrap();
    let dirs_a = s.layer_dirs(&a).unwrap();
    let dirs_b = s.layer_dirs(&b).unwrap();
    assert_eq!(
        dirs_a[0], dirs_b[0],
        "the shared layer is unpacked once, shared"
    );
    assert_eq!(s.stats().layers_unpacked, 3);
    assert_eq!(names(&root.join("layers")).len(), 3);
    assert_eq!(blob_names(&root).len(), 7); // 2 manifests, 2 configs, 3 layers

    // Removing A keeps what B uses.
    let removed = s.remove("img/a:1").unwrap().expect("removed");
    assert_eq!(removed.id, a.id);
    assert!(s.resolve("img/a:1").is_none());
    assert!(s.resolve(&a.id).is_none());
    let blobs = blob_names(&root);
    assert_eq!(blobs.len(), 4);
    for d in [
        &wb.manifest_digest,
        &wb.config_digest,
        &wb.layer_digests[0],
        &wb.layer_digests[1],
    ] {
        assert!(blobs.contains(&d["sha256:".len()..].to_owned()), "{d} kept");
    }
    assert!(dirs_b[0].is_dir() && dirs_b[1].is_dir());
    assert!(!dirs_a[1].exists(), "A's own layer is gone");
    assert_eq!(s.layer_dirs(&b).unwrap(), dirs_b);

    // Removing B empties the store; the records on disk agree after a restart.
    assert!(s.remove(&b.id).unwrap().is_some());
    assert!(blob_names(&root).is_empty());
    assert!(names(&root.join("layers")).is_empty());
    // The layer trees are deleted in the background, after remove returned.
    s.wait_for_deletions();
    assert!(names(&root.join("tmp")).is_empty());
    assert!(s.remove("img/b:1").unwrap().is_none());
    drop(s);
    assert!(store(&root).list().is_empty());
}

#[test]
fn a_corrupt_blob_fails_the_import_and_leaves_nothing() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("store");
    let s = store(&root);
    let layout = t.path().join("layout");
    let w = one_image_layout(&layout, "bad", Some("bad:1"));
    // Flip a byte of the second layer (same size, different content).
    let p = Layout::new(&layout).blob_path(&w.layer_digests[1]);
    let mut bytes = fs::read(&p).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    fs::write(&p, &bytes).unwrap();

    let err = s.import(&layout, None).unwrap_err();
    match &err {
        ImageError::DigestMismatch {
            digest, location, ..
        } => {
            assert_eq!(digest, &w.layer_digests[1]);
            assert!(
                location.contains(&layout.display().to_string()),
                "{location}"
            );
        }
        other => panic!("want DigestMismatch, got {other:?}"),
    }
    assert!(err.to_string().contains(&w.layer_digests[1]), "{err}");
    assert!(s.list().is_empty());
    assert!(blob_names(&root).is_empty(), "no stray blobs");
    assert!(names(&root.join("tmp")).is_empty());

    // Same in an archive, where blobs are checked against their names.
    let archive = t.path().join("bad.tar");
    Layout::new(&layout).archive(&archive);
    let err = s.import(&archive, None).unwrap_err();
    assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err:?}");
    assert!(blob_names(&root).is_empty());
}

#[test]
fn a_truncated_archive_fails_the_import_and_leaves_nothing() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("store");
    let s = store(&root);
    let layout = t.path().join("layout");
    one_image_layout(&layout, "trunc", Some("trunc:1"));
    let archive = t.path().join("full.tar");
    Layout::new(&layout).archive(&archive);
    let full = fs::read(&archive).unwrap();
    for cut in [full.len() / 3, full.len() / 2, full.len() - 2048, 700] {
        let p = t.path().join(format!("cut-{cut}.tar"));
        fs::write(&p, &full[..cut]).unwrap();
        let err = s.import(&p, None).expect_err("truncated archive must fail");
        assert!(
            matches!(
                err,
                ImageError::Archive { .. }
                    | ImageError::MissingBlob { .. }
                    | ImageError::NotAnImage { .. }
            ),
            "cut at {cut}: {err:?}"
        );
        assert!(s.list().is_empty());
        assert!(blob_names(&root).is_empty(), "cut at {cut}: no stray blobs");
        assert!(names(&root.join("tmp")).is_empty());
    }
}

#[test]
fn bad_layouts_give_clear_errors() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("store");
    let s = store(&root);

    // A missing blob.
    let missing = t.path().join("missing");
    let w = one_image_layout(&missing, "m", Some("m:1"));
    fs::remove_file(Layout::new(&missing).blob_path(&w.layer_digests[0])).unwrap();
    let err = s.import(&missing, None).unwrap_err();
    assert!(
        matches!(&err, ImageError::MissingBlob { digest, .. } if *digest == w.layer_digests[0]),
        "{err:?}"
    );

    // Malformed index.json and manifest.
    let bad_index = t.path().join("bad-index");
    one_image_layout(&bad_index, "i", None);
    fs::write(
        bad_index.join("index.json"),
        b"{\"schemaVersion\": 2, \"manifests\": [",
    )
    .unwrap();
    let err = s.import(&bad_index, None).unwrap_err();
    assert!(
        matches!(
            err,
            ImageError::MalformedJson {
                what: "index.json",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("index.json"), "{err}");

    let bad_manifest = t.path().join("bad-manifest");
    let mut l = Layout::new(&bad_manifest);
    let (d, size) = l.blob(b"{\"schemaVersion\": 2, \"config\": 7}");
    l.add(json!({"mediaType": OCI_MANIFEST, "digest": d, "size": size}));
    l.finish();
    let err = s.import(&bad_manifest, None).unwrap_err();
    assert!(
        matches!(&err, ImageError::MalformedJson { what: "image manifest", location, .. } if location.contains(&d[7..])),
        "{err:?}"
    );

    // A descriptor size that does not match the blob.
    let bad_size = t.path().join("bad-size");
    let w = one_image_layout(&bad_size, "s", None);
    let mut l = Layout::new(&bad_size);
    let mut desc = w.descriptor(&[]);
    desc["size"] = json!(w.manifest_size + 1);
    l.add(desc);
    l.finish();
    let err = s.import(&bad_size, None).unwrap_err();
    assert!(matches!(err, ImageError::SizeMismatch { .. }), "{err:?}");

    // A manifest only for another platform.
    let foreign = t.path().join("foreign");
    let mut l = Layout::new(&foreign);
    let mut spec = ImageSpec::new("f", vec![Layer::gzip(simple_tar("f"))]);
    spec.arch = other_arch().into();
    let w = l.image(&spec);
    l.add(w.descriptor(&[(REF_NAME, "f:1")]));
    l.finish();
    let err = s.import(&foreign, None).unwrap_err();
    assert!(
        matches!(err, ImageError::NoMatchingPlatform { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains(other_arch()), "{err}");

    // Not an image at all.
    let empty = t.path().join("empty");
    fs::create_dir(&empty).unwrap();
    assert!(matches!(
        s.import(&empty, None),
        Err(ImageError::NotAnImage { .. })
    ));
    let junk = t.path().join("junk.tar");
    fs::write(&junk, vec![7u8; 5000]).unwrap();
    assert!(s.import(&junk, None).is_err());

    assert!(s.list().is_empty());
    assert!(blob_names(&root).is_empty());
    assert!(names(&root.join("tmp")).is_empty());
}

#[test]
fn nested_indexes_select_this_platform() {
    let t = tempfile::tempdir().unwrap();
    let s = store(&t.path().join("store"));
    let layout = t.path().join("multi");
    let mut l = Layout::new(&layout);
    let host = l.image(&ImageSpec::new(
        "host",
        vec![Layer::gzip(simple_tar("host"))],
    ));
    let mut foreign_spec = ImageSpec::new("foreign", vec![Layer::gzip(simple_tar("foreign"))]);
    foreign_spec.arch = other_arch().into();
    let foreign = l.image(&foreign_spec);
    let mut fd = foreign.descriptor(&[]);
    fd["platform"] = json!({"os": "linux", "architecture": other_arch()});
    let mut hd = host.descriptor(&[]);
    hd["platform"] = json!({"os": "linux", "architecture": host_arch()});
    let inner = l.index_blob(vec![fd, hd]);
    let outer = l.index_blob(vec![inner.clone()]);
    let mut top = outer.clone();
    top["annotations"] = json!({REF_NAME: "1"});
    l.add(top);
    l.finish();

    let r = s.import(&layout, None).unwrap().remove(0);
    assert_eq!(r.id, host.config_digest);
    assert_eq!(r.repo_tags, ["localhost/multi:1"]);
    // The indexes resolve to the image too.
    for idx in [&inner, &outer] {
        let d = idx["digest"].as_str().unwrap();
        assert_eq!(s.resolve(&format!("localhost/multi@{d}")).unwrap().id, r.id);
    }

    // An index with no manifest for this platform is an error.
    let only_foreign = t.path().join("only-foreign");
    let mut l = Layout::new(&only_foreign);
    let foreign = l.image(&foreign_spec);
    let mut fd = foreign.descriptor(&[]);
    fd["platform"] = json!({"os": "linux", "architecture": other_arch()});
    let idx = l.index_blob(vec![fd]);
    l.add(idx);
    l.finish();
    let err = s.import(&only_foreign, None).unwrap_err();
    assert!(
        matches!(err, ImageError::NoMatchingPlatform { .. }),
        "{err:?}"
    );
}

#[test]
fn ingest_and_commit_for_registry_pulls() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("store");
    let s = store(&root);
    let layout = t.path().join("layout");
    let w = one_image_layout(&layout, "pull", None);
    let l = Layout::new(&layout);
    let mut all = vec![w.config_digest.clone(), w.manifest_digest.clone()];
    all.extend(w.layer_digests.iter().cloned());
    for d in &all {
        let digest: Digest = d.parse().unwrap();
        assert!(!s.has_blob(&digest));
        let bytes = fs::read(l.blob_path(d)).unwrap();
        assert_eq!(
            s.ingest_blob(&digest, &bytes[..]).unwrap(),
            bytes.len() as u64
        );
        assert!(s.has_blob(&digest));
        // Idempotent.
        assert_eq!(
            s.ingest_blob(&digest, &b"ignored"[..]).unwrap(),
            bytes.len() as u64
        );
    }
    // A stream that does not match its digest is refused and not stored.
    let wrong: Digest = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
        .parse()
        .unwrap();
    let err = s.ingest_blob(&wrong, &b"something else"[..]).unwrap_err();
    assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err:?}");
    assert!(!s.has_blob(&wrong));
    assert!(names(&root.join("tmp")).is_empty());

    let md: Digest = w.manifest_digest.parse().unwrap();
    let r = s
        .commit_image(&md, &["registry.example/team/pull:v1".into()])
        .unwrap();
    assert_eq!(r.id, w.config_digest);
    assert_eq!(r.repo_tags, ["registry.example/team/pull:v1"]);
    assert_eq!(
        r.repo_digests,
        [format!("registry.example/team/pull@{}", w.manifest_digest)]
    );
    assert_eq!(s.resolve("registry.example/team/pull:v1").unwrap().id, r.id);
    assert_eq!(s.layer_dirs(&r).unwrap().len(), 2);

    // Committing a manifest whose blobs are not all there fails.
    let other = t.path().join("other");
    let w2 = one_image_layout(&other, "other", None);
    let l2 = Layout::new(&other);
    for d in [&w2.manifest_digest, &w2.config_digest] {
        let bytes = fs::read(l2.blob_path(d)).unwrap();
        s.ingest_blob(&d.parse().unwrap(), &bytes[..]).unwrap();
    }
    let err = s
        .commit_image(&w2.manifest_digest.parse().unwrap(), &[])
        .unwrap_err();
    assert!(matches!(err, ImageError::MissingBlob { .. }), "{err:?}");
    // A name pinning an unrelated digest is refused.
    let err = s
        .commit_image(&md, &[format!("x/y@{}", wrong)])
        .unwrap_err();
    assert!(
        matches!(err, ImageError::InvalidReference { .. }),
        "{err:?}"
    );
}

#[test]
fn open_cleans_leftovers_and_locks_the_store() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("store");
    let layout = t.path().join("layout");
    let w = one_image_layout(&layout, "keep", Some("keep:1"));
    {
        let s = store(&root);
        let r = s.import(&layout, None).unwrap().remove(0);
        s.layer_dirs(&r).unwrap();
        let err = ImageStore::open(&root)
            .err()
            .expect("second open must fail");
        assert!(matches!(err, ImageError::Locked { .. }), "{err:?}");
    }
    // Leftovers of a crash: temp files, a half-unpacked layer, an orphan blob and layer, a
    // metadata temp file.
    fs::write(root.join("tmp/blob-123"), b"partial").unwrap();
    fs::create_dir_all(root.join("tmp/unpack-abc/usr/bin")).unwrap();
    let orphan = "a".repeat(64);
    fs::write(root.join("blobs/sha256").join(&orphan), b"orphan").unwrap();
    fs::create_dir_all(root.join("layers").join(&orphan).join("etc")).unwrap();
    fs::write(root.join(".tmp-meta"), b"{").unwrap();

    let s = store(&root);
    assert!(names(&root.join("tmp")).is_empty());
    assert!(!root.join(".tmp-meta").exists());
    assert!(!root.join("blobs/sha256").join(&orphan).exists());
    assert!(!root.join("layers").join(&orphan).exists());
    let r = s.resolve("keep:1").expect("image kept");
    assert_eq!(r.id, w.config_digest);
    assert_eq!(blob_names(&root).len(), 4);
    assert_eq!(s.layer_dirs(&r).unwrap().len(), 2);
    assert_eq!(
        s.stats().layers_unpacked,
        0,
        "already unpacked before the restart"
    );

    // Usage counts what is there.
    let u = s.usage().unwrap();
    assert!(u.used_bytes > 0 && u.inodes_used > 10, "{u:?}");
    assert!(root.starts_with(&u.mountpoint), "{u:?}");
}

#[test]
fn corrupt_metadata_is_an_error_not_an_empty_store() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("store");
    let layout = t.path().join("layout");
    one_image_layout(&layout, "meta", Some("meta:1"));
    store(&root).import(&layout, None).unwrap();
    // Neither slot of the records' file intact (a damaged disk, not a crash: a crash tears
    // one slot at most).
    let len = fs::metadata(root.join("images.slots")).unwrap().len();
    fs::write(root.join("images.slots"), vec![0xa5; len as usize]).unwrap();
    let err = ImageStore::open(&root).err().expect("damaged metadata");
    assert!(format!("{:?}", err).contains("no intact copy"), "{err:?}");
    assert_eq!(blob_names(&root).len(), 4);
    // The older whole-file form, corrupt.
    fs::remove_file(root.join("images.slots")).unwrap();
    fs::write(root.join("images.json"), b"{ not json").unwrap();
    let err = ImageStore::open(&root).err().expect("corrupt metadata");
    assert!(matches!(err, ImageError::CorruptMetadata { .. }), "{err:?}");
    // Content was not collected.
    assert_eq!(blob_names(&root).len(), 4);
}

#[test]
fn records_move_from_images_json_and_an_unchanged_pull_writes_nothing() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("store");
    let layout = t.path().join("layout");
    let w = one_image_layout(&layout, "old", Some("old:1"));
    let before = {
        let s = store(&root);
        s.import(&layout, None).unwrap();
        s.list()
    };
    // A store written before the slot file: its records in images.json.
    let images: Vec<serde_json::Value> = before
        .iter()
        .map(|r| {
            let mut v = serde_json::to_value(r).unwrap();
            v["index_digests"] = json!([]);
            v
        })
        .collect();
    fs::remove_file(root.join("images.slots")).unwrap();
    fs::write(
        root.join("images.json"),
        serde_json::to_vec(&json!({"version": 1, "images": images})).unwrap(),
    )
    .unwrap();
    let s = store(&root);
    assert_eq!(s.list(), before, "read from images.json");
    assert_eq!(blob_names(&root).len(), 4, "nothing collected");
    // The first change writes the slot file and drops images.json.
    let md: Digest = w.manifest_digest.parse().unwrap();
    s.commit_image(&md, &["new:2".into()]).unwrap();
    assert!(!root.join("images.json").exists());
    let slots = fs::read(root.join("images.slots")).unwrap();
    // Committing the same names again changes nothing, and writes nothing.
    let again = s.commit_image(&md, &["new:2".into()]).unwrap();
    assert_eq!(
        again.repo_tags,
        ["docker.io/library/old:1", "docker.io/library/new:2"]
    );
    assert_eq!(fs::read(root.join("images.slots")).unwrap(), slots);
    drop(s);
    let s = store(&root);
    assert_eq!(s.resolve("new:2").unwrap().id, w.config_digest);
    assert_eq!(s.list().len(), 1);
}

#[test]
fn concurrent_layer_dirs_unpack_each_layer_once() {
    let t = tempfile::tempdir().unwrap();
    let s = Arc::new(store(&t.path().join("store")));
    let mut big = TarBuilder::new();
    big.dir("data/", 0o755);
    for i in 0..3000 {
        big.file(
            &format!("data/f{i}"),
            format!("content {i}\n").repeat(20).as_bytes(),
            0o644,
        );
    }
    let layout = t.path().join("layout");
    let mut l = Layout::new(&layout);
    let w = l.image(&ImageSpec::new(
        "big",
        vec![Layer::gzip(big.finish()), Layer::zstd(simple_tar("small"))],
    ));
    l.add(w.descriptor(&[(REF_NAME, "big:1")]));
    l.finish();
    let r = s.import(&layout, None).unwrap().remove(0);

    let barrier = Arc::new(Barrier::new(4));
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let (s, r, barrier) = (s.clone(), r.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let dirs = s.layer_dirs(&r).expect("layer_dirs");
                // Whoever returns sees complete layers.
                assert_eq!(names(&dirs[0].join("data")).len(), 3000);
                dirs
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(results.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(
        s.stats().layers_unpacked,
        2,
        "each layer unpacked exactly once"
    );
    assert!(names(&t.path().join("store/tmp")).is_empty());
}
