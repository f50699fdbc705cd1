//! `socket-group`: the CRI socket (0660 root) handed to one group, on purpose. Whoever can
//! call the socket can run a privileged container, so the group is root-equivalent; without
//! the setting only root can use it. (With socket activation, systemd's `SocketGroup=` does
//! this instead.)

use std::path::Path;

use crate::DaemonError;

/// Give `socket` to `group` (by name or number); nothing when `None`.
pub fn apply(socket: &Path, group: Option<&str>) -> Result<(), DaemonError> {
    let Some(group) = group else {
        return Ok(());
    };
    let gid = match group.parse::<u32>() {
        Ok(n) => nix::unistd::Gid::from_raw(n),
        Err(_) => nix::unistd::Group::from_name(group)
            .ok()
            .flatten()
            .map(|g| g.gid)
            .ok_or_else(|| DaemonError::Config {
                path: socket.to_owned(),
                reason: format!(
                    "socket-group {group:?} does not exist; create it (groupadd {group}) or \
                     remove the setting"
                ),
            })?,
    };
    nix::unistd::chown(socket, None, Some(gid)).map_err(|e| DaemonError::Config {
        path: socket.to_owned(),
        reason: format!("cannot give the socket to group {group}: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    #[test]
    fn the_socket_goes_to_the_group_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.sock");
        std::fs::write(&p, "").unwrap();
        apply(&p, None).unwrap();
        if nix::unistd::geteuid().is_root() {
            apply(&p, Some("4242")).unwrap();
            assert_eq!(std::fs::metadata(&p).unwrap().gid(), 4242);
        }
        let e = apply(&p, Some("no-such-group-kinglet"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("does not exist") && e.contains("groupadd"),
            "{e}"
        );
    }
}
