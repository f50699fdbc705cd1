//! Seccomp for containers, as the CRI `SecurityProfile` asks:
//! - `RuntimeDefault`: Kinglet's default profile — an allowlist in the spirit of containerd's
//!   and Docker's defaults: every other syscall fails with EPERM; namespace creation, mounts,
//!   module loading, clock setting, tracing other processes and the like are allowed only when
//!   the container holds the capability that governs them; `clone3` answers ENOSYS so libcs
//!   fall back to `clone`, whose namespace flags can be checked.
//! - `Localhost`: an OCI seccomp profile (JSON) from a file on the host.
//! - `Unconfined`, or no profile at all: no filter.
//!
//! Privileged containers get no filter. The deprecated `seccomp_profile_path` strings
//! (`runtime/default`, `docker/default`, `unconfined`, `localhost/<path>`) are honoured when the
//! structured field is absent.

use std::path::Path;

use kinglet_cri::CriError;
use kinglet_proto::v1;
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArgBuilder, LinuxSeccompBuilder,
    LinuxSeccompOperator, LinuxSyscall, LinuxSyscallBuilder,
};

/// Syscalls every container may make.
const ALLOWED: &[&str] = &[
    "accept",
    "accept4",
    "access",
    "adjtimex",
    "alarm",
    "bind",
    "brk",
    "cachestat",
    "capget",
    "capset",
    "chdir",
    "chmod",
    "chown",
    "chown32",
    "clock_adjtime",
    "clock_adjtime64",
    "clock_getres",
    "clock_getres_time64",
    "clock_gettime",
    "clock_gettime64",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "close",
    "close_range",
    "connect",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fadvise64_64",
    "fallocate",
    "fanotify_mark",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchmodat2",
    "fchown",
    "fchown32",
    "fchownat",
    "fcntl",
    "fcntl64",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fork",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstat64",
    "fstatat64",
    "fstatfs",
    "fstatfs64",
    "fsync",
    "ftruncate",
    "ftruncate64",
    "futex",
    "futex_requeue",
    "futex_time64",
    "futex_wait",
    "futex_waitv",
    "futex_wake",
    "futimesat",
    "getcpu",
    "getcwd",
    "getdents",
    "getdents64",
    "getegid",
    "getegid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getgroups",
    "getgroups32",
    "getitimer",
    "getpeername",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrandom",
    "getresgid",
    "getresgid32",
    "getresuid",
    "getresuid32",
    "getrlimit",
    "get_robust_list",
    "getrusage",
    "getsid",
    "getsockname",
    "getsockopt",
    "get_thread_area",
    "gettid",
    "gettimeofday",
    "getuid",
    "getuid32",
    "getxattr",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "io_cancel",
    "ioctl",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_pgetevents_time64",
    "ioprio_get",
    "ioprio_set",
    "io_setup",
    "io_submit",
    "io_uring_enter",
    "io_uring_register",
    "io_uring_setup",
    "ipc",
    "kill",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "lchown",
    "lchown32",
    "lgetxattr",
    "link",
    "linkat",
    "listen",
    "listxattr",
    "llistxattr",
    "_llseek",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "lstat64",
    "madvise",
    "map_shadow_stack",
    "membarrier",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mmap2",
    "mprotect",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedreceive_time64",
    "mq_timedsend",
    "mq_timedsend_time64",
    "mq_unlink",
    "mremap",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "name_to_handle_at",
    "nanosleep",
    "newfstatat",
    "_newselect",
    "open",
    "openat",
    "openat2",
    "pause",
    "pidfd_open",
    "pidfd_send_signal",
    "pipe",
    "pipe2",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "poll",
    "ppoll",
    "ppoll_time64",
    "prctl",
    "pread64",
    "preadv",
    "preadv2",
    "prlimit64",
    "process_mrelease",
    "pselect6",
    "pselect6_time64",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "recv",
    "recvfrom",
    "recvmmsg",
    "recvmmsg_time64",
    "recvmsg",
    "remap_file_pages",
    "removexattr",
    "rename",
    "renameat",
    "renameat2",
    "restart_syscall",
    "rmdir",
    "rseq",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_rr_get_interval_time64",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "select",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "semtimedop_time64",
    "send",
    "sendfile",
    "sendfile64",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "setfsgid",
    "setfsgid32",
    "setfsuid",
    "setfsuid32",
    "setgid",
    "setgid32",
    "setgroups",
    "setgroups32",
    "setitimer",
    "setpgid",
    "setpriority",
    "setregid",
    "setregid32",
    "setresgid",
    "setresgid32",
    "setresuid",
    "setresuid32",
    "setreuid",
    "setreuid32",
    "setrlimit",
    "set_robust_list",
    "setsid",
    "setsockopt",
    "set_thread_area",
    "set_tid_address",
    "setuid",
    "setuid32",
    "setxattr",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    "shutdown",
    "sigaltstack",
    "signalfd",
    "signalfd4",
    "sigprocmask",
    "sigreturn",
    "socketcall",
    "socketpair",
    "splice",
    "stat",
    "stat64",
    "statfs",
    "statfs64",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "sysinfo",
    "tee",
    "tgkill",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_gettime64",
    "timer_settime",
    "timer_settime64",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_gettime64",
    "timerfd_settime",
    "timerfd_settime64",
    "times",
    "tkill",
    "truncate",
    "truncate64",
    "ugetrlimit",
    "umask",
    "uname",
    "unlink",
    "unlinkat",
    "utime",
    "utimensat",
    "utimensat_time64",
    "utimes",
    "vfork",
    "vmsplice",
    "wait4",
    "waitid",
    "waitpid",
    "write",
    "writev",
    "arch_prctl",
    "modify_ldt",
    "socket",
];

