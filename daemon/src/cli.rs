//! The `kinglet` command line.
//!
//! The helper subcommands (`shim run`, `shim exec`, `pod-init`) are dispatched before any
//! thread or async runtime exists: they fork and call libcontainer, which is only safe in a
//! single-threaded process.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::config::{Config, DaemonFlags};

#[derive(Debug, Parser)]
#[command(
    name = "kinglet",
    version,
    about = "A single-node container runtime serving the Kubernetes CRI"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: serve the CRI on a unix socket.
    Daemon(DaemonFlags),
    /// Check the host: kernel, overlayfs, cgroups, seccomp, namespaces, network, disk, clock,
    /// and who can reach Kinglet's directories; prints pass/WARN/FAIL lines with a fix each and
    /// exits non-zero on any FAIL. Takes the daemon's flags and config.
    Check(DaemonFlags),
    /// Remove every trace of Kinglet (the daemon must be stopped): kill its containers, shims
    /// and pod inits, unmount everything under the run root and root, delete the bridge, the
    /// nftables table, the socket, the run root and the root (state, images, logs). Keeps
    /// /etc/kinglet. Takes the daemon's flags and config to know what to remove.
    Reset {
        #[command(flatten)]
        flags: DaemonFlags,
        /// Do not ask for confirmation.
        #[arg(short = 'y', long)]
        yes: bool,
    },
    /// Manage images in the running daemon.
    Image {
        /// Socket of the daemon.
        #[arg(long, global = true, default_value = "/run/kinglet/kinglet.sock")]
        socket: PathBuf,
        #[command(subcommand)]
        command: ImageCommand,
    },
    /// Create or update the objects of manifests (YAML/JSON files, directories, or - for stdin).
    Apply {
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<PathBuf>,
        #[command(flatten)]
        client: ClientFlags,
    },
    /// Delete the objects of manifests, or one object: `delete pod NAME`.
    Delete {
        #[arg(short = 'f', long = "filename")]
        files: Vec<PathBuf>,
        kind: Option<String>,
        name: Option<String>,
        #[command(flatten)]
        client: ClientFlags,
    },
    /// List objects: pods, configmaps, secrets, deploy, rs, job (several: `deploy,rs`).
    Get {
        kind: String,
        name: Option<String>,
        /// Label selector (`app=web,tier!=db`).
        #[arg(short = 'l', long = "selector")]
        selector: Option<String>,
        /// Every namespace.
        #[arg(short = 'A', long = "all-namespaces")]
        all_namespaces: bool,
        /// wide, yaml or json.
        #[arg(short = 'o', long)]
        output: Option<String>,
        /// Show Secret data instead of redacting it.
        #[arg(long)]
        reveal: bool,
        #[command(flatten)]
        client: ClientFlags,
    },
    /// Set the replicas of a Deployment or ReplicaSet: `scale deploy/NAME --replicas N`.
    Scale {
        target: String,
        name: Option<String>,
        #[arg(long)]
        replicas: i32,
        #[command(flatten)]
        client: ClientFlags,
    },
    /// A Deployment's rollout: `rollout status|restart|undo deploy/NAME`.
    Rollout {
        verb: String,
        target: String,
        name: Option<String>,
        /// undo: the revision to go back to (default: the previous one).
        #[arg(long)]
        to_revision: Option<i64>,
        /// status: how long to wait.
        #[arg(long, default_value = "600")]
        timeout_secs: u64,
        #[command(flatten)]
        client: ClientFlags,
    },
    /// Show a pod in detail, with its recent events.
    Describe {
        kind: String,
        name: String,
        #[command(flatten)]
        client: ClientFlags,
    },
    /// Print a container's log.
    Logs {
        pod: String,
        #[arg(short = 'c', long)]
        container: Option<String>,
        #[arg(short = 'f', long)]
        follow: bool,
        /// The previous run of the container.
        #[arg(short = 'p', long)]
        previous: bool,
        #[command(flatten)]
        client: ClientFlags,
    },
    /// Run a command in a container of a pod.
    Exec {
        pod: String,
        #[arg(short = 'c', long)]
        container: Option<String>,
        /// Pass stdin to the command.
        #[arg(short = 'i', long)]
        stdin: bool,
        /// Run the command on a terminal (with -i: this one, in raw mode).
        #[arg(short = 't', long)]
        tty: bool,
        #[command(flatten)]
        client: ClientFlags,
        #[arg(last = true, required = true)]
        cmd: Vec<String>,
    },
    /// Forward a local port to a port of a pod (LOCAL:REMOTE, or PORT for both).
    PortForward {
        pod: String,
        ports: String,
        #[command(flatten)]
        client: ClientFlags,
    },
    /// (internal) Monitor processes the daemon starts for each container.
    #[command(hide = true)]
    Shim {
        #[command(subcommand)]
        command: kinglet_shim::cli::ShimCommand,
    },
    /// (internal) PID 1 of a pod's shared PID namespace.
    #[command(hide = true, name = "pod-init")]
    PodInit {
        #[arg(long)]
        pin: PathBuf,
    },
}

