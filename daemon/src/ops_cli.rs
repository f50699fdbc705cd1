//! Client verbs around the daemon rather than its objects: `version`, `completion`, the man
//! pages, `image ls` (crictl's columns and sizes) and `image pull` (a progress bar on a
//! terminal, plain lines otherwise).

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use kinglet_proto::admin::admin_client::AdminClient;
use kinglet_proto::v1;
use kinglet_proto::v1::image_service_client::ImageServiceClient;
use kinglet_proto::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::Channel;

/// `kinglet version`: the client's version, then the daemon's (or why it cannot be asked).
pub async fn version(socket: &Path) -> anyhow::Result<()> {
    println!("Client Version: {}", env!("CARGO_PKG_VERSION"));
    let ch = crate::cli::connect_to(socket).await?;
    let v = RuntimeServiceClient::new(ch)
        .version(v1::VersionRequest::default())
        .await
        .map_err(crate::kubectl::status_err("version"))?
        .into_inner();
    println!("Server Version: {}", v.runtime_version);
    println!(
        "Runtime: {} (CRI {})",
        v.runtime_name, v.runtime_api_version
    );
    Ok(())
}

/// `kinglet completion SHELL`: the completion script on stdout.
pub fn completion(shell: clap_complete::Shell) -> anyhow::Result<()> {
    use std::io::Write;
    let mut cmd = <crate::cli::Cli as clap::CommandFactory>::command();
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut cmd, "kinglet", &mut buf);
    match std::io::stdout().write_all(&buf) {
        // `| head`: the reader is gone, nothing to say.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => Ok(r?),
    }
}

/// `kinglet man DIR`: `kinglet.1` and one `kinglet-VERB.1` per visible subcommand.
pub fn man_pages(dir: &Path) -> anyhow::Result<Vec<std::path::PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let cmd =
        <crate::cli::Cli as clap::CommandFactory>::command().version(env!("CARGO_PKG_VERSION"));
    let mut written = Vec::new();
    let mut write = |name: String, c: clap::Command| -> anyhow::Result<()> {
        let path = dir.join(format!("{name}.1"));
        let mut buf = Vec::new();
        // clap names are `&'static str` without its `string` feature; this runs once per
        // page in a short-lived process.
        let static_name: &'static str = Box::leak(name.clone().into_boxed_str());
        clap_mangen::Man::new(c.name(static_name)).render(&mut buf)?;
        std::fs::write(&path, buf).with_context(|| format!("write {}", path.display()))?;
        written.push(path);
        Ok(())
    };
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let c = sub.clone().bin_name(format!("kinglet {}", sub.get_name()));
        write(format!("kinglet-{}", sub.get_name()), c)?;
    }
    write("kinglet".into(), cmd)?;
    Ok(written)
}

/// A size as `crictl images` prints it (go-units' `HumanSizeWithPrecision(n, 3)`: decimal
/// units, three significant digits).
pub fn human_size(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < UNITS.len() {
        v /= 1000.0;
        u += 1;
    }
    // %.3g, as crictl asks for: three significant digits, trailing zeros dropped.
    let decimals = if v >= 100.0 {
        0
    } else if v >= 10.0 {
        1
    } else {
        2
    };
    let s = format!("{v:.decimals$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    };
    format!("{s}{}", UNITS[u])
}

/// `image ls` rows: IMAGE, TAG, IMAGE ID (13 characters), SIZE, as crictl prints them; an
/// image with several tags has a row each, one without tags `<none>`.
pub fn image_rows(images: &[v1::Image]) -> Vec<[String; 4]> {
    let mut rows = Vec::new();
    for i in images {
        let id = i.id.trim_start_matches("sha256:");
        let id = id[..id.len().min(13)].to_owned();
        let size = human_size(i.size);
        let tags: Vec<(String, String)> = if i.repo_tags.is_empty() {
            let repo = i
                .repo_digests
                .first()
                .and_then(|d| d.split_once('@'))
                .map_or("<none>".to_owned(), |(r, _)| r.to_owned());
            vec![(repo, "<none>".into())]
        } else {
            i.repo_tags
                .iter()
                .map(|t| match t.rsplit_once(':') {
                    Some((r, tag)) if !tag.contains('/') => (r.to_owned(), tag.to_owned()),
                    _ => (t.clone(), "<none>".into()),
                })
                .collect()
        };
        for (repo, tag) in tags {
            rows.push([repo, tag, id.clone(), size.clone()]);
        }
    }
    rows
}

/// Rows as aligned columns (three spaces between, as kubectl's tables).
pub fn columns<const N: usize>(header: [&str; N], rows: &[[String; N]]) -> String {
    let mut w: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<width$}", width = w[i]))
            .collect::<Vec<_>>()
            .join("   ");
        s.truncate(s.trim_end().len());
        s.push('\n');
        s
    };
    let mut out = line(header.to_vec());
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

