//! Fault injection: named crash points.
//!
//! `crash_point!("sandbox.after-pin")` marks a step of pod/container creation or removal, image
//! import/pull/unpack or network setup. In a build with crash points (every debug build, or the
//! `crash-points` feature) the process calls [`std::process::abort`] there when the environment
//! variable [`ENV`] (read once) names that point; in a release build without the feature the
//! macro expands to nothing. `tests/tests/crash_points.rs` crashes the daemon at each point of
//! [`POINTS`] in turn, restarts it, removes everything and checks that nothing is left.
//!
//! Every name must be listed in [`POINTS`]: the macro checks that at compile time.

/// The environment variable naming the point to crash at.
pub const ENV: &str = "KINGLET_CRASH_AT";

/// Every crash point, in the order a pod's life reaches them.
pub const POINTS: &[&str] = &[
    // Image import (`kinglet image import`, the daemon's ImageStore).
    "image.import.after-stage",
    "image.import.after-blobs",
    // Layer unpack (first use of an image's layers).
    "image.unpack.after-extract",
    // Image pull from a registry.
    "pull.after-blobs",
    "pull.after-commit",
    // RunPodSandbox.
    "sandbox.after-dir",
    "sandbox.after-pin",
    "netns.setup.after-ipam",
    "netns.setup.after-state",
    "netns.setup.after-veth",
    "netns.setup.after-nft",
    "sandbox.after-network",
    "sandbox.after-pod-init",
    "sandbox.after-shm",
    "sandbox.after-cgroup",
    "sandbox.after-record",
    // CreateContainer / StartContainer.
    "container.after-rootfs",
    "container.after-spec",
    "container.after-shim",
    "container.after-record",
    "container.start.before",
    "container.start.after",
    // StopContainer / RemoveContainer.
    "container.stop.after-signal",
    "container.remove.after-shim",
    "container.remove.after-dirs",
    // StopPodSandbox / RemovePodSandbox.
    "sandbox.stop.after-containers",
    "netns.teardown.after-nft",
    "netns.teardown.after-veth",
    "sandbox.stop.after-release",
    "sandbox.remove.after-containers",
    "sandbox.remove.after-dir",
    "sandbox.remove.after-cgroup",
];

/// Whether `name` is one of [`POINTS`] (usable in constants: the macro's compile-time check).
pub const fn is_known(name: &str) -> bool {
    let mut i = 0;
    while i < POINTS.len() {
        if str_eq(POINTS[i], name) {
            return true;
        }
        i += 1;
    }
    false
}

const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// Whether this build has crash points.
pub const ENABLED: bool = cfg!(any(debug_assertions, feature = "crash-points"));

/// The point named by [`ENV`], read once.
#[cfg(any(debug_assertions, feature = "crash-points"))]
fn armed() -> Option<&'static str> {
    static AT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    AT.get_or_init(|| std::env::var(ENV).ok().filter(|s| !s.is_empty()))
        .as_deref()
}

/// Abort the process if [`ENV`] names `name`. Use [`crash_point!`] rather than this.
#[cfg(any(debug_assertions, feature = "crash-points"))]
#[doc(hidden)]
pub fn hit(name: &'static str) {
    if armed() == Some(name) {
        eprintln!("kinglet: crash point {name} reached ({ENV}): aborting");
        std::process::abort();
    }
}

/// A named crash point (see the crate docs). The name must be listed in [`POINTS`].
#[cfg(any(debug_assertions, feature = "crash-points"))]
#[macro_export]
macro_rules! crash_point {
    ($name:literal) => {{
        const _: () = assert!(
            $crate::is_known($name),
            concat!(
                "crash point ",
                $name,
                " is not listed in kinglet_fault::POINTS"
            )
        );
        $crate::hit($name)
    }};
}

/// A named crash point: nothing in this build.
#[cfg(not(any(debug_assertions, feature = "crash-points")))]
#[macro_export]
macro_rules! crash_point {
    ($name:literal) => {{
        const _: () = assert!(
            $crate::is_known($name),
            concat!(
                "crash point ",
                $name,
                " is not listed in kinglet_fault::POINTS"
            )
        );
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_known() {
        for (i, p) in POINTS.iter().enumerate() {
            assert!(is_known(p));
            assert!(!POINTS[..i].contains(p), "{p} listed twice");
        }
        assert!(!is_known("sandbox.nowhere"));
        assert!(!is_known("sandbox.after-di"));
    }

    #[test]
    fn an_unarmed_point_does_nothing() {
        // ENV is not set in unit tests: reaching a point returns.
        crash_point!("sandbox.after-dir");
    }
}
