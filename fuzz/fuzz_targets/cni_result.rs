//! CNI: a network configuration list (`*.conflist`, loaded from a directory as the daemon
//! loads it) and what a plugin prints (its result or error object), read as the daemon reads
//! them: the result's first IPv4 address, or the plugin's error message.
//!
//! The input is `FLAGS CONFLIST \n--\n STDOUT`: bit 0 of FLAGS says whether the plugin
//! succeeded; on failure STDOUT is also given as its stderr.
#![no_main]
use std::time::Duration;

use kinglet_netns::cni::{self, Cni, CniConfig};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let sep = b"\n--\n";
    let (list, stdout) = match rest.windows(sep.len()).position(|w| w == sep) {
        Some(at) => (&rest[..at], &rest[at + sep.len()..]),
        None => (&[][..], rest),
    };
    if !list.is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("net.d");
        std::fs::create_dir(&conf).unwrap();
        std::fs::write(conf.join("10-fuzz.conflist"), list).unwrap();
        let loaded = Cni::load(CniConfig {
            conf_dir: conf,
            bin_dir: dir.path().join("bin"),
            state_dir: dir.path().join("state"),
            timeout: Duration::from_secs(1),
        });
        if let Ok(Some(c)) = loaded {
            // A loaded list has a name and plugin types; none is installed here.
            let _ = c.name();
            assert!(
                c.ready().is_err(),
                "no plugin binary exists, so it is not ready"
            );
            assert!(c.cached_pods().is_empty());
        }
    }
    let success = flags & 1 == 1;
    match cni::read_reply(stdout, stdout, success) {
        Ok(result) => {
            assert!(success, "a failed plugin's output is an error");
            let _ = cni::first_ipv4(&result);
        }
        Err(msg) => {
            assert!(!success, "a plugin that succeeded has a result");
            // The message is what the plugin said, bounded by what it printed.
            assert!(
                msg.len() <= stdout.len() * 3 + 2,
                "message longer than its source"
            );
        }
    }
});
