//! Namespace kinds a pod can own and how to tell two namespaces apart.
//!
//! Invariants:
//! - A pin file for kind `k` inside a pod's pin directory is always named [`NsKind::file_name`]
//!   (`user`, `net`, `ipc`, `uts`, `pid`), so [`crate::unpin_namespaces`] can find every pin without a record.
//! - Two namespace files name the same namespace iff their [`NsId`] (device and inode of the nsfs
//!   inode, after following `/proc/*/ns/*` magic links) are equal.

use std::fmt;

use nix::sched::CloneFlags;

/// A kind of Linux namespace that Kinglet pins per pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NsKind {
    /// User namespace (`CLONE_NEWUSER`): only for pods with their own id mappings; it owns the
    /// pod's other namespaces.
    User,
    /// Network namespace (`CLONE_NEWNET`).
    Net,
    /// System V IPC / POSIX message queue namespace (`CLONE_NEWIPC`).
    Ipc,
    /// Hostname namespace (`CLONE_NEWUTS`).
    Uts,
    /// PID namespace (`CLONE_NEWPID`); needs a pod init process to stay usable.
    Pid,
}

impl NsKind {
    /// Every kind, in the order pins are created (and the reverse of the order they are removed).
    pub const ALL: [NsKind; 5] = [
        NsKind::User,
        NsKind::Net,
        NsKind::Ipc,
        NsKind::Uts,
        NsKind::Pid,
    ];

    /// The kernel's name for the namespace: the file name under `/proc/<pid>/ns/`, and the name
    /// of the pin file inside a pod's pin directory.
    pub const fn file_name(self) -> &'static str {
        match self {
            NsKind::User => "user",
            NsKind::Net => "net",
            NsKind::Ipc => "ipc",
            NsKind::Uts => "uts",
            NsKind::Pid => "pid",
        }
    }

    /// The `unshare(2)`/`clone(2)` flag that creates a namespace of this kind.
    pub const fn clone_flag(self) -> CloneFlags {
        match self {
            NsKind::User => CloneFlags::CLONE_NEWUSER,
            NsKind::Net => CloneFlags::CLONE_NEWNET,
            NsKind::Ipc => CloneFlags::CLONE_NEWIPC,
            NsKind::Uts => CloneFlags::CLONE_NEWUTS,
            NsKind::Pid => CloneFlags::CLONE_NEWPID,
        }
    }
}

impl fmt::Display for NsKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.file_name())
    }
}

/// Identity of a namespace: the (device, inode) pair of its nsfs inode, as `stat(2)` reports it
/// for `/proc/<pid>/ns/<kind>` or for a bind-mounted pin file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NsId {
    /// `st_dev` of the nsfs inode.
    pub dev: u64,
    /// `st_ino` of the nsfs inode (the number shown in `net:[4026531840]`).
    pub ino: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_match_proc_ns_entries() {
        let names: Vec<_> = NsKind::ALL.iter().map(|k| k.to_string()).collect();
        assert_eq!(names, ["user", "net", "ipc", "uts", "pid"]);
    }

    #[test]
    fn clone_flags_are_distinct() {
        let all = NsKind::ALL
            .iter()
            .fold(CloneFlags::empty(), |acc, k| acc | k.clone_flag());
        assert_eq!(all.bits().count_ones(), 5);
    }
}
