//! Layer unpacking as root: hostile tars must not write outside the layer directory,
//! whiteouts become overlayfs whiteouts (checked through a real overlay mount), and file
//! metadata is kept. Every test checks a sentinel directory beside the store is untouched.

mod common;

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use common::*;
use kinglet_image::{ImageError, ImageStore};
use tar::EntryType;

struct Case {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    sentinel: PathBuf,
    layer_digests: Vec<String>,
    result: Result<Vec<PathBuf>, ImageError>,
}

impl Case {
    fn dirs(&self) -> &[PathBuf] {
        match &self.result {
            Ok(d) => d,
            Err(e) => panic!("unpack failed: {e}"),
        }
    }

    fn err(&self) -> &ImageError {
        match &self.result {
            Ok(d) => panic!("unpack succeeded but must fail: {d:?}"),
            Err(e) => e,
        }
    }

    /// The sentinel beside the store holds only its marker, unchanged and not hard-linked.
    fn assert_sentinel_untouched(&self) {
        assert_eq!(names(&self.sentinel), ["marker"], "sentinel dir changed");
        let marker = self.sentinel.join("marker");
        assert_eq!(fs::read(&marker).unwrap(), b"marker");
        assert_eq!(
            fs::metadata(&marker).unwrap().nlink(),
            1,
            "marker was hard-linked"
        );
    }

    /// A failed unpack leaves no layer and no temp files.
    fn assert_nothing_unpacked(&self) {
        assert!(
            names(&self.root.join("layers")).is_empty(),
            "no layer published"
        );
        assert!(names(&self.root.join("tmp")).is_empty(), "temp dir cleaned");
    }

    /// The error names the layer digest and the entry path.
    fn assert_unsafe_entry(&self, entry: &str) {
        let err = self.err();
        let text = err.to_string();
        assert!(
            matches!(err, ImageError::UnsafeEntry { .. }),
            "want UnsafeEntry for {entry}, got {err:?}"
        );
        assert!(
            text.contains(entry),
            "error {text:?} names the entry {entry:?}"
        );
        assert!(
            self.layer_digests.iter().any(|d| text.contains(d.as_str())),
            "error {text:?} names the layer"
        );
    }
}

/// Import an image with the layers `build` makes (given the sentinel's path) and unpack it.
fn case(build: impl FnOnce(&Path) -> Vec<Layer>) -> Case {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let sentinel = tmp.path().join("sentinel");
    fs::create_dir(&sentinel).unwrap();
    fs::write(sentinel.join("marker"), b"marker").unwrap();
    let layers = build(&sentinel);
    let layout = tmp.path().join("layout");
    let mut l = Layout::new(&layout);
    let w = l.image(&ImageSpec::new("case", layers));
    l.add(w.descriptor(&[(REF_NAME, "case:1")]));
    l.finish();
    let root = tmp.path().join("store");
    let store = ImageStore::open(&root).unwrap();
    let record = store.import(&layout, None).expect("import").remove(0);
    let result = store.layer_dirs(&record);
    Case {
        root,
        sentinel,
        layer_digests: w.layer_digests,
        result,
        _tmp: tmp,
    }
}

fn one(tar: TarBuilder) -> Vec<Layer> {
    vec![Layer::gzip(tar.finish())]
}

/// `../` enough times to reach `/` from anywhere, then the sentinel.
fn climb_to(sentinel: &Path, rest: &str) -> String {
    let rel = sentinel.strip_prefix("/").unwrap().display();
    format!("{}{rel}/{rest}", "../".repeat(16))
}

#[test]
fn parent_dir_components_are_refused() {
    let c = case(|s| {
        let mut t = TarBuilder::new();
        t.file("ok", b"fine", 0o644)
            .file(&climb_to(s, "evil"), b"evil", 0o644);
        one(t)
    });
    c.assert_unsafe_entry("../");
    c.assert_sentinel_untouched();
    c.assert_nothing_unpacked();

    let c = case(|_| {
        let mut t = TarBuilder::new();
        t.file("../evil", b"evil", 0o644);
        one(t)
    });
    c.assert_unsafe_entry("../evil");
    assert!(!c.root.join("tmp/evil").exists() && !c.root.join("evil").exists());
    c.assert_nothing_unpacked();
}

