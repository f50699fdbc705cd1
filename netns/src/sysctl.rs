//! Pod sysctls: which namespace a sysctl lives in (the kernel's facts, as runc knows them),
//! and its file under `/proc/sys`. Writing happens on the pinning thread ([`crate::pin`]),
//! inside the pod's fresh namespaces, so the host's values are never touched.

use std::path::PathBuf;

use crate::error::NetnsError;
use crate::ns::NsKind;

/// The namespace `key` (dot or path form) belongs to, or None when it is node-wide.
pub fn namespace_of(key: &str) -> Option<NsKind> {
    let key = dot_form(key);
    let ipc_prefixes = ["kernel.msg", "kernel.shm", "fs.mqueue."];
    if key == "kernel.sem" || ipc_prefixes.iter().any(|p| key.starts_with(p)) {
        Some(NsKind::Ipc)
    } else if key.starts_with("net.") {
        Some(NsKind::Net)
    } else if key == "kernel.hostname" || key == "kernel.domainname" {
        Some(NsKind::Uts)
    } else {
        None
    }
}

/// Dot form of a sysctl name: a name whose first separator is `/` swaps `/` and `.`.
fn dot_form(key: &str) -> String {
    swap_if(key, |first| first == '/')
}

fn swap_if(key: &str, cond: impl Fn(char) -> bool) -> String {
    match key.chars().find(|c| *c == '.' || *c == '/') {
        Some(first) if cond(first) => key
            .chars()
            .map(|c| match c {
                '.' => '/',
                '/' => '.',
                c => c,
            })
            .collect(),
        _ => key.to_owned(),
    }
}

/// The file of sysctl `key` under `proc_sys` (normally `/proc/sys`). Refuses names that are
/// empty, have empty, `.` or `..` components, or hold a NUL.
pub fn path_of(proc_sys: &std::path::Path, key: &str) -> Result<PathBuf, NetnsError> {
    let bad = |reason: &'static str| NetnsError::InvalidSysctl {
        key: key.to_owned(),
        reason,
    };
    let rel = swap_if(key, |first| first == '.');
    if rel.is_empty() || rel.contains('\0') {
        return Err(bad("is not a sysctl name"));
    }
    if rel
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(bad("is not a sysctl name"));
    }
    Ok(proc_sys.join(rel))
}

/// Check that every sysctl of a pod can be set in the namespaces `kinds` it gets: each must
/// belong to one of them (else it would change the node).
pub fn check(sysctls: &[(String, String)], kinds: &[NsKind]) -> Result<(), NetnsError> {
    for (key, _) in sysctls {
        path_of(std::path::Path::new("/proc/sys"), key)?;
        match namespace_of(key) {
            Some(k) if kinds.contains(&k) => {}
            Some(_) => {
                return Err(NetnsError::InvalidSysctl {
                    key: key.clone(),
                    reason: "belongs to a namespace the pod shares with the host",
                })
            }
            None => {
                return Err(NetnsError::InvalidSysctl {
                    key: key.clone(),
                    reason: "is not namespaced (it would change the host)",
                })
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn namespaces_of_sysctls() {
        assert_eq!(namespace_of("kernel.shm_rmid_forced"), Some(NsKind::Ipc));
        assert_eq!(namespace_of("kernel.sem"), Some(NsKind::Ipc));
        assert_eq!(namespace_of("fs/mqueue/msg_max"), Some(NsKind::Ipc));
        assert_eq!(
            namespace_of("net.ipv4.ip_local_port_range"),
            Some(NsKind::Net)
        );
        assert_eq!(namespace_of("kernel.domainname"), Some(NsKind::Uts));
        assert_eq!(namespace_of("vm.swappiness"), None);
        assert_eq!(namespace_of("kernel.pid_max"), None);
    }

    #[test]
    fn paths_swap_dots_and_refuse_escapes() {
        let root = Path::new("/proc/sys");
        assert_eq!(
            path_of(root, "net.ipv4.conf.eth0/100.rp_filter").unwrap(),
            Path::new("/proc/sys/net/ipv4/conf/eth0.100/rp_filter")
        );
        assert_eq!(
            path_of(root, "net/ipv4/conf/eth0.100/rp_filter").unwrap(),
            Path::new("/proc/sys/net/ipv4/conf/eth0.100/rp_filter")
        );
        for bad in ["", "net..x", "net/../../etc/passwd", "net.ipv4.", "/net"] {
            assert!(path_of(root, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn checks_name_the_key() {
        let s = |k: &str| vec![(k.to_owned(), "1".to_owned())];
        check(&s("net.ipv4.tcp_syncookies"), &[NsKind::Net]).unwrap();
        let e = check(&s("net.ipv4.tcp_syncookies"), &[NsKind::Ipc]).unwrap_err();
        assert!(e.to_string().contains("net.ipv4.tcp_syncookies"), "{e}");
        let e = check(&s("vm.swappiness"), &[NsKind::Net, NsKind::Ipc]).unwrap_err();
        assert!(e.to_string().contains("vm.swappiness"), "{e}");
    }
}