/// Where the daemon is, and which namespace.
#[derive(Debug, clap::Args, Clone)]
pub struct ClientFlags {
    /// Socket of the daemon.
    #[arg(long, default_value = "/run/kinglet/kinglet.sock")]
    pub socket: PathBuf,
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Import an OCI image layout directory or oci-archive tar into the daemon's store.
    Import {
        path: PathBuf,
        /// Name to tag the image with when the archive carries only a tag.
        #[arg(long)]
        name: Option<String>,
    },
    /// List images.
    Ls,
    /// Pull an image from its registry, showing progress (layers, bytes).
    Pull {
        /// Image reference, e.g. registry.example/team/app:1.0.
        reference: String,
        /// Registry credentials as USER:PASSWORD (default: the daemon's docker config, then
        /// anonymous).
        #[arg(long, value_name = "USER:PASSWORD")]
        creds: Option<String>,
    },
    /// Remove an image by tag, digest or id (refused while a container uses it).
    Rm {
        /// Image tag, name@digest, or id.
        reference: String,
    },
}

fn init_tracing(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Parse the command line and run it.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        // Single-threaded helpers first: no runtime, no threads.
        Command::Shim { command } => {
            kinglet_shim::cli::init_logging();
            let code = kinglet_shim::cli::main(command);
            ExitCode::from(u8::try_from(code).unwrap_or(1))
        }
        Command::PodInit { pin } => kinglet_netns::pod_init_main(&pin),
        Command::Daemon(flags) => {
            init_tracing("info");
            // Before the async runtime starts threads: this edits the environment.
            let notify = crate::notify::Notifier::from_env();
            report(run_async(daemon(flags, notify)))
        }
        Command::Check(flags) => {
            init_tracing("warn");
            match check(flags) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::FAILURE,
                Err(e) => report(Err(e)),
            }
        }
        Command::Reset { flags, yes } => {
            init_tracing("warn");
            report(run_async(reset(flags, yes)))
        }
        Command::Apply { files, client } => client_verb(&client, |ch| async move {
            crate::kubectl::apply(ch, &files).await
        }),
        Command::Delete {
            files,
            kind,
            name,
            client,
        } => {
            let ns = client.namespace.clone();
            client_verb(&client, |ch| async move {
                crate::kubectl::delete(ch, &files, kind.as_deref(), name.as_deref(), &ns).await
            })
        }
        Command::Scale {
            target,
            name,
            replicas,
            client,
        } => {
            let ns = client.namespace.clone();
            client_verb(&client, |ch| async move {
                crate::workloads_cli::scale(ch, &target, name.as_deref(), replicas, &ns).await
            })
        }
        Command::Rollout {
            verb,
            target,
            name,
            to_revision,
            timeout_secs,
            client,
        } => {
            let ns = client.namespace.clone();
            client_verb(&client, |ch| async move {
                let timeout = std::time::Duration::from_secs(timeout_secs);
                crate::workloads_cli::rollout(
                    ch,
                    &verb,
                    &target,
                    name.as_deref(),
                    to_revision,
                    timeout,
                    &ns,
                )
                .await
            })
        }
        Command::Get {
            kind,
            name,
            selector,
            all_namespaces,
            output,
            reveal,
            client,
        } => {
            let ns = client.namespace.clone();
            client_verb(&client, |ch| async move {
                let q = crate::kubectl::GetQuery {
                    kinds: &kind,
                    name: name.as_deref(),
                    selector: selector.as_deref(),
                };
                crate::kubectl::get_many(ch, q, &ns, all_namespaces, output.as_deref(), reveal)
                    .await
            })
        }
        Command::Describe { kind, name, client } => {
            let ns = client.namespace.clone();
            client_verb(&client, |ch| async move {
                crate::kubectl::describe(ch, &kind, &name, &ns).await
            })
        }
        Command::Logs {
            pod,
            container,
            follow,
            previous,
            client,
        } => {
            let ns = client.namespace.clone();
            client_verb(&client, |ch| async move {
                crate::kubectl::logs(ch, &pod, &ns, container.as_deref(), follow, previous).await
            })
        }
        Command::Exec {
            pod,
            container,
            stdin,
            tty,
            client,
            cmd,
        } => {
            init_tracing("warn");
            let ns = client.namespace.clone();
            let r = run_async(async move {
                let ch = connect_to(&client.socket).await?;
                let c = container.as_deref();
                let code = if stdin || tty {
                    crate::stream_cli::exec(ch, &pod, &ns, c, cmd, stdin, tty).await?
                } else {
                    crate::kubectl::exec(ch, &pod, &ns, c, cmd).await?
                };
                std::process::exit(code)
            });
            report(r)
        }
        Command::PortForward { pod, ports, client } => {
            let ns = client.namespace.clone();
            client_verb(&client, |ch| async move {
                crate::stream_cli::port_forward(ch, &pod, &ns, &ports).await
            })
        }
        Command::Image { socket, command } => {
            init_tracing("warn");
            report(run_async(image(socket, command)))
        }
    }
}