/// Syscalls allowed only with a capability (name without `CAP_`).
const BY_CAPABILITY: &[(&str, &[&str])] = &[
    (
        "SYS_ADMIN",
        &[
            "bpf",
            "clone",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "mount",
            "mount_setattr",
            "move_mount",
            "open_tree",
            "perf_event_open",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "syslog",
            "umount",
            "umount2",
            "unshare",
        ],
    ),
    ("SYS_BOOT", &["reboot"]),
    ("SYS_CHROOT", &["chroot"]),
    (
        "SYS_MODULE",
        &["delete_module", "init_module", "finit_module"],
    ),
    ("SYS_PACCT", &["acct"]),
    (
        "SYS_PTRACE",
        &[
            "kcmp",
            "pidfd_getfd",
            "process_madvise",
            "process_vm_readv",
            "process_vm_writev",
            "ptrace",
        ],
    ),
    ("SYS_RAWIO", &["iopl", "ioperm"]),
    (
        "SYS_TIME",
        &["settimeofday", "stime", "clock_settime", "clock_settime64"],
    ),
    ("SYS_TTY_CONFIG", &["vhangup"]),
    (
        "SYS_NICE",
        &[
            "get_mempolicy",
            "mbind",
            "set_mempolicy",
            "set_mempolicy_home_node",
        ],
    ),
    ("SYSLOG", &["syslog"]),
    ("BPF", &["bpf"]),
    ("PERFMON", &["perf_event_open"]),
];

/// Namespace flags `clone` may not use without CAP_SYS_ADMIN.
const CLONE_NS_FLAGS: u64 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWCGROUP) as u64;

