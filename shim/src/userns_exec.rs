//! Commands exec'd into a container of a pod with its own user namespace (`hostUsers: false`).
//!
//! libcontainer's tenant builder joins the container's namespaces except its user namespace,
//! which would run the command as the host's root. So for such a container the tenant
//! process starts as root with CAP_SYS_ADMIN (besides the container's capabilities), and the
//! executor, right before `execve`, joins the user namespace of the container's PID 1 (its
//! `/proc` is the container's by then; PID 1 is the container's or the pod's init, both in
//! the pod's user namespace), becomes the container's user there and sets the container's
//! capabilities, so the command runs exactly as the container's own process does.

use std::fs::File;
use std::os::fd::AsFd;

use libcontainer::oci_spec::runtime::{Capability, LinuxCapabilities, Process, Spec};
use libcontainer::workload::ExecutorError;
use nix::sched::CloneFlags;
use nix::unistd::{Gid, Uid};

/// What the command becomes once inside the user namespace.
#[derive(Clone, Debug)]
pub(crate) struct UserJoin {
    uid: u32,
    gid: u32,
    groups: Vec<u32>,
    caps: Option<LinuxCapabilities>,
}

/// Whether `spec` joins an existing user namespace (a pod's).
fn joins_userns(spec: &Spec) -> bool {
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|ns| {
            ns.iter().any(|n| {
                n.typ() == libcontainer::oci_spec::runtime::LinuxNamespaceType::User
                    && n.path().is_some()
            })
        })
}

/// For a container in a pod user namespace: make `process` start as root with
/// CAP_SYS_ADMIN (to join the namespace) and return what the executor must make of it.
pub(crate) fn prepare(process: &mut Process, spec: &Spec) -> Option<UserJoin> {
    if !joins_userns(spec) {
        return None;
    }
    let user = process.user().clone();
    let join = UserJoin {
        uid: user.uid(),
        gid: user.gid(),
        groups: user.additional_gids().clone().unwrap_or_default(),
        caps: process.capabilities().clone(),
    };
    let mut root = user;
    root.set_uid(0).set_gid(0).set_additional_gids(None);
    process.set_user(root);
    let mut caps = process.capabilities().clone().unwrap_or_default();
    let add = |s: &Option<libcontainer::oci_spec::runtime::Capabilities>| {
        let mut s = s.clone().unwrap_or_default();
        s.insert(Capability::SysAdmin);
        Some(s)
    };
    let (b, e, p) = (
        add(caps.bounding()),
        add(caps.effective()),
        add(caps.permitted()),
    );
    caps.set_bounding(b).set_effective(e).set_permitted(p);
    process.set_capabilities(Some(caps));
    Some(join)
}

impl UserJoin {
    /// In the tenant process, right before exec: join the user namespace of PID 1, become the
    /// container's user and take the container's capabilities.
    pub(crate) fn enter(&self) -> Result<(), ExecutorError> {
        let err = |what: &str| {
            let what = what.to_owned();
            move |e: nix::Error| ExecutorError::Other(format!("{what}: {e}"))
        };
        let ns = File::open("/proc/1/ns/user")
            .map_err(|e| ExecutorError::Other(format!("open /proc/1/ns/user: {e}")))?;
        nix::sched::setns(ns.as_fd(), CloneFlags::CLONE_NEWUSER)
            .map_err(err("join the pod's user namespace"))?;
        let groups: Vec<Gid> = self.groups.iter().map(|g| Gid::from_raw(*g)).collect();
        nix::unistd::setgroups(&groups).map_err(err("set groups"))?;
        let (gid, uid) = (Gid::from_raw(self.gid), Uid::from_raw(self.uid));
        nix::unistd::setresgid(gid, gid, gid).map_err(err("set gid"))?;
        nix::unistd::setresuid(uid, uid, uid).map_err(err("set uid"))?;
        let caps = self.caps.clone().unwrap_or_default();
        let syscall = libcontainer::syscall::syscall::create_syscall();
        libcontainer::capabilities::drop_privileges(&caps, syscall.as_ref())
            .map_err(|e| ExecutorError::Other(format!("set capabilities: {e}")))
    }
}