async fn connect_to(socket: &std::path::Path) -> anyhow::Result<tonic::transport::Channel> {
    crate::client::connect(socket)
        .await
        .map_err(|e| anyhow::anyhow!(crate::client::explain_connect_error(socket, &e)))
}

/// Run a client verb against the daemon at `client.socket`.
fn client_verb<F, Fut>(client: &ClientFlags, f: F) -> ExitCode
where
    F: FnOnce(tonic::transport::Channel) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    init_tracing("warn");
    let socket = client.socket.clone();
    report(run_async(
        async move { f(connect_to(&socket).await?).await },
    ))
}

fn report(r: anyhow::Result<()>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kinglet: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_async<F: std::future::Future<Output = anyhow::Result<()>>>(f: F) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?
        .block_on(f)
}

/// `kinglet check`: print every finding; `Ok(false)` when one failed.
fn check(flags: DaemonFlags) -> anyhow::Result<bool> {
    let config = Config::load(&flags)?;
    let path = std::env::var("PATH").unwrap_or_default();
    let findings = crate::check::run_all(&crate::check::Host::real(), &config, &path);
    for f in &findings {
        println!("{f}");
    }
    let count = |l| findings.iter().filter(|f| f.level == l).count();
    let (warn, fail) = (
        count(crate::check::Level::Warn),
        count(crate::check::Level::Fail),
    );
    println!(
        "{} checks: {} passed, {warn} warnings, {fail} failed",
        findings.len(),
        findings.len() - warn - fail
    );
    Ok(fail == 0)
}

/// `kinglet reset`: confirm (unless `--yes`), then remove and say what was removed.
async fn reset(flags: DaemonFlags, yes: bool) -> anyhow::Result<()> {
    use std::io::{BufRead, IsTerminal, Write};
    let config = Config::load(&flags)?;
    if !yes {
        let what = format!(
            "This kills every Kinglet container and deletes {}, {}, bridge {} and nftables \
             table ip {}.",
            config.root.display(),
            config.run_root.display(),
            config.bridge,
            config.nft_table
        );
        if !std::io::stdin().is_terminal() {
            anyhow::bail!("{what} Pass --yes to confirm.");
        }
        print!("{what} Continue? [y/N] ");
        std::io::stdout().flush()?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            anyhow::bail!("aborted; nothing was removed");
        }
    }
    let mut n = 0;
    crate::reset::reset(&config, |line| {
        n += usize::from(!line.starts_with("kept "));
        println!("{line}");
    })
    .await?;
    if n == 0 {
        println!("nothing to remove");
    }
    Ok(())
}

async fn daemon(flags: DaemonFlags, notify: crate::notify::Notifier) -> anyhow::Result<()> {
    let config = Config::load(&flags)?;
    crate::server::run(config, notify).await?;
    Ok(())
}

