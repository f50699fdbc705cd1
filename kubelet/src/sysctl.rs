//! Pod sysctls at admission, by the kubelet's rules: a pod's `spec.securityContext.sysctls`
//! must each be in the safe set or match an `allowed-unsafe-sysctls` pattern, and a sysctl of
//! the network (IPC) namespace is refused when the pod uses the host's network (IPC). A refused
//! pod never gets a sandbox; it is reported Failed with reason `SysctlForbidden`.
//!
//! The runtime applies the admitted sysctls inside the pod's namespaces when it creates the
//! sandbox (`runtime::sandbox`); this module only decides.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::Pod;

/// The kubelet's admission failure reason for sysctls.
pub const FORBIDDEN_REASON: &str = "SysctlForbidden";

/// The kubelet's safe sysctls: namespaced, and without effect on other pods of the node.
/// (All need kernels older than any Kinglet runs on.)
pub const SAFE_SYSCTLS: &[&str] = &[
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
    "net.ipv4.tcp_rmem",
    "net.ipv4.tcp_wmem",
];

/// The Linux namespace a sysctl belongs to, as Kubernetes knows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SysctlNs {
    Ipc,
    Net,
}

impl SysctlNs {
    fn name(self) -> &'static str {
        match self {
            SysctlNs::Ipc => "ipc",
            SysctlNs::Net => "net",
        }
    }
}

/// The namespace of `name` (dot form), or None when it is not known to be namespaced.
pub fn namespaced_by(name: &str) -> Option<SysctlNs> {
    if name == "kernel.sem" {
        return Some(SysctlNs::Ipc);
    }
    if ["kernel.shm", "kernel.msg", "fs.mqueue."]
        .iter()
        .any(|p| name.starts_with(p))
    {
        return Some(SysctlNs::Ipc);
    }
    name.starts_with("net.").then_some(SysctlNs::Net)
}

/// A sysctl name in dot form. A name whose first separator is `/` is in path form
/// (`net/ipv4/conf/eth0.100/forwarding`): its `/` and `.` swap, so dots inside a component
/// (an interface name) become `/` (`net.ipv4.conf.eth0/100.forwarding`).
pub fn dot_form(name: &str) -> String {
    match name.find(['.', '/']) {
        Some(i) if name.as_bytes()[i] == b'/' => name
            .chars()
            .map(|c| match c {
                '/' => '.',
                '.' => '/',
                c => c,
            })
            .collect(),
        _ => name.to_owned(),
    }
}

/// Whether `s` is a valid sysctl name or pattern (Kubernetes' syntax: segments separated by
/// `.` or `/`, `*` only at the very end).
fn valid_pattern(s: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let inner = |b: u8| alnum(b) || b == b'-' || b == b'_';
    let segment = |seg: &[u8]| {
        !seg.is_empty()
            && alnum(seg[0])
            && alnum(seg[seg.len() - 1])
            && seg.iter().all(|b| inner(*b))
    };
    if s.is_empty() || s.len() > 253 {
        return false;
    }
    let segs: Vec<&[u8]> = s.as_bytes().split(|b| *b == b'.' || *b == b'/').collect();
    let (last, rest) = segs.split_last().expect("split yields one piece at least");
    let last_ok = match last.strip_suffix(b"*") {
        Some(body) => body.is_empty() || (alnum(body[0]) && body.iter().all(|b| inner(*b))),
        None => segment(last),
    };
    last_ok && rest.iter().all(|seg| segment(seg))
}

/// The sysctls a pod may set: the safe set plus the node's allowed unsafe patterns, each
/// remembered with its namespace.
#[derive(Debug, Clone)]
pub struct SysctlAllowlist {
    names: HashMap<String, SysctlNs>,
    prefixes: Vec<(String, SysctlNs)>,
}

