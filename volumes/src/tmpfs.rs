//! The tmpfs under a secret volume: secret bytes live in memory only, never on a disk, not even
//! under the daemon's persistent root.

use std::path::Path;

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::VolumeError;

/// Mount a tmpfs of at most `size_bytes` at `target` (created if missing), mode 0755,
/// nosuid/nodev/noexec. A tmpfs already mounted there is left as it is (its mode included:
/// fsGroup ownership may have changed it).
pub fn mount_tmpfs(target: &Path, size_bytes: u64) -> Result<(), VolumeError> {
    std::fs::create_dir_all(target).map_err(VolumeError::io("create", target))?;
    if is_tmpfs(target) {
        return Ok(());
    }
    mount_new(target, size_bytes, 0o755)
}

/// [`mount_tmpfs`] with the given mode of its root directory; a tmpfs already mounted there
/// keeps its content and is given that mode (how an older install is tightened).
pub fn mount_tmpfs_mode(target: &Path, size_bytes: u64, mode: u32) -> Result<(), VolumeError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(target).map_err(VolumeError::io("create", target))?;
    if !is_tmpfs(target) {
        mount_new(target, size_bytes, mode)?;
    }
    std::fs::set_permissions(target, std::fs::Permissions::from_mode(mode))
        .map_err(VolumeError::io("chmod", target))
}

fn mount_new(target: &Path, size_bytes: u64, mode: u32) -> Result<(), VolumeError> {
    let opts = format!("size={size_bytes},mode={mode:o}");
    mount(
        Some("tmpfs"),
        target,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some(opts.as_str()),
    )
    .map_err(|source| VolumeError::Mount {
        op: "mount tmpfs at",
        path: target.to_owned(),
        source,
    })
}

/// Unmount the tmpfs at `target` (its content is gone with it); fine if none is mounted.
pub fn unmount_tmpfs(target: &Path) -> Result<(), VolumeError> {
    if !is_tmpfs(target) {
        return Ok(());
    }
    umount2(target, MntFlags::MNT_DETACH).map_err(|source| VolumeError::Mount {
        op: "unmount",
        path: target.to_owned(),
        source,
    })
}

/// Whether `path` itself is the root of a tmpfs mount.
pub fn is_tmpfs(path: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = path.to_string_lossy();
    info.lines().any(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        let sep = f.iter().position(|x| *x == "-");
        f.get(4) == Some(&&*want) && sep.and_then(|i| f.get(i + 1)) == Some(&"tmpfs")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::atomic::{AtomicWriter, FileProjection};

    #[test]
    fn secrets_land_on_tmpfs_and_vanish_with_it() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test mounts a tmpfs and needs root (CI runs as root)"
        );
        let d = tempfile::tempdir().unwrap();
        let vol = d.path().join("secret-vol");
        mount_tmpfs(&vol, 1 << 20).unwrap();
        assert!(is_tmpfs(&vol));
        mount_tmpfs(&vol, 1 << 20).unwrap(); // idempotent
        let mut p = std::collections::BTreeMap::new();
        p.insert(
            "password".to_string(),
            FileProjection {
                data: b"hunter2".to_vec(),
                mode: 0o400,
            },
        );
        AtomicWriter::new(&vol).write(&p).unwrap();
        assert_eq!(std::fs::read(vol.join("password")).unwrap(), b"hunter2");
        unmount_tmpfs(&vol).unwrap();
        assert!(!is_tmpfs(&vol));
        assert!(
            !vol.join("password").exists(),
            "nothing reached the disk below"
        );
        unmount_tmpfs(&vol).unwrap();
    }

    #[test]
    fn a_private_tmpfs_is_0700_and_an_open_one_is_tightened() {
        use std::os::unix::fs::PermissionsExt;
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test mounts a tmpfs and needs root (CI runs as root)"
        );
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        let d = tempfile::tempdir().unwrap();
        let (fresh, old) = (d.path().join("fresh"), d.path().join("old"));
        mount_tmpfs_mode(&fresh, 1 << 20, 0o700).unwrap();
        assert_eq!(mode(&fresh), 0o700);
        mount_tmpfs(&old, 1 << 20).unwrap();
        std::fs::write(old.join("kept"), "x").unwrap();
        assert_eq!(mode(&old), 0o755);
        mount_tmpfs_mode(&old, 1 << 20, 0o700).unwrap();
        assert_eq!(mode(&old), 0o700);
        assert!(old.join("kept").exists(), "the mounted tmpfs was kept");
        for v in [&fresh, &old] {
            unmount_tmpfs(v).unwrap();
        }
    }
}