pub async fn image_ls(ch: Channel) -> anyhow::Result<()> {
    let resp = ImageServiceClient::new(ch)
        .list_images(v1::ListImagesRequest::default())
        .await
        .map_err(crate::kubectl::status_err("list images"))?
        .into_inner();
    let mut rows = image_rows(&resp.images);
    rows.sort();
    print!("{}", columns(["IMAGE", "TAG", "IMAGE ID", "SIZE"], &rows));
    Ok(())
}

/// `kinglet image pull`: PullImage over the CRI while polling the daemon for progress; an
/// indicatif bar on a terminal, else a plain line at most every 5 s when something changed
/// (and while the registry has not answered yet, how long it has been waiting).
pub async fn pull(ch: Channel, reference: &str, creds: Option<&str>) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    let auth = match creds {
        Some(c) => {
            let (user, pass) = c.split_once(':').context("--creds must be USER:PASSWORD")?;
            Some(v1::AuthConfig {
                username: user.to_owned(),
                password: pass.to_owned(),
                ..Default::default()
            })
        }
        None => None,
    };
    let mut images = ImageServiceClient::new(ch.clone());
    let req = v1::PullImageRequest {
        image: Some(v1::ImageSpec {
            image: reference.to_owned(),
            ..Default::default()
        }),
        auth,
        sandbox_config: None,
    };
    let started = std::time::Instant::now();
    let call = images.pull_image(req);
    tokio::pin!(call);
    let mut admin = AdminClient::new(ch);
    let tty = std::io::stderr().is_terminal();
    let bar = tty.then(|| {
        let b = indicatif::ProgressBar::new(0);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{prefix} {wide_bar} {binary_bytes}/{binary_total_bytes} {msg} [{elapsed}]",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b.set_prefix(reference.to_owned());
        b.set_message("resolving");
        b.enable_steady_tick(Duration::from_millis(200));
        b
    });
    let mut last_line = String::new();
    let mut last_print = std::time::Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(if tty { 200 } else { 1000 }));
    let result = loop {
        tokio::select! {
            r = &mut call => break r,
            _ = tick.tick() => {
                let p = admin
                    .pull_progress(kinglet_proto::admin::PullProgressRequest {
                        image: reference.to_owned(),
                    })
                    .await
                    .map(|r| r.into_inner())
                    .ok()
                    .filter(|p| p.running && p.layers_total > 0);
                let line = match &p {
                    Some(p) => format!(
                        "{reference}: layers {}/{}, {} / {}",
                        p.layers_done,
                        p.layers_total,
                        human_size(p.bytes_done),
                        human_size(p.bytes_total)
                    ),
                    None => format!(
                        "{reference}: waiting for the registry ({} s)",
                        started.elapsed().as_secs()
                    ),
                };
                if let Some(b) = &bar {
                    if let Some(p) = &p {
                        b.set_length(p.bytes_total);
                        b.set_position(p.bytes_done);
                        b.set_message(format!("layers {}/{}", p.layers_done, p.layers_total));
                    }
                } else if last_print.elapsed() >= Duration::from_secs(5) && line != last_line {
                    eprintln!("{line}");
                    last_line = line;
                    last_print = std::time::Instant::now();
                }
            }
        }
    };
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let id = result
        .map_err(|s| anyhow::anyhow!("{} ({:?})", s.message(), s.code()))?
        .into_inner()
        .image_ref;
    println!(
        "{reference}: pulled {id} in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_crictl() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(1_474_560), "1.47MB");
        assert_eq!(human_size(12_345_678), "12.3MB");
        assert_eq!(human_size(123_456_789), "123MB");
        assert_eq!(human_size(2_000_000_000), "2GB");
    }

    #[test]
    fn image_rows_split_tags_and_align() {
        let imgs = vec![
            v1::Image {
                id: "sha256:0123456789abcdef0123".into(),
                repo_tags: vec![
                    "docker.io/library/busybox:latest".into(),
                    "localhost:5000/bb:1".into(),
                ],
                size: 4_400_000,
                ..Default::default()
            },
            v1::Image {
                id: "sha256:fedcba9876543210".into(),
                repo_digests: vec!["r.example/x@sha256:aa".into()],
                size: 12,
                ..Default::default()
            },
        ];
        let rows = image_rows(&imgs);
        assert_eq!(
            rows[0][..2],
            ["docker.io/library/busybox".to_string(), "latest".into()]
        );
        assert_eq!(rows[1][..2], ["localhost:5000/bb".to_string(), "1".into()]);
        assert_eq!(rows[2][..2], ["r.example/x".to_string(), "<none>".into()]);
        assert_eq!(rows[0][2], "0123456789abc");
        let text = columns(["IMAGE", "TAG", "IMAGE ID", "SIZE"], &rows);
        let lines: Vec<&str> = text.lines().collect();
        // Every column starts at the same offset on every line.
        let at = |l: &str, i: usize| l.char_indices().nth(i).map(|(b, _)| b);
        let tag_col = lines[0].find("TAG").unwrap();
        let size_col = lines[0].find("SIZE").unwrap();
        for l in &lines[1..] {
            assert_ne!(at(l, tag_col - 1), None, "{text}");
            assert_eq!(&l[tag_col - 3..tag_col], "   ", "{text}");
            assert!(l[size_col..].ends_with('B'), "{text}");
        }
        assert!(lines[1].ends_with("4.4MB"), "{text}");
    }

    /// Every argument a user sees has a description in `--help` and the man pages.
    #[test]
    fn every_visible_argument_has_help() {
        fn walk(c: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for a in c.get_arguments() {
                let builtin = matches!(a.get_id().as_str(), "help" | "version");
                if !a.is_hide_set() && !builtin && a.get_help().is_none() {
                    missing.push(format!("{path} {}", a.get_id()));
                }
            }
            for s in c.get_subcommands().filter(|s| !s.is_hide_set()) {
                if s.get_about().is_none() && s.get_name() != "help" {
                    missing.push(format!("{path} {} (no about)", s.get_name()));
                }
                walk(s, &format!("{path} {}", s.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(
            &<crate::cli::Cli as clap::CommandFactory>::command(),
            "kinglet",
            &mut missing,
        );
        assert!(missing.is_empty(), "arguments without help: {missing:?}");
    }

    #[test]
    fn completion_scripts_name_the_verbs() {
        let mut cmd = <crate::cli::Cli as clap::CommandFactory>::command();
        for shell in [
            clap_complete::Shell::Bash,
            clap_complete::Shell::Zsh,
            clap_complete::Shell::Fish,
        ] {
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut cmd, "kinglet", &mut buf);
            let text = String::from_utf8(buf).unwrap();
            for verb in ["logs", "get", "completion", "version"] {
                assert!(text.contains(verb), "{shell}: {verb}");
            }
            assert!(text.contains("tail"), "{shell}");
        }
    }

    #[test]
    fn man_pages_for_every_visible_verb() {
        let dir = tempfile::tempdir().unwrap();
        let files = man_pages(dir.path()).unwrap();
        let names: Vec<String> = files
            .iter()
            .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        for n in [
            "kinglet.1",
            "kinglet-logs.1",
            "kinglet-get.1",
            "kinglet-completion.1",
        ] {
            assert!(names.contains(&n.to_string()), "{names:?}");
        }
        assert!(
            !names
                .iter()
                .any(|n| n.contains("shim") || n.contains("pod-init")),
            "{names:?}"
        );
        let page = std::fs::read_to_string(dir.path().join("kinglet-logs.1")).unwrap();
        assert!(page.contains(".TH kinglet-logs 1"), "{page}");
        assert!(page.contains("kinglet logs"), "{page}");
        assert!(page.contains("tail"), "{page}");
    }
}
