//! `kinglet-pod-init pod-init --pin PATH`: creates a pod's shared PID namespace, forks its
//! PID 1 (a pause process) and pins the namespace at PATH (see `kinglet_netns::pidns`).
//!
//! The daemon runs this binary from its own directory instead of re-executing itself, so each
//! pod init maps a small binary, not the daemon's. The command line is the one the daemon's
//! hidden `kinglet pod-init` subcommand takes, so recovery and `kinglet reset` find both.

fn main() {
    match kinglet_netns::pod_init_args(std::env::args_os()) {
        Some(pin) => kinglet_netns::pod_init_main(&pin),
        None => {
            eprintln!(
                "usage: kinglet-pod-init pod-init --pin PATH (started by the kinglet daemon for a pod with a shared PID namespace)"
            );
            std::process::exit(2)
        }
    }
}
