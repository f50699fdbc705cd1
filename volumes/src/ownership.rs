//! A pod's `fsGroup` applied to a volume, as the kubelet's SetVolumeOwnership does it: every
//! file and directory gets the group, group read (read-only volumes) or read/write bits, and
//! directories also the group search bit and setgid (so new files inherit the group).
//! Symlinks get the group but no mode change (a chmod would follow them). Existing bits are
//! only ever added to, never removed.
//!
//! With `OnRootMismatch`, nothing is walked when the volume's root already has the group and
//! the bits.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use crate::VolumeError;

const RW_MASK: u32 = 0o660;
const RO_MASK: u32 = 0o440;
const EXEC_MASK: u32 = 0o110;
const SETGID: u32 = 0o2000;

/// `fsGroupChangePolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChangePolicy {
    /// Walk the whole volume every time (Kubernetes' default).
    #[default]
    Always,
    /// Walk only when the volume root's group or bits differ.
    OnRootMismatch,
}

impl ChangePolicy {
    /// The Kubernetes value (`Always`, `OnRootMismatch`); anything else is the default.
    pub fn from_k8s(s: Option<&str>) -> ChangePolicy {
        match s {
            Some("OnRootMismatch") => ChangePolicy::OnRootMismatch,
            _ => ChangePolicy::Always,
        }
    }
}

/// The mode a file of a volume gets: `mode` plus the fsGroup bits.
pub fn owned_mode(mode: u32, is_dir: bool, readonly: bool) -> u32 {
    let mut m = mode | if readonly { RO_MASK } else { RW_MASK };
    if is_dir {
        m |= SETGID | EXEC_MASK;
    }
    m
}

/// Whether the root of a volume lacks the group or the bits `fs_group` asks for.
pub fn requires_change(root: &Path, fs_group: u32, readonly: bool) -> bool {
    let Ok(meta) = fs::metadata(root) else {
        return true;
    };
    if meta.gid() != fs_group || !meta.is_dir() {
        return true;
    }
    let perm = meta.permissions().mode() & 0o7777;
    let want = owned_mode(0, true, readonly);
    perm & want != want
}

/// Give the volume at `root` to group `fs_group` (see the module doc). A chown or chmod that
/// fails is logged and the walk goes on, as the kubelet does; failing to read a directory is
/// an error.
pub fn set_volume_ownership(
    root: &Path,
    fs_group: u32,
    readonly: bool,
    policy: ChangePolicy,
) -> Result<(), VolumeError> {
    if policy == ChangePolicy::OnRootMismatch && !requires_change(root, fs_group, readonly) {
        tracing::debug!(volume = %root.display(), fs_group, "volume ownership already set");
        return Ok(());
    }
    walk(root, fs_group, readonly)
}

fn walk(path: &Path, fs_group: u32, readonly: bool) -> Result<(), VolumeError> {
    let meta = fs::symlink_metadata(path).map_err(VolumeError::io("stat", path))?;
    if let Err(e) = std::os::unix::fs::lchown(path, None, Some(fs_group)) {
        tracing::warn!(path = %path.display(), fs_group, err = %e, "volume ownership: chown failed");
    }
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    let mode = meta.permissions().mode() & 0o7777;
    let want = owned_mode(mode, meta.is_dir(), readonly);
    if want != mode {
        if let Err(e) = fs::set_permissions(path, fs::Permissions::from_mode(want)) {
            tracing::warn!(path = %path.display(), err = %e, "volume ownership: chmod failed");
        }
    }
    if meta.is_dir() {
        for e in fs::read_dir(path).map_err(VolumeError::io("list", path))? {
            let e = e.map_err(VolumeError::io("list", path))?;
            walk(&e.path(), fs_group, readonly)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_gain_group_bits_and_dirs_setgid() {
        assert_eq!(owned_mode(0o644, false, true), 0o644);
        assert_eq!(owned_mode(0o400, false, true), 0o440);
        assert_eq!(owned_mode(0o600, false, false), 0o660);
        assert_eq!(owned_mode(0o755, true, false), 0o2775);
        assert_eq!(owned_mode(0o700, true, true), 0o2750);
        assert_eq!(
            ChangePolicy::from_k8s(Some("OnRootMismatch")),
            ChangePolicy::OnRootMismatch
        );
        assert_eq!(ChangePolicy::from_k8s(None), ChangePolicy::Always);
    }

    #[test]
    fn a_volume_is_given_to_the_group_and_symlinks_keep_their_target_mode() {
        // Changing a file's group to one we are not in needs root (CI is root).
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test changes file groups and needs root (CI runs as root)"
        );
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("vol");
        fs::create_dir_all(root.join("sub")).unwrap();
        fs::write(root.join("sub/f"), b"x").unwrap();
        fs::set_permissions(root.join("sub/f"), fs::Permissions::from_mode(0o600)).unwrap();
        fs::write(root.join("secret"), b"x").unwrap();
        fs::set_permissions(root.join("secret"), fs::Permissions::from_mode(0o400)).unwrap();
        std::os::unix::fs::symlink("secret", root.join("link")).unwrap();
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).unwrap();
        assert!(requires_change(&root, 4321, false));

        set_volume_ownership(&root, 4321, false, ChangePolicy::Always).unwrap();
        let mode = |p: &str| {
            fs::symlink_metadata(root.join(p))
                .unwrap()
                .permissions()
                .mode()
                & 0o7777
        };
        let gid = |p: &str| fs::symlink_metadata(root.join(p)).unwrap().gid();
        for p in ["", "sub", "sub/f", "secret", "link"] {
            assert_eq!(gid(p), 4321, "{p}");
        }
        assert_eq!(mode(""), 0o2775);
        assert_eq!(mode("sub/f"), 0o660);
        // The link's target got the rw bits once (as a file), not through the link.
        assert_eq!(mode("secret"), 0o660);
        assert!(!requires_change(&root, 4321, false));

        // OnRootMismatch: the root matches, so a file changed since stays as it is.
        fs::set_permissions(root.join("sub/f"), fs::Permissions::from_mode(0o600)).unwrap();
        set_volume_ownership(&root, 4321, false, ChangePolicy::OnRootMismatch).unwrap();
        assert_eq!(mode("sub/f"), 0o600);
        set_volume_ownership(&root, 4321, false, ChangePolicy::Always).unwrap();
        assert_eq!(mode("sub/f"), 0o660);
        assert!(requires_change(&root, 9, false));
    }
}
