//! Helpers shared by the root integration tests.
//!
//! These tests change real kernel state (namespaces, mounts, processes) and need root. They
//! are not skipped without it: [`require_root`] fails the test, so a CI run that lost its
//! privileges goes red instead of green.

#![allow(dead_code)] // each test target uses a different subset

use std::path::{Path, PathBuf};
use std::process::Command;

use kinglet_netns::{sys, NsId, NsKind};

/// Fail (never skip) when not running as root.
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root (CAP_SYS_ADMIN for unshare/mount); it fails rather than skips"
    );
}

/// Identity of a namespace file, panicking with the path on error.
pub fn ns_id(path: &Path) -> NsId {
    sys::ns_identity(path).unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
}

/// Identity of the test process's own namespace of `kind`.
pub fn own_ns(kind: NsKind) -> NsId {
    ns_id(&PathBuf::from(format!("/proc/self/ns/{kind}")))
}

/// Mount points at or below `dir` in this process's mount namespace.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").expect("read mountinfo");
    info.lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(unescape_mountinfo)
        .filter(|mount_point| mount_point.starts_with(dir))
        .collect()
}

fn unescape_mountinfo(field: &str) -> PathBuf {
    // mountinfo escapes space, tab, newline and backslash as \ooo.
    let mut out = Vec::with_capacity(field.len());
    let bytes = field.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4].iter().all(u8::is_ascii_digit)
        {
            let oct = std::str::from_utf8(&bytes[i + 1..i + 4]).expect("ascii");
            out.push(u8::from_str_radix(oct, 8).expect("octal escape"));
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    PathBuf::from(String::from_utf8(out).expect("utf-8 mount point"))
}

/// Run a command to completion and return its stdout, failing the test on a non-zero exit.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed with {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// `readlink /proc/self/ns/<kind>`-style text (`net:[4026532000]`) for a namespace identity.
pub fn ns_link_text(kind: NsKind, id: NsId) -> String {
    format!("{kind}:[{}]", id.ino)
}
