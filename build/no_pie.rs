//! Build script shared by the three binaries (kinglet, kinglet-shim, kinglet-pod-init):
//! link them as position-dependent executables when `KINGLET_NO_PIE=1` is set at build time
//! (a memory-for-hardening trade a host may choose; the default stays PIE).
//!
//! A PIE carries ~2 MiB of dynamic relocations (`.rela.dyn`) that the loader reads at every
//! start, and ~2 MiB of relocated pointers (`.data.rel.ro`) that become private dirty pages
//! in every process: 4.5 MiB of the idle daemon's RSS and a private copy in each shim. Linked
//! `-no-pie`, those pointers are resolved at link time and stay clean, shared file pages.
//! The cost: the executable's own image is not address-randomized (its libraries, heap,
//! stacks and mappings still are) — as for Go binaries such as kubelet and containerd.
//! Kinglet runs as root, so the default keeps full ASLR; `KINGLET_NO_PIE=1` opts in.

fn main() {
    println!("cargo:rerun-if-env-changed=KINGLET_NO_PIE");
    let target = std::env::var("TARGET").unwrap_or_default();
    if std::env::var_os("KINGLET_NO_PIE").is_some_and(|v| v == "1")
        && target.ends_with("-linux-gnu")
    {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
}