impl SysctlAllowlist {
    /// The safe sysctls plus `unsafe_patterns` (names, or prefixes ending in `*`). A pattern
    /// that is not known to be namespaced is refused (it would change the node).
    pub fn new(unsafe_patterns: &[String]) -> Result<SysctlAllowlist, String> {
        let mut w = SysctlAllowlist {
            names: HashMap::new(),
            prefixes: Vec::new(),
        };
        let safe = SAFE_SYSCTLS.iter().map(|s| s.to_string());
        for p in safe.chain(unsafe_patterns.iter().cloned()) {
            if !valid_pattern(&p) {
                return Err(format!(
                    "sysctl {p:?} must be a sysctl name, or a prefix of one followed by '*'"
                ));
            }
            let p = dot_form(&p);
            if let Some(prefix) = p.strip_suffix('*') {
                let ns = namespaced_by(prefix)
                    .ok_or_else(|| format!("the sysctls {p:?} are not known to be namespaced"))?;
                w.prefixes.push((prefix.to_owned(), ns));
            } else {
                let ns = namespaced_by(&p)
                    .ok_or_else(|| format!("the sysctl {p:?} is not known to be namespaced"))?;
                w.names.insert(p, ns);
            }
        }
        Ok(w)
    }

    /// Check one sysctl of a pod (the kubelet's message shapes).
    pub fn validate(&self, name: &str, host_net: bool, host_ipc: bool) -> Result<(), String> {
        let name = dot_form(name);
        let ns = self.names.get(&name).copied().or_else(|| {
            self.prefixes
                .iter()
                .find(|(p, _)| name.starts_with(p.as_str()))
                .map(|(_, ns)| *ns)
        });
        match ns {
            None => Err(format!("{name:?} not allowlisted")),
            Some(ns @ SysctlNs::Ipc) if host_ipc => Err(format!(
                "{name:?} not allowed with host {} enabled",
                ns.name()
            )),
            Some(ns @ SysctlNs::Net) if host_net => Err(format!(
                "{name:?} not allowed with host {} enabled",
                ns.name()
            )),
            Some(_) => Ok(()),
        }
    }

    /// Admit `pod`, or give the message of its rejection (`forbidden sysctl: ...`).
    pub fn admit(&self, pod: &Pod) -> Result<(), String> {
        let Some(spec) = pod.spec.as_ref() else {
            return Ok(());
        };
        let sysctls = spec
            .security_context
            .as_ref()
            .and_then(|s| s.sysctls.as_ref());
        for s in sysctls.into_iter().flatten() {
            self.validate(
                &s.name,
                spec.host_network.unwrap_or(false),
                spec.host_ipc.unwrap_or(false),
            )
            .map_err(|e| format!("forbidden sysctl: {e}"))?;
        }
        Ok(())
    }
}

/// A pod the node refused at admission: phase Failed with this reason and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub reason: &'static str,
    pub message: String,
}

/// One pod's admission verdict, kept with the spec hash it was made for (a changed spec is
/// admitted afresh). In memory, like the kubelet's; it goes with the pod's worker.
#[derive(Debug, Clone, Default)]
pub struct Verdict(Option<(String, Rejection)>);

impl Verdict {
    /// Admit `pod` (spec hash `hash`) by `sysctls`, or record and return why not.
    pub fn admit(
        &mut self,
        sysctls: &SysctlAllowlist,
        pod: &Pod,
        hash: &str,
    ) -> Result<(), Rejection> {
        if let Some(r) = self.rejection(hash) {
            return Err(r.clone());
        }
        self.0 = None;
        sysctls.admit(pod).map_err(|message| {
            let r = Rejection {
                reason: FORBIDDEN_REASON,
                message,
            };
            self.0 = Some((hash.to_owned(), r.clone()));
            r
        })
    }

