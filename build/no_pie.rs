//! Build script shared by the three binaries (kinglet, kinglet-shim, kinglet-pod-init):
//! link them as position-dependent executables (issue 10's memory goal).
//!
//! A PIE carries ~2 MiB of dynamic relocations (`.rela.dyn`) that the loader reads at every
//! start, and ~2 MiB of relocated pointers (`.data.rel.ro`) that become private dirty pages
//! in every process: 4.5 MiB of the idle daemon's RSS and a private copy in each shim. Linked
//! `-no-pie`, those pointers are resolved at link time and stay clean, shared file pages.
//! The cost: the executable's own image is not address-randomized (its libraries, heap,
//! stacks and mappings still are) — as for Go binaries such as kubelet and containerd.
//! `KINGLET_PIE=1` at build time links a PIE as before.

fn main() {
    println!("cargo:rerun-if-env-changed=KINGLET_PIE");
    let target = std::env::var("TARGET").unwrap_or_default();
    if std::env::var_os("KINGLET_PIE").is_none() && target.ends_with("-linux-gnu") {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
}