#[test]
fn absolute_paths_are_made_relative_to_the_layer() {
    let c = case(|s| {
        let mut t = TarBuilder::new();
        t.file(&format!("{}/pwned", s.display()), b"inside", 0o644)
            .file(&format!("{}/abs/path", s.display()), b"abs", 0o644);
        one(t)
    });
    let layer = &c.dirs()[0];
    let rel = c.sentinel.strip_prefix("/").unwrap();
    assert_eq!(fs::read(layer.join(rel).join("pwned")).unwrap(), b"inside");
    assert_eq!(fs::read(layer.join(rel).join("abs/path")).unwrap(), b"abs");
    c.assert_sentinel_untouched();
}

#[test]
fn symlink_to_root_is_never_followed() {
    let c = case(|s| {
        let rel = s.strip_prefix("/").unwrap().display().to_string();
        let mut t = TarBuilder::new();
        t.symlink("link", "/")
            .file(&format!("link/{rel}/pwned"), b"x", 0o644);
        one(t)
    });
    c.assert_unsafe_entry("link/");
    c.assert_sentinel_untouched();
    c.assert_nothing_unpacked();

    // The classic `link -> /` then `link/etc/passwd`, aimed at an etc/passwd under the
    // sentinel so that a regression damages the sentinel, never the host's /etc/passwd.
    let c = case(|s| {
        fs::create_dir(s.join("etc")).unwrap();
        fs::write(s.join("etc/passwd"), b"root:x:0:0::/root:/bin/sh\n").unwrap();
        let rel = s.strip_prefix("/").unwrap().display().to_string();
        let mut t = TarBuilder::new();
        t.symlink("link", "/").file(
            &format!("link/{rel}/etc/passwd"),
            b"root::0:0::/:/bin/sh\n",
            0o644,
        );
        one(t)
    });
    c.assert_unsafe_entry("/etc/passwd");
    assert_eq!(
        fs::read(c.sentinel.join("etc/passwd")).unwrap(),
        b"root:x:0:0::/root:/bin/sh\n"
    );
    fs::remove_dir_all(c.sentinel.join("etc")).unwrap();
    c.assert_sentinel_untouched();
}