    /// Why the pod with spec hash `hash` was refused, if it was.
    pub fn rejection(&self, hash: &str) -> Option<&Rejection> {
        self.0.as_ref().filter(|(h, _)| h == hash).map(|(_, r)| r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(sysctls: &[(&str, &str)], host_net: bool, host_ipc: bool) -> Pod {
        let list: Vec<String> = sysctls
            .iter()
            .map(|(n, v)| format!("{{name: {n:?}, value: {v:?}}}"))
            .collect();
        let y = format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: p}}\nspec:\n  hostNetwork: {host_net}\n  hostIPC: {host_ipc}\n  securityContext: {{sysctls: [{}]}}\n  containers: [{{name: c, image: b}}]\n",
            list.join(", ")
        );
        match kinglet_manifest::parse("t", &y).unwrap().remove(0) {
            kinglet_manifest::Object::Pod(p) => *p,
            _ => panic!(),
        }
    }

    #[test]
    fn safe_sysctls_are_admitted_unsafe_ones_only_when_allowed() {
        let safe = SysctlAllowlist::new(&[]).unwrap();
        assert_eq!(
            safe.admit(&pod(
                &[
                    ("kernel.shm_rmid_forced", "1"),
                    ("net.ipv4.ip_local_port_range", "1024 65000")
                ],
                false,
                false
            )),
            Ok(())
        );
        let p = pod(&[("kernel.msgmax", "8192")], false, false);
        assert_eq!(
            safe.admit(&p).unwrap_err(),
            "forbidden sysctl: \"kernel.msgmax\" not allowlisted"
        );
        let w = SysctlAllowlist::new(&["kernel.msg*".into(), "net.core.somaxconn".into()]).unwrap();
        assert_eq!(w.admit(&p), Ok(()));
        assert_eq!(
            w.admit(&pod(&[("net.core.somaxconn", "1024")], false, false)),
            Ok(())
        );
        assert!(w
            .admit(&pod(&[("net.core.rmem_max", "1")], false, false))
            .is_err());
        let net = SysctlAllowlist::new(&["net.core.*".into()]).unwrap();
        assert_eq!(
            net.admit(&pod(&[("net.core.rmem_max", "1")], false, false)),
            Ok(())
        );
    }

    #[test]
    fn non_namespaced_sysctls_are_refused_everywhere() {
        let safe = SysctlAllowlist::new(&[]).unwrap();
        assert_eq!(
            safe.admit(&pod(&[("vm.swappiness", "1")], false, false))
                .unwrap_err(),
            "forbidden sysctl: \"vm.swappiness\" not allowlisted"
        );
        for bad in ["vm.swappiness", "kernel.*", "kernel.hostname"] {
            let e = SysctlAllowlist::new(&[bad.into()]).unwrap_err();
            assert!(e.contains("not known to be namespaced"), "{bad}: {e}");
        }
        for bad in ["net..x", "Net.core.x", "net.*.x", ""] {
            assert!(SysctlAllowlist::new(&[bad.into()]).is_err(), "{bad}");
        }
    }

    #[test]
    fn host_namespaces_forbid_their_sysctls() {
        let w = SysctlAllowlist::new(&["kernel.msgmax".into()]).unwrap();
        assert_eq!(
            w.admit(&pod(&[("net.ipv4.tcp_syncookies", "1")], true, false))
                .unwrap_err(),
            "forbidden sysctl: \"net.ipv4.tcp_syncookies\" not allowed with host net enabled"
        );
        assert_eq!(
            w.admit(&pod(&[("kernel.msgmax", "8192")], false, true))
                .unwrap_err(),
            "forbidden sysctl: \"kernel.msgmax\" not allowed with host ipc enabled"
        );
        // The other namespace's sysctls are fine.
        assert_eq!(
            w.admit(&pod(&[("kernel.shm_rmid_forced", "1")], true, false)),
            Ok(())
        );
    }

    #[test]
    fn slash_names_are_converted() {
        assert_eq!(
            dot_form("net/ipv4/conf/eth0.100/forwarding"),
            "net.ipv4.conf.eth0/100.forwarding"
        );
        assert_eq!(
            dot_form("net.ipv4.tcp_syncookies"),
            "net.ipv4.tcp_syncookies"
        );
        let safe = SysctlAllowlist::new(&[]).unwrap();
        assert_eq!(
            safe.validate("net/ipv4/tcp_syncookies", false, false),
            Ok(())
        );
        assert_eq!(namespaced_by("kernel.sem"), Some(SysctlNs::Ipc));
        assert_eq!(namespaced_by("kernel.semx"), None);
        assert_eq!(namespaced_by("fs.mqueue.msg_max"), Some(SysctlNs::Ipc));
    }

    #[test]
    fn a_rejection_sticks_to_the_spec_it_was_made_for() {
        let allow = SysctlAllowlist::new(&[]).unwrap();
        let mut v = Verdict::default();
        let bad = pod(&[("kernel.msgmax", "1")], false, false);
        let r = v.admit(&allow, &bad, "h1").unwrap_err();
        assert_eq!(r.reason, "SysctlForbidden");
        assert_eq!(v.rejection("h1"), Some(&r));
        assert_eq!(v.rejection("h2"), None);
        let good = pod(&[("kernel.shm_rmid_forced", "1")], false, false);
        assert!(v.admit(&allow, &good, "h2").is_ok());
        assert_eq!(v.rejection("h1"), None, "a new spec replaces the verdict");
    }
}
