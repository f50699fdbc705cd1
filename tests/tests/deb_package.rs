//! The Debian package (`make deb`, cargo-deb): built from the debug binary with fast
//! compression, then checked with dpkg-deb: its files, control fields, conffile, maintainer
//! scripts and the unit's ExecStart.

use std::process::Command;

use kinglet_tests::*;

fn dpkg_deb(args: &[&str]) -> String {
    let out = Command::new("dpkg-deb").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "dpkg-deb {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_deb_holds_the_binary_unit_config_man_pages_and_completions() {
    kinglet_bin();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    assert!(
        Command::new("sh")
            .args(["-c", "command -v cargo-deb"])
            .status()
            .unwrap()
            .success(),
        "cargo-deb is not installed: cargo install cargo-deb --locked (scripts/test.sh does)"
    );
    let out = Command::new("bash")
        .arg(root.join("scripts/deb.sh"))
        .args(["--no-build", "--dev"])
        .current_dir(&root)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "deb.sh: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deb = root.join(stdout.trim().lines().last().unwrap());
    let deb = deb.to_str().unwrap();

    let files = dpkg_deb(&["-c", deb]);
    for want in [
        "./usr/bin/kinglet",
        "./lib/systemd/system/kinglet.service",
        "./lib/systemd/system/kinglet.socket",
        "./etc/kinglet/config.toml",
        "./usr/share/man/man1/kinglet.1.gz",
        "./usr/share/man/man1/kinglet-logs.1.gz",
        "./usr/share/bash-completion/completions/kinglet",
        "./usr/share/zsh/vendor-completions/_kinglet",
        "./usr/share/fish/vendor_completions.d/kinglet.fish",
    ] {
        assert!(
            files.lines().any(|l| l.ends_with(want)),
            "{want} missing:\n{files}"
        );
    }
    assert!(files.contains("-rwxr-xr-x 0/0"), "{files}");

    let info = dpkg_deb(&["-I", deb]);
    assert!(info.contains("Package: kinglet"), "{info}");
    assert!(
        info.contains("Depends:") && info.contains("nftables"),
        "{info}"
    );
    assert!(
        info.contains("postinst") && info.contains("prerm"),
        "{info}"
    );

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_str().unwrap();
    dpkg_deb(&["-e", deb, &format!("{dir}/DEBIAN")]);
    let conffiles = std::fs::read_to_string(tmp.path().join("DEBIAN/conffiles")).unwrap();
    assert_eq!(conffiles.trim(), "/etc/kinglet/config.toml");
    let postinst = std::fs::read_to_string(tmp.path().join("DEBIAN/postinst")).unwrap();
    assert!(
        postinst.contains("install -d -m 0700 /etc/kinglet/manifests"),
        "{postinst}"
    );

    dpkg_deb(&["-x", deb, dir]);
    let unit =
        std::fs::read_to_string(tmp.path().join("lib/systemd/system/kinglet.service")).unwrap();
    assert!(
        unit.contains("\nExecStart=/usr/bin/kinglet daemon --config /etc/kinglet/config.toml\n"),
        "{unit}"
    );
    assert!(unit.contains("\nType=notify\n"), "{unit}");
    // The packaged binary runs, and the packaged config is one it accepts.
    let bin = tmp.path().join("usr/bin/kinglet");
    let out = Command::new(&bin)
        .args(["check", "--config"])
        .arg(tmp.path().join("etc/kinglet/config.toml"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(" checks: "),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
