//! What the daemon refuses at start: inputs that a user other than root could change, although
//! they decide what runs as root. The manifests directory (its Pods run as root, its Secrets
//! are read) and the config file (paths, network, limits) must belong to root and be writable
//! by no one else, nor replaceable through a parent directory; otherwise the daemon does not
//! start, and says which path and how to fix it. (`kinglet check` reports the same.)

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::check::{security, Level};
use crate::config::Config;
use crate::DaemonError;

/// Refuse a manifests directory or config file others can write.
pub fn refuse_untrusted_inputs(
    cfg: &Config,
    config_file: Option<&Path>,
) -> Result<(), DaemonError> {
    let m = security::manifests_dir(&cfg.manifests);
    if m.level == Level::Fail {
        return Err(DaemonError::Config {
            path: cfg.manifests.clone(),
            reason: format!(
                "refusing the manifests directory: {}; fix: {}",
                m.detail,
                m.fix.unwrap_or_default()
            ),
        });
    }
    if let Some(p) = config_file {
        if let Some(why) = writable_by_others(p) {
            return Err(DaemonError::Config {
                path: p.to_owned(),
                reason: format!(
                    "refusing the config file: {why}; fix: chown root:root {0} && chmod 0600 {0}",
                    p.display()
                ),
            });
        }
    }
    Ok(())
}

/// Why `path` (a file) could be changed by a user other than root: its owner or mode, or a
/// parent directory someone else can write (without the sticky bit) or owns.
pub fn writable_by_others(path: &Path) -> Option<String> {
    let m = std::fs::metadata(path).ok()?;
    if m.uid() != 0 {
        return Some(format!("{} is owned by uid {}", path.display(), m.uid()));
    }
    let mode = m.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Some(format!(
            "{} is writable by group or others ({mode:04o})",
            path.display()
        ));
    }
    let abs = std::path::absolute(path).ok()?;
    for a in abs.ancestors().skip(1) {
        let Ok(m) = std::fs::metadata(a) else {
            continue;
        };
        let sticky = m.mode() & 0o1000 != 0;
        if m.uid() != 0 || (m.mode() & 0o022 != 0 && !sticky) {
            return Some(format!(
                "its directory {} ({:04o}, owner uid {}) lets others replace it",
                a.display(),
                m.mode() & 0o7777,
                m.uid()
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn is_root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    #[test]
    fn a_config_file_others_can_write_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let p = dir.path().join("kinglet.toml");
        std::fs::write(&p, "").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o666)).unwrap();
        let why = writable_by_others(&p).expect("refused");
        if is_root() {
            assert!(why.contains("writable by group or others (0666)"), "{why}");
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
            assert_eq!(writable_by_others(&p), None);
            // A group-writable parent directory (no sticky bit) lets others replace it.
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o770)).unwrap();
            let why = writable_by_others(&p).expect("refused");
            assert!(why.contains("lets others replace it"), "{why}");
        } else {
            assert!(why.contains("owned by uid"), "{why}");
        }
    }

    #[test]
    fn the_daemon_refuses_a_world_writable_manifests_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let manifests = dir.path().join("manifests");
        std::fs::create_dir(&manifests).unwrap();
        std::fs::set_permissions(&manifests, std::fs::Permissions::from_mode(0o777)).unwrap();
        let cfg = Config {
            manifests: manifests.clone(),
            ..Config::default()
        };
        let e = refuse_untrusted_inputs(&cfg, None).unwrap_err().to_string();
        assert!(e.contains("refusing the manifests directory"), "{e}");
        assert!(e.contains(&manifests.display().to_string()), "{e}");
        if is_root() {
            std::fs::set_permissions(&manifests, std::fs::Permissions::from_mode(0o700)).unwrap();
            refuse_untrusted_inputs(&cfg, None).expect("a root-only directory is accepted");
        }
    }
}