#[test]
fn symlinks_in_parent_directories_are_refused() {
    // A relative symlink climbing out, used as a parent.
    let c = case(|s| {
        let mut t = TarBuilder::new();
        t.symlink("up", &climb_to(s, ""))
            .file("up/pwned", b"x", 0o644);
        one(t)
    });
    c.assert_unsafe_entry("up/pwned");
    c.assert_sentinel_untouched();

    // A symlink deeper in the tree, and a directory entry through it.
    let c = case(|s| {
        let mut t = TarBuilder::new();
        t.dir("a/", 0o755)
            .symlink("a/b", &s.display().to_string())
            .dir("a/b/c/", 0o755)
            .file("a/b/c/pwned", b"x", 0o644);
        one(t)
    });
    c.assert_unsafe_entry("a/b/c/");
    c.assert_sentinel_untouched();

    // Through a symlink created by a lower layer: each layer unpacks on its own, so the upper
    // layer's `d/` is a fresh directory and never the lower layer's symlink.
    let c = case(|s| {
        let mut lower = TarBuilder::new();
        lower.symlink("d", &s.display().to_string());
        let mut upper = TarBuilder::new();
        upper.file("d/pwned", b"x", 0o644);
        vec![Layer::gzip(lower.finish()), Layer::gzip(upper.finish())]
    });
    let dirs = c.dirs();
    assert!(fs::symlink_metadata(dirs[0].join("d"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(fs::read(dirs[1].join("d/pwned")).unwrap(), b"x");
    c.assert_sentinel_untouched();
}

#[test]
fn entries_replace_symlinks_instead_of_writing_through_them() {
    let c = case(|s| {
        let target = s.join("target").display().to_string();
        let marker = s.join("marker").display().to_string();
        let mut t = TarBuilder::new();
        t.symlink("file", &target)
            .file("file", b"replaced", 0o644)
            .symlink("dir", &s.display().to_string())
            .dir("dir/", 0o755)
            .file("dir/inside", b"in", 0o644)
            .symlink("m", &marker)
            .file("m", b"overwritten?", 0o644);
        one(t)
    });
    let layer = &c.dirs()[0];
    assert!(fs::symlink_metadata(layer.join("file")).unwrap().is_file());
    assert_eq!(fs::read(layer.join("file")).unwrap(), b"replaced");
    assert!(fs::symlink_metadata(layer.join("dir")).unwrap().is_dir());
    assert_eq!(fs::read(layer.join("dir/inside")).unwrap(), b"in");
    assert_eq!(fs::read(layer.join("m")).unwrap(), b"overwritten?");
    c.assert_sentinel_untouched();
}

#[test]
fn symlink_targets_are_kept_verbatim() {
    let c = case(|_| {
        let mut t = TarBuilder::new();
        t.symlink("abs", "/etc/passwd")
            .symlink("rel", "../../../../outside")
            .symlink("dot", ".");
        one(t)
    });
    let layer = &c.dirs()[0];
    assert_eq!(
        fs::read_link(layer.join("abs")).unwrap(),
        Path::new("/etc/passwd")
    );
    assert_eq!(
        fs::read_link(layer.join("rel")).unwrap(),
        Path::new("../../../../outside")
    );
    assert_eq!(fs::read_link(layer.join("dot")).unwrap(), Path::new("."));
}

#[test]
fn hard_links_must_stay_inside_the_layer() {
    let c = case(|_| {
        let mut t = TarBuilder::new();
        t.file("f", b"x", 0o644).hardlink("hl", "../../outside");
        one(t)
    });
    c.assert_unsafe_entry("hl");
    c.assert_nothing_unpacked();

    // An absolute target is looked up inside the layer, where it does not exist.
    let c = case(|s| {
        let marker = s.join("marker").display().to_string();
        let mut t = TarBuilder::new();
        t.hardlink("hl", &marker);
        one(t)
    });
    c.assert_unsafe_entry("hl");
    c.assert_sentinel_untouched();

    // A target path through a symlink is refused.
    let c = case(|s| {
        let mut t = TarBuilder::new();
        t.symlink("s", &s.display().to_string())
            .hardlink("hl", "s/marker");
        one(t)
    });
    c.assert_unsafe_entry("hl");
    c.assert_sentinel_untouched();

    // A hard link to a symlink links the symlink itself (not what it points to).
    let c = case(|s| {
        let marker = s.join("marker").display().to_string();
        let mut t = TarBuilder::new();
        t.symlink("s", &marker).hardlink("hl", "s");
        one(t)
    });
    let layer = &c.dirs()[0];
    assert!(fs::symlink_metadata(layer.join("hl"))
        .unwrap()
        .file_type()
        .is_symlink());
    c.assert_sentinel_untouched();

    // Ordinary hard links (busybox applets) share the inode.
    let c = case(|_| {
        let mut t = TarBuilder::new();
        t.dir("bin/", 0o755)
            .file("bin/busybox", b"\x7fELF", 0o755)
            .hardlink("bin/sh", "bin/busybox")
            .hardlink("bin/ls", "./bin/busybox");
        one(t)
    });
    let layer = &c.dirs()[0];
    let ino = |p: &str| fs::metadata(layer.join(p)).unwrap().ino();
    assert_eq!(ino("bin/sh"), ino("bin/busybox"));
    assert_eq!(ino("bin/ls"), ino("bin/busybox"));
    assert_eq!(fs::metadata(layer.join("bin/busybox")).unwrap().nlink(), 3);
}

#[test]
fn device_nodes_and_fifos_are_skipped() {
    let c = case(|_| {
        let mut t = TarBuilder::new();
        t.dir("dev/", 0o755)
            .device(EntryType::Char, "dev/null", 1, 3)
            .device(EntryType::Char, "dev/mem", 1, 1)
            .device(EntryType::Block, "dev/sda", 8, 0)
            .device(EntryType::Fifo, "dev/fifo", 0, 0)
            .file("dev/regular", b"ok", 0o644);
        one(t)
    });
    let layer = &c.dirs()[0];
    assert_eq!(names(&layer.join("dev")), ["regular"]);
}

#[test]
fn whiteouts_outside_the_layer_are_errors() {
    for path in ["../.wh.x", ".wh...", "a/.wh..", "a/.wh."] {
        let c = case(|_| {
            let mut t = TarBuilder::new();
            t.dir("a/", 0o755).file(path, b"", 0o644);
            one(t)
        });
        c.assert_unsafe_entry(path);
        c.assert_nothing_unpacked();
        assert!(!c.root.join("tmp/x").exists());
    }
}

/// Unmounts on drop, so a failing assertion does not leave the mount behind.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

#[test]
fn whiteouts_and_opaque_dirs_work_in_an_overlay_mount() {
    let c = case(|_| {
        let mut base = TarBuilder::new();
        base.dir("keep/", 0o755)
            .file("keep/a", b"a", 0o644)
            .dir("gone/", 0o755)
            .file("gone/file", b"g", 0o644)
            .file("top", b"t", 0o644)
            .dir("dir/", 0o755)
            .file("dir/x", b"x", 0o644)
            .file("dir/y", b"y", 0o644)
            .dir("opq/", 0o755)
            .file("opq/old", b"o", 0o644)
            .dir("notopq/", 0o755)
            .file("notopq/old", b"o", 0o644);
        let mut upper = TarBuilder::new();
        upper
            .file(".wh.gone", b"", 0o644)
            .file(".wh.top", b"", 0o644)
            .dir("dir/", 0o755)
            .file("dir/.wh.x", b"", 0o644)
            .dir("opq/", 0o755)
            .file("opq/.wh..wh..opq", b"", 0o644)
            .file("opq/new", b"n", 0o644)
            // A layer cannot mark a directory opaque (or redirect it) by xattr itself.
            .xattr("trusted.overlay.opaque", b"y")
            .dir("notopq/", 0o755)
            .device(EntryType::Char, "native", 0, 0);
        vec![Layer::gzip(base.finish()), Layer::zstd(upper.finish())]
    });
    let dirs = c.dirs();
    let up = &dirs[1];
    // Raw form: 0:0 character devices, no `.wh.` names left.
    for w in ["gone", "top", "dir/x", "native"] {
        let m = fs::symlink_metadata(up.join(w)).unwrap();
        assert!(m.file_type().is_char_device(), "{w} is a whiteout");
        assert_eq!(m.rdev(), 0, "{w} is 0:0");
    }
    for d in [up.clone(), up.join("dir"), up.join("opq")] {
        assert!(
            names(&d).iter().all(|n| !n.starts_with(".wh.")),
            "{d:?}: {:?}",
            names(&d)
        );
    }

    // Through overlayfs (top layer first in lowerdir).
    let merged = c.root.parent().unwrap().join("merged");
    fs::create_dir(&merged).unwrap();
    let opts = format!("lowerdir={}:{}", up.display(), dirs[0].display());
    nix::mount::mount(
        Some("overlay"),
        &merged,
        Some("overlay"),
        nix::mount::MsFlags::MS_RDONLY,
        Some(opts.as_str()),
    )
    .expect("mount overlay");
    let _m = Mount(merged.clone());
    assert_eq!(names(&merged), ["dir", "keep", "notopq", "opq"]);
    assert_eq!(names(&merged.join("dir")), ["y"]);
    assert_eq!(
        names(&merged.join("opq")),
        ["new"],
        "opaque dir hides the lower content"
    );
    assert_eq!(
        names(&merged.join("notopq")),
        ["old"],
        "xattr from the tar was dropped"
    );
    assert_eq!(fs::read(merged.join("keep/a")).unwrap(), b"a");
}

#[test]
fn modes_owners_and_times_are_kept() {
    let c = case(|_| {
        let mut t = TarBuilder::new();
        t.dir_owned("./", 0o755, 0, 0, MTIME)
            .dir("bin/", 0o755)
            .file("bin/su", b"su", 0o4755)
            .file("bin/sg", b"sg", 0o2711)
            .dir_owned("home/", 0o755, 0, 0, MTIME)
            .dir_owned("home/u/", 0o700, 1000, 1000, 1_600_000_000)
            .file_owned("home/u/f", b"f", 0o640, 1000, 1001, 1_500_000_000)
            .dir_owned("ro/", 0o555, 0, 0, 1_400_000_000)
            .file("ro/inside", b"i", 0o444)
            .dir("tmp/", 0o1777)
            .xattr("user.kinglet.test", b"1")
            .file("with-xattr", b"x", 0o600)
            .file("implicit/parent/file", b"p", 0o644);
        one(t)
    });
    let layer = &c.dirs()[0];
    let meta = |p: &str| fs::symlink_metadata(layer.join(p)).unwrap();
    assert_eq!(meta("bin/su").permissions().mode() & 0o7777, 0o4755);
    assert_eq!(meta("bin/sg").permissions().mode() & 0o7777, 0o2711);
    assert_eq!(meta("tmp").permissions().mode() & 0o7777, 0o1777);
    let u = meta("home/u");
    assert_eq!(
        (u.uid(), u.gid(), u.mode() & 0o7777, u.mtime()),
        (1000, 1000, 0o700, 1_600_000_000)
    );
    let f = meta("home/u/f");
    assert_eq!(
        (f.uid(), f.gid(), f.mode() & 0o7777, f.mtime()),
        (1000, 1001, 0o640, 1_500_000_000)
    );
    let ro = meta("ro");
    assert_eq!(
        (ro.mode() & 0o7777, ro.mtime()),
        (0o555, 1_400_000_000),
        "set after its children"
    );
    assert_eq!(fs::read(layer.join("ro/inside")).unwrap(), b"i");
    assert_eq!(meta(".").mtime(), MTIME as i64);
    assert_eq!(meta(".").mode() & 0o7777, 0o755);
    assert_eq!(meta("implicit/parent").mode() & 0o7777, 0o755);
    assert_eq!(fs::read(layer.join("with-xattr")).unwrap(), b"x");
}

#[test]
fn compression_is_taken_from_media_type_or_magic_bytes() {
    let c = case(|_| {
        vec![
            Layer::plain(simple_tar("plain")),
            Layer::gzip(simple_tar("gz")),
            Layer::zstd(simple_tar("zst")),
            Layer::gzip(simple_tar("sniffed-gz")).with_media_type("application/octet-stream"),
            Layer::zstd(simple_tar("sniffed-zst")).with_media_type("application/octet-stream"),
            Layer::plain(simple_tar("sniffed-tar")).with_media_type("application/octet-stream"),
            Layer::gzip(simple_tar("docker"))
                .with_media_type("application/vnd.docker.image.rootfs.diff.tar.gzip"),
        ]
    });
    let dirs = c.dirs();
    for (d, tag) in dirs.iter().zip([
        "plain",
        "gz",
        "zst",
        "sniffed-gz",
        "sniffed-zst",
        "sniffed-tar",
        "docker",
    ]) {
        assert_eq!(fs::read(d.join("etc").join(tag)).unwrap(), tag.as_bytes());
    }
}

#[test]
fn a_wrong_diff_id_or_truncated_layer_is_refused() {
    let c = case(|_| {
        let mut l = Layer::gzip(simple_tar("x"));
        l.diff_id = sha256(b"something else");
        vec![l]
    });
    let err = c.err();
    assert!(matches!(err, ImageError::DiffIdMismatch { .. }), "{err:?}");
    assert!(err.to_string().contains(&c.layer_digests[0]), "{err}");
    c.assert_nothing_unpacked();

    // A layer blob cut short: its (blob) digest matches what was cut, its diff_id does not.
    let c = case(|_| {
        let mut big = TarBuilder::new();
        for i in 0..50 {
            big.file(&format!("f{i}"), &vec![b'a' + (i % 26) as u8; 4000], 0o644);
        }
        let mut l = Layer::gzip(big.finish());
        l.blob.truncate(l.blob.len() / 2);
        vec![l]
    });
    let err = c.err();
    assert!(
        matches!(
            err,
            ImageError::LayerArchive { .. } | ImageError::DiffIdMismatch { .. }
        ),
        "{err:?}"
    );
    c.assert_nothing_unpacked();
}

/// Property: layers made of random hostile entries (symlinks and hard links aimed at the
/// sentinel and then used as parents or overwritten, whiteouts, devices, and in some rounds
/// `..` and other refused forms) either unpack inside the layer or fail cleanly; the sentinel
/// is never touched. Every escape route generated points into the sentinel, so a regression
/// damages only the test's own directory.
#[test]
fn random_hostile_layers_never_escape() {
    require_root();
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let (mut ok, mut refused) = (0, 0);
    for round in 0..150 {
        let picks: Vec<u64> = (0..200).map(|_| next()).collect();
        let with_refused_forms = round % 3 == 0;
        let c = case(|s| {
            let abs = s.display().to_string();
            let marker = s.join("marker").display().to_string();
            let climb = climb_to(s, "");
            let mut parts = vec![
                "a",
                "b",
                "c",
                "link",
                "d",
                ".wh.a",
                ".wh..wh..opq",
                &abs[1..],
            ];
            if with_refused_forms {
                parts.extend(["..", ".wh..", "."]);
            }
            let targets = [
                abs.as_str(),
                marker.as_str(),
                climb.as_str(),
                "a",
                "b",
                "a/b",
                "link/marker",
                "../a",
            ];
            let mut picks = picks.into_iter();
            let mut pick = move |n: usize| (picks.next().unwrap_or(0) % n as u64) as usize;
            let mut t = TarBuilder::new();
            for _ in 0..(2 + pick(6)) {
                let depth = 1 + pick(3);
                let mut path = (0..depth)
                    .map(|_| parts[pick(parts.len())])
                    .collect::<Vec<_>>()
                    .join("/");
                path.truncate(90);
                let target = targets[pick(targets.len())];
                match pick(8) {
                    0 | 1 => t.file(&path, b"data", 0o644),
                    2 => t.dir(&path, 0o755),
                    3 | 4 => t.symlink(&path, target),
                    5 => t.hardlink(&path, target),
                    6 => t.device(EntryType::Char, &path, 0, 0),
                    _ => t.device(EntryType::Fifo, &path, 0, 0),
                };
            }
            one(t)
        });
        c.assert_sentinel_untouched();
        match &c.result {
            Ok(dirs) => {
                ok += 1;
                assert!(dirs[0].is_dir(), "round {round}");
            }
            Err(e) => {
                refused += 1;
                assert!(
                    matches!(e, ImageError::UnsafeEntry { .. }),
                    "round {round}: {e:?}"
                );
                c.assert_nothing_unpacked();
            }
        }
    }
    assert!(
        ok >= 20 && refused >= 20,
        "both outcomes exercised ({ok} ok, {refused} refused)"
    );
}