fn rule(names: &[&str], action: LinuxSeccompAction) -> Result<LinuxSyscall, CriError> {
    LinuxSyscallBuilder::default()
        .names(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .action(action)
        .build()
        .map_err(|e| CriError::invalid("seccomp", e.to_string()))
}

/// Kinglet's default profile for a container holding `caps` (names with `CAP_`).
pub fn runtime_default(caps: &[String]) -> Result<LinuxSeccomp, CriError> {
    let has = |c: &str| caps.iter().any(|x| x.strip_prefix("CAP_") == Some(c));
    let mut allowed: Vec<&str> = ALLOWED.to_vec();
    for (cap, names) in BY_CAPABILITY {
        if has(cap) {
            allowed.extend_from_slice(names);
        }
    }
    allowed.sort_unstable();
    allowed.dedup();
    let mut syscalls = vec![rule(&allowed, LinuxSeccompAction::ScmpActAllow)?];
    if !has("SYS_ADMIN") {
        // clone without namespace flags (the flags are argument 0 on x86_64 and arm64).
        let arg = LinuxSeccompArgBuilder::default()
            .index(0usize)
            .value(CLONE_NS_FLAGS)
            .value_two(0u64)
            .op(LinuxSeccompOperator::ScmpCmpMaskedEq)
            .build()
            .map_err(|e| CriError::invalid("seccomp", e.to_string()))?;
        syscalls.push(
            LinuxSyscallBuilder::default()
                .names(vec!["clone".to_string()])
                .action(LinuxSeccompAction::ScmpActAllow)
                .args(vec![arg])
                .build()
                .map_err(|e| CriError::invalid("seccomp", e.to_string()))?,
        );
    }
    // clone3 passes its flags in memory a filter cannot read: make libcs fall back to clone.
    syscalls.push(
        LinuxSyscallBuilder::default()
            .names(vec!["clone3".to_string()])
            .action(LinuxSeccompAction::ScmpActErrno)
            .errno_ret(libc::ENOSYS as u32)
            .build()
            .map_err(|e| CriError::invalid("seccomp", e.to_string()))?,
    );
    let arches = if cfg!(target_arch = "aarch64") {
        vec![Arch::ScmpArchAarch64, Arch::ScmpArchArm]
    } else {
        vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32]
    };
    LinuxSeccompBuilder::default()
        .default_action(LinuxSeccompAction::ScmpActErrno)
        .default_errno_ret(libc::EPERM as u32)
        .architectures(arches)
        .syscalls(syscalls)
        .build()
        .map_err(|e| CriError::invalid("seccomp", e.to_string()))
}

