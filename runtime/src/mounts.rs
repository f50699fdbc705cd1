//! Host-side mounts the daemon owns: each container's overlayfs root and each pod's /dev/shm.
//! Blocking syscalls: callers run these on `spawn_blocking`.

use std::path::{Path, PathBuf};

use kinglet_cri::CriError;
use nix::mount::{mount, umount2, MntFlags, MsFlags};

/// Mount an overlayfs at `target` with `lower` (highest layer first), `upper` and `work`.
pub fn mount_overlay(
    lower: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
) -> Result<(), CriError> {
    for d in [upper, work, target] {
        std::fs::create_dir_all(d)
            .map_err(|e| CriError::internal(format!("create {}", d.display()), e))?;
    }
    let lowers: Vec<String> = lower.iter().map(|p| p.display().to_string()).collect();
    let data = if lowers.is_empty() {
        // overlayfs needs at least one lower layer: an image with no layers gets an empty one.
        let empty = work.with_file_name("empty-lower");
        std::fs::create_dir_all(&empty)
            .map_err(|e| CriError::internal(format!("create {}", empty.display()), e))?;
        format!(
            "lowerdir={},upperdir={},workdir={}",
            empty.display(),
            upper.display(),
            work.display()
        )
    } else {
        format!(
            "lowerdir={},upperdir={},workdir={}",
            lowers.join(":"),
            upper.display(),
            work.display()
        )
    };
    mount(
        Some("overlay"),
        target,
        Some("overlay"),
        MsFlags::empty(),
        Some(data.as_str()),
    )
    .map_err(|e| CriError::internal(format!("mount overlay at {}", target.display()), e))
}

/// Mount a read-only overlayfs of `lower` (highest layer first) at `target`, with no upper
/// layer. overlayfs wants two lower layers then: `empty` (created empty) makes up the count.
pub fn mount_overlay_readonly(
    lower: &[PathBuf],
    empty: &Path,
    target: &Path,
) -> Result<(), CriError> {
    for d in [empty, target] {
        std::fs::create_dir_all(d)
            .map_err(|e| CriError::internal(format!("create {}", d.display()), e))?;
    }
    let mut lowers: Vec<String> = lower.iter().map(|p| p.display().to_string()).collect();
    while lowers.len() < 2 {
        lowers.push(empty.display().to_string());
    }
    let data = format!("lowerdir={}", lowers.join(":"));
    mount(
        Some("overlay"),
        target,
        Some("overlay"),
        MsFlags::MS_RDONLY,
        Some(data.as_str()),
    )
    .map_err(|e| CriError::internal(format!("mount overlay at {}", target.display()), e))
}

/// Mount a tmpfs for a pod's /dev/shm.
pub fn mount_shm(target: &Path) -> Result<(), CriError> {
    std::fs::create_dir_all(target)
        .map_err(|e| CriError::internal(format!("create {}", target.display()), e))?;
    mount(
        Some("shm"),
        target,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("mode=1777,size=65536k"),
    )
    .map_err(|e| CriError::internal(format!("mount shm at {}", target.display()), e))
}

/// Whether something is mounted exactly at `path`.
pub fn is_mountpoint(path: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = path.to_string_lossy();
    info.lines()
        .any(|l| l.split(' ').nth(4).map(unescape_octal).as_deref() == Some(&*want))
}

fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Unmount everything at `path` (stacked mounts too); fine if nothing is mounted.
pub fn unmount_all(path: &Path) -> Result<(), CriError> {
    for _ in 0..16 {
        if !is_mountpoint(path) {
            return Ok(());
        }
        match umount2(path, MntFlags::MNT_DETACH) {
            Ok(()) => {}
            Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => return Ok(()),
            Err(e) => return Err(CriError::internal(format!("unmount {}", path.display()), e)),
        }
    }
    Ok(())
}

/// The mount points at or below any of `paths`, deepest first, from one read of
/// `/proc/self/mountinfo` (a stacked mount point is listed once per mount).
fn mounts_under(paths: &[&Path]) -> Vec<String> {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    mount_points_under(&info, paths)
}

/// The mount points of the mount table `info` at or below any of `paths`, deepest first.
fn mount_points_under(info: &str, paths: &[&Path]) -> Vec<String> {
    let prefixes: Vec<(String, String)> = paths
        .iter()
        .map(|p| {
            (
                p.to_string_lossy().into_owned(),
                format!("{}/", p.display()),
            )
        })
        .collect();
    let mut inside: Vec<String> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(unescape_octal))
        .filter(|m| prefixes.iter().any(|(p, dir)| m == p || m.starts_with(dir)))
        .collect();
    inside.sort_by_key(|m| std::cmp::Reverse(m.len()));
    inside
}

/// Unmount (detached) everything mounted at or below any of `paths`, deepest first, reading
/// the mount table once.
pub fn unmount_under(paths: &[&Path]) -> Result<(), CriError> {
    for m in mounts_under(paths) {
        match umount2(Path::new(&m), MntFlags::MNT_DETACH) {
            // Gone meanwhile, or one of a stack already taken down with its parent.
            Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => {}
            Err(e) => return Err(CriError::internal(format!("unmount {m}"), e)),
        }
    }
    Ok(())
}

/// Remove a directory tree, unmounting any mount found inside it first (deepest first).
pub fn remove_tree(path: &Path) -> Result<(), CriError> {
    remove_trees(&[path])
}

/// Remove directory trees, unmounting any mount found inside them first (deepest first); the
/// mount table is read once for all of them.
pub fn remove_trees(paths: &[&Path]) -> Result<(), CriError> {
    unmount_under(paths)?;
    for path in paths {
        match std::fs::remove_dir_all(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(CriError::internal(format!("remove {}", path.display()), e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_decoded() {
        assert_eq!(unescape_octal("/a\\040b"), "/a b");
        assert_eq!(unescape_octal("/plain"), "/plain");
    }

    /// What an exited container's release unmounts: its rootfs and image volumes, deepest
    /// first, and nothing of a container whose id merely starts the same.
    #[test]
    fn mounts_under_a_directory_deepest_first_and_only_there() {
        let info = "\
22 1 0:21 / / rw - ext4 /dev/vda rw
40 22 0:40 / /run/k/containers/ab/bundle/rootfs rw - overlay overlay rw,lowerdir=/l
41 40 0:41 / /run/k/containers/ab/bundle/rootfs/proc rw - proc proc rw
42 22 0:42 / /run/k/containers/ab/image-volumes/0 ro - overlay overlay ro,lowerdir=/l
43 22 0:43 / /run/k/containers/abc/bundle/rootfs rw - overlay overlay rw,lowerdir=/l
44 22 0:44 / /run/k/pods/p\\0401/shm rw - tmpfs shm rw
";
        let dir = Path::new("/run/k/containers/ab");
        assert_eq!(
            mount_points_under(info, &[dir]),
            [
                "/run/k/containers/ab/bundle/rootfs/proc",
                "/run/k/containers/ab/image-volumes/0",
                "/run/k/containers/ab/bundle/rootfs",
            ]
        );
        let shm = Path::new("/run/k/pods/p 1/shm");
        assert_eq!(mount_points_under(info, &[shm]), ["/run/k/pods/p 1/shm"]);
        assert!(mount_points_under(info, &[Path::new("/run/k/pods/p")]).is_empty());
    }
}