async fn image(socket: PathBuf, command: ImageCommand) -> anyhow::Result<()> {
    use kinglet_proto::admin::admin_client::AdminClient;
    use kinglet_proto::v1::image_service_client::ImageServiceClient;
    let channel = connect_to(&socket).await?;
    match command {
        ImageCommand::Import { path, name } => {
            let path = std::path::absolute(&path)
                .with_context(|| format!("resolve {}", path.display()))?;
            let resp = AdminClient::new(channel)
                .import_image(kinglet_proto::admin::ImportImageRequest {
                    path: path.display().to_string(),
                    name: name.unwrap_or_default(),
                })
                .await
                .map_err(|s| anyhow::anyhow!("import {}: {}", path.display(), s.message()))?
                .into_inner();
            for i in resp.images {
                println!("{}\t{}", i.id, i.repo_tags.join(","));
            }
        }
        ImageCommand::Pull { reference, creds } => {
            pull(channel, &reference, creds.as_deref()).await?;
        }
        ImageCommand::Rm { reference } => {
            let mut client = ImageServiceClient::new(channel);
            let spec = || {
                Some(kinglet_proto::v1::ImageSpec {
                    image: reference.clone(),
                    ..Default::default()
                })
            };
            let found = client
                .image_status(kinglet_proto::v1::ImageStatusRequest {
                    image: spec(),
                    verbose: false,
                })
                .await
                .map_err(|s| anyhow::anyhow!("remove {reference}: {}", s.message()))?
                .into_inner()
                .image;
            let Some(found) = found else {
                anyhow::bail!("remove {reference}: no such image");
            };
            client
                .remove_image(kinglet_proto::v1::RemoveImageRequest { image: spec() })
                .await
                .map_err(|s| anyhow::anyhow!("remove {reference}: {}", s.message()))?;
            println!("{}", found.id);
        }
        ImageCommand::Ls => {
            let resp = ImageServiceClient::new(channel)
                .list_images(kinglet_proto::v1::ListImagesRequest::default())
                .await
                .map_err(|s| anyhow::anyhow!("list images: {}", s.message()))?
                .into_inner();
            println!("{:<50} {:<20} {:>10}", "IMAGE", "ID", "SIZE");
            for i in resp.images {
                let id = i.id.trim_start_matches("sha256:");
                let tag = i
                    .repo_tags
                    .first()
                    .cloned()
                    .unwrap_or_else(|| "<none>".into());
                println!("{:<50} {:<20} {:>10}", tag, &id[..id.len().min(13)], i.size);
            }
        }
    }
    Ok(())
}

/// `kinglet image pull`: PullImage over the CRI while polling the daemon for progress; a live
/// line on a terminal, plain lines (at most one a second, when something changed) otherwise.
async fn pull(
    channel: tonic::transport::Channel,
    reference: &str,
    creds: Option<&str>,
) -> anyhow::Result<()> {
    use std::io::{IsTerminal, Write};

    use kinglet_proto::admin::admin_client::AdminClient;
    use kinglet_proto::v1;
    use kinglet_proto::v1::image_service_client::ImageServiceClient;

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
    let mut images = ImageServiceClient::new(channel.clone());
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
    let mut admin = AdminClient::new(channel);
    let tty = std::io::stdout().is_terminal();
    let mut last_line = String::new();
    let mut tick = tokio::time::interval(Duration::from_millis(if tty { 200 } else { 1000 }));
    let result = loop {
        tokio::select! {
            r = &mut call => break r,
            _ = tick.tick() => {
                let Ok(p) = admin
                    .pull_progress(kinglet_proto::admin::PullProgressRequest {
                        image: reference.to_owned(),
                    })
                    .await
                    .map(|r| r.into_inner())
                else {
                    continue;
                };
                if !p.running || p.layers_total == 0 {
                    continue;
                }
                let line = format!(
                    "{reference}: layers {}/{}, {} / {}",
                    p.layers_done,
                    p.layers_total,
                    human_bytes(p.bytes_done),
                    human_bytes(p.bytes_total)
                );
                if line != last_line {
                    if tty {
                        print!("\r\x1b[2K{line}");
                        let _ = std::io::stdout().flush();
                    } else {
                        println!("{line}");
                    }
                    last_line = line;
                }
            }
        }
    };
    if tty && !last_line.is_empty() {
        println!();
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

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