/// A profile from a JSON file on the host (`Localhost`).
fn localhost(path: &str, field: &str) -> Result<LinuxSeccomp, CriError> {
    if !Path::new(path).is_absolute() {
        return Err(CriError::invalid(
            field,
            format!("localhost profile {path:?} is not an absolute path"),
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| {
        CriError::invalid(field, format!("cannot read seccomp profile {path}: {e}"))
    })?;
    serde_json::from_str(&text).map_err(|e| {
        CriError::invalid(
            field,
            format!("seccomp profile {path} is not a valid OCI seccomp profile: {e}"),
        )
    })
}

/// The filter for a container, or None for none.
pub fn for_container(
    sc: Option<&v1::LinuxContainerSecurityContext>,
    caps: &[String],
) -> Result<Option<LinuxSeccomp>, CriError> {
    let Some(sc) = sc else { return Ok(None) };
    if sc.privileged {
        return Ok(None);
    }
    const FIELD: &str = "linux.security_context.seccomp";
    if let Some(p) = &sc.seccomp {
        return match v1::security_profile::ProfileType::try_from(p.profile_type) {
            Ok(v1::security_profile::ProfileType::RuntimeDefault) => {
                runtime_default(caps).map(Some)
            }
            Ok(v1::security_profile::ProfileType::Unconfined) => Ok(None),
            Ok(v1::security_profile::ProfileType::Localhost) => {
                localhost(&p.localhost_ref, FIELD).map(Some)
            }
            Err(_) => Err(CriError::invalid(
                FIELD,
                format!("unknown profile type {}", p.profile_type),
            )),
        };
    }
    #[allow(deprecated)]
    let legacy = sc.seccomp_profile_path.as_str();
    match legacy {
        "" | "unconfined" => Ok(None),
        "runtime/default" | "docker/default" => runtime_default(caps).map(Some),
        other => match other.strip_prefix("localhost/") {
            Some(path) => localhost(path, "linux.security_context.seccomp_profile_path").map(Some),
            None => Err(CriError::invalid(
                "linux.security_context.seccomp_profile_path",
                format!("unknown profile {other:?}"),
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(p: &LinuxSeccomp, action: LinuxSeccompAction) -> Vec<String> {
        p.syscalls()
            .as_ref()
            .unwrap()
            .iter()
            .filter(|s| s.action() == action && s.args().is_none())
            .flat_map(|s| s.names().clone())
            .collect()
    }

    #[test]
    fn default_profile_gates_privileged_syscalls_on_capabilities() {
        let default_caps: Vec<String> = super::super::spec::DEFAULT_CAPS
            .iter()
            .map(|s| s.to_string())
            .collect();
        let p = runtime_default(&default_caps).unwrap();
        assert_eq!(p.default_action(), LinuxSeccompAction::ScmpActErrno);
        let allowed = names(&p, LinuxSeccompAction::ScmpActAllow);
        for must in ["read", "execve", "chroot", "socket", "exit_group"] {
            assert!(allowed.iter().any(|n| n == must), "{must} allowed");
        }
        for never in [
            "mount",
            "unshare",
            "setns",
            "ptrace",
            "reboot",
            "init_module",
            "keyctl",
            "add_key",
        ] {
            assert!(!allowed.iter().any(|n| n == never), "{never} not allowed");
        }
        // clone only without namespace flags; clone3 falls back.
        let rules = p.syscalls().as_ref().unwrap();
        assert!(rules
            .iter()
            .any(|s| s.names() == &vec!["clone".to_string()] && s.args().is_some()));
        assert!(rules
            .iter()
            .any(|s| s.names() == &vec!["clone3".to_string()]
                && s.errno_ret() == Some(libc::ENOSYS as u32)));

        let mut admin = default_caps.clone();
        admin.push("CAP_SYS_ADMIN".into());
        let allowed = names(
            &runtime_default(&admin).unwrap(),
            LinuxSeccompAction::ScmpActAllow,
        );
        assert!(allowed.iter().any(|n| n == "mount") && allowed.iter().any(|n| n == "clone"));
    }

    #[test]
    fn profile_selection_follows_the_cri_fields() {
        let caps = vec![];
        assert!(for_container(None, &caps).unwrap().is_none());
        let mut sc = v1::LinuxContainerSecurityContext {
            seccomp: Some(v1::SecurityProfile {
                profile_type: v1::security_profile::ProfileType::RuntimeDefault as i32,
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(for_container(Some(&sc), &caps).unwrap().is_some());
        sc.privileged = true;
        assert!(for_container(Some(&sc), &caps).unwrap().is_none());
        sc.privileged = false;
        sc.seccomp = Some(v1::SecurityProfile {
            profile_type: v1::security_profile::ProfileType::Localhost as i32,
            localhost_ref: "/nonexistent/profile.json".into(),
        });
        let e = for_container(Some(&sc), &caps).unwrap_err().to_string();
        assert!(
            e.contains("/nonexistent/profile.json") && e.contains("seccomp"),
            "{e}"
        );
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("p.json");
        std::fs::write(&f, r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_ERRNO"}]}"#).unwrap();
        sc.seccomp = Some(v1::SecurityProfile {
            profile_type: v1::security_profile::ProfileType::Localhost as i32,
            localhost_ref: f.display().to_string(),
        });
        let p = for_container(Some(&sc), &caps).unwrap().unwrap();
        assert_eq!(p.default_action(), LinuxSeccompAction::ScmpActAllow);
        sc.seccomp = None;
        #[allow(deprecated)]
        {
            sc.seccomp_profile_path = "runtime/default".into();
        }
        assert!(for_container(Some(&sc), &caps).unwrap().is_some());
    }
}
