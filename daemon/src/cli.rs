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
    Daemon {
        #[command(flatten)]
        flags: DaemonFlags,
        /// Log as text on stderr, or to journald with fields (POD, CONTAINER, ...); auto:
        /// journald when stderr is the journal (JOURNAL_STREAM).
        #[arg(long, value_enum, default_value = "auto")]
        log_format: crate::logging::LogFormat,
    },
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
    /// Sealed (age-encrypted) manifests: keygen, recipient, seal.
    Secret {
        #[command(subcommand)]
        command: crate::secret_cli::SecretCommand,
    },
    /// Create objects as kubectl does: from manifests (`-f`; an existing object is an error,
    /// never updated) or built by a generator: `create deployment web --image=nginx`,
    /// `create configmap|secret generic NAME --from-literal=k=v --from-file=F`,
    /// `create secret docker-registry NAME --docker-server=S --docker-username=U
    /// --docker-password=P`, `create namespace|job|cronjob ...` (`--dry-run=client -o yaml`).
    Create(crate::create_cli::CreateArgs),
    /// A Service for a deployment, replicaset, statefulset, daemonset, pod or service, as
    /// kubectl's expose: `expose deployment web --port 80 [--target-port 8080] [--type NodePort]`.
    Expose(crate::expose_cli::ExposeArgs),
    /// Run a pod of one container, as kubectl's run: `run web --image=nginx --port=80`, or
    /// interactively `run -it --rm --restart=Never debug --image=busybox -- sh` (attached;
    /// the exit code is the command's).
    Run(crate::run_cli::RunArgs),
    /// Attach to a running container's output (and with -i its stdin, -t its terminal).
    Attach(crate::run_cli::AttachArgs),
    /// Set or remove labels: `label pods web env=prod`, `label deploy/web tier-`
    /// (`--overwrite` to change a value).
    Label(crate::label_cli::MetaArgs),
    /// Set or remove annotations: `annotate pod web note='a b'`, `annotate pod web note-`.
    Annotate(crate::label_cli::MetaArgs),
    /// Wait for objects to meet a condition: `wait --for=condition=Ready pod/web`,
    /// `--for=jsonpath='{.status.phase}'=Running`, `--for=delete` (`--timeout`, default 30s).
    Wait(crate::wait_cli::WaitArgs),
    /// Change objects: `set image deployment/web nginx=nginx:1.25`.
    Set {
        #[command(subcommand)]
        command: crate::label_cli::SetCommand,
        /// Socket of the daemon.
        #[arg(long, global = true, default_value = "/run/kinglet/kinglet.sock")]
        socket: PathBuf,
        /// Namespace of the objects.
        #[arg(short = 'n', long, global = true, default_value = "default")]
        namespace: String,
    },
    /// Create or update the objects of manifests (YAML/JSON files, directories, or - for stdin).
    Apply {
        /// Manifest files, directories (their .yaml/.yml/.json files) or - for stdin.
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<PathBuf>,
        /// Socket of the daemon.
        #[arg(long, default_value = "/run/kinglet/kinglet.sock")]
        socket: PathBuf,
        /// The namespace of objects that name none; an object naming another one is refused
        /// (default: as the documents say, else `default`).
        #[arg(short = 'n', long)]
        namespace: Option<String>,
    },
    /// Delete the objects of manifests, or objects by name: `delete pod NAME...`,
    /// `delete pod/a svc/b`, `delete pods,svc -l app=web`.
    Delete {
        /// Delete the objects of these manifest files or directories (- for stdin).
        #[arg(short = 'f', long = "filename")]
        files: Vec<PathBuf>,
        /// KIND (pod, configmap, secret, deploy, rs, job, svc, ...; several as `pod,svc`) then
        /// NAMEs, or KIND/NAME...
        #[arg(value_name = "KIND NAME|KIND/NAME")]
        objects: Vec<String>,
        /// Every object of the kind in the namespace.
        #[arg(long)]
        all: bool,
        /// The objects of the kind whose labels match (`app=web,tier!=db`).
        #[arg(short = 'l', long = "selector")]
        selector: Option<String>,
        /// What happens to owned objects: background (deleted after), orphan (kept,
        /// ownerReferences removed) or foreground (deleted first; waits until the owner is gone).
        #[arg(long, default_value = "background")]
        cascade: String,
        #[command(flatten)]
        client: ClientFlags,
    },
    /// List objects: pods, configmaps, secrets, deploy, rs, job (several: `deploy,rs`).
    Get(GetArgs),
    /// Set the replicas of a Deployment or ReplicaSet: `scale deploy/NAME --replicas N`.
    Scale {
        /// deploy/NAME or rs/NAME (or KIND, then NAME).
        target: String,
        /// Name, when TARGET is a kind alone.
        name: Option<String>,
        /// The number of replicas wanted.
        #[arg(long)]
        replicas: i32,
        #[command(flatten)]
        client: ClientFlags,
    },
    /// A Deployment's rollout: `rollout status|restart|undo|pause|resume|history deploy/NAME`.
    /// (A StatefulSet's: `rollout status sts/NAME`.)
    Rollout {
        /// status, restart or undo.
        verb: String,
        /// deploy/NAME (or deploy, then NAME).
        target: String,
        /// Name, when TARGET is a kind alone.
        name: Option<String>,
        /// undo: the revision to go back to (default: the previous one); history
        /// (`--revision`): the revision to show.
        #[arg(long, visible_alias = "revision")]
        to_revision: Option<i64>,
        /// status: how long to wait.
        #[arg(long, default_value = "600")]
        timeout_secs: u64,
        #[command(flatten)]
        client: ClientFlags,
    },
    /// Show a pod in detail, with its recent events.
    Describe {
        /// Kind: pod, deploy, rs, job, svc, configmap, secret.
        kind: String,
        /// Name of the object.
        name: String,
        #[command(flatten)]
        client: ClientFlags,
    },
    /// Print a container's log.
    Logs {
        /// Name of the pod.
        pod: String,
        /// Container (default: the pod's kubectl.kubernetes.io/default-container annotation,
        /// else its first container).
        #[arg(short = 'c', long)]
        container: Option<String>,
        /// Keep printing new lines until the container exits.
        #[arg(short = 'f', long)]
        follow: bool,
        /// Only the last N lines (-1: all).
        #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
        tail: i64,
        /// Only lines newer than this duration, e.g. 30s, 5m, 1h.
        #[arg(long, value_parser = crate::logs_cli::parse_since)]
        since: Option<Duration>,
        /// Prefix each line with its RFC 3339 timestamp.
        #[arg(long)]
        timestamps: bool,
        /// The previous run of the container.
        #[arg(short = 'p', long)]
        previous: bool,
        #[command(flatten)]
        client: ClientFlags,
    },
    /// Run a command in a container of a pod.
    Exec {
        /// Name of the pod.
        pod: String,
        /// Container (default: as for logs).
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
        /// The command and its arguments, after `--`.
        #[arg(last = true, required = true)]
        cmd: Vec<String>,
    },
    /// Forward a local port to a port of a pod, or of a Service (`svc/NAME`: a ready pod
    /// behind it, the Service port mapped to its targetPort) (LOCAL:REMOTE, or PORT for both).
    PortForward {
        /// Name of the pod.
        pod: String,
        /// LOCAL:REMOTE, or PORT for both (LOCAL 0: any free port).
        ports: String,
        #[command(flatten)]
        client: ClientFlags,
    },
    /// Print the client's version and the daemon's.
    Version {
        /// Socket of the daemon.
        #[arg(long, default_value = "/run/kinglet/kinglet.sock")]
        socket: PathBuf,
    },
    /// Print a shell completion script: `source <(kinglet completion bash)`.
    Completion {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Write the man pages (kinglet.1 and one per verb) into DIR.
    #[command(hide = true)]
    Man {
        /// Directory to write the pages into.
        dir: PathBuf,
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

/// `kinglet get`'s arguments.
#[derive(Debug, clap::Args)]
pub struct GetArgs {
    /// Kind: pods, configmaps, secrets, deploy, rs, job, svc, endpointslices, all (pods,
    /// svc, deploy, rs, job); several as `deploy,rs`; or KIND/NAME.
    pub kind: String,
    /// Only the objects of these names (or, after KIND/NAME, more KIND/NAMEs).
    pub names: Vec<String>,
    /// Label selector (`app=web,tier!=db`).
    #[arg(short = 'l', long = "selector")]
    pub selector: Option<String>,
    /// Every namespace.
    #[arg(short = 'A', long = "all-namespaces")]
    pub all_namespaces: bool,
    /// Output: wide, yaml, json, name, jsonpath=TEMPLATE (kubectl's templates, e.g.
    /// `jsonpath={.items[*].metadata.name}`) or custom-columns=HEADER:PATH,... (e.g.
    /// `custom-columns=NAME:.metadata.name,IP:.status.podIP`).
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    /// Show Secret data instead of redacting it.
    #[arg(long)]
    pub reveal: bool,
    /// A LABELS column (tables only), as kubectl's `--show-labels`.
    #[arg(long)]
    pub show_labels: bool,
    /// After listing, print a row for each change (added, changed, deleted) until interrupted.
    #[arg(short = 'w', long)]
    pub watch: bool,
    /// Print only the changes, without listing first.
    #[arg(long)]
    pub watch_only: bool,
    #[command(flatten)]
    pub client: ClientFlags,
}

/// Where the daemon is, and which namespace.
#[derive(Debug, clap::Args, Clone)]
pub struct ClientFlags {
    /// Socket of the daemon.
    #[arg(long, default_value = "/run/kinglet/kinglet.sock")]
    pub socket: PathBuf,
    /// Namespace of the objects.
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Import an OCI image layout directory or oci-archive tar into the daemon's store.
    Import {
        /// OCI image layout directory or oci-archive tar file.
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
        Command::Daemon { flags, log_format } => {
            crate::logging::init(log_format, "info");
            // Before the async runtime starts threads: this edits the environment.
            let notify = crate::notify::Notifier::from_env();
            crate::activation::init_from_env();
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
        Command::Version { socket } => {
            init_tracing("warn");
            report(run_client(
                async move { crate::ops_cli::version(&socket).await },
            ))
        }
        Command::Completion { shell } => report(crate::ops_cli::completion(shell)),
        Command::Man { dir } => report(crate::ops_cli::man_pages(&dir).map(|files| {
            for f in files {
                println!("{}", f.display());
            }
        })),
        Command::Image { socket, command } => {
            init_tracing("warn");
            report(run_client(image(socket, command)))
        }
        Command::Secret { command } => report(crate::secret_cli::run(command)),
        verb => kubectl_verb(verb),
    }
}

/// The kubectl-shaped verbs against a running daemon.
fn kubectl_verb(command: Command) -> ExitCode {
    let command = match crate::edit_verbs::dispatch(command) {
        Ok(code) => return code,
        Err(other) => *other,
    };
    match command {
        Command::Create(args) => create_verb(args),
        Command::Expose(args) => expose_verb(args),
        Command::Delete {
            files,
            objects,
            all,
            selector,
            cascade,
            client,
        } => {
            let ns = client.namespace.clone();
            client_verb(&client, |ch| async move {
                let target = crate::delete_cli::DeleteTarget {
                    files: &files,
                    objects: &objects,
                    all,
                    selector: selector.as_deref(),
                    cascade: &cascade,
                };
                crate::delete_cli::delete(ch, target, &ns).await
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
            let timeout = Duration::from_secs(timeout_secs);
            client_verb(&client, |ch| async move {
                let name = name.as_deref();
                let rollout = crate::workloads_cli::rollout;
                rollout(ch, &verb, &target, name, to_revision, timeout, &ns).await
            })
        }
        Command::Get(args) => get_verb(args),
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
            tail,
            since,
            timestamps,
            previous,
            client,
        } => {
            let ns = client.namespace.clone();
            let opts = crate::logs_cli::LogOptions {
                tail: Some(tail),
                since,
                timestamps,
                follow,
                previous,
            };
            client_verb(&client, |ch| async move {
                let pod = crate::pod_for::resolve(ch.clone(), &pod, &ns).await?;
                crate::logs_cli::logs(ch, &pod, &ns, container.as_deref(), &opts).await
            })
        }
        Command::Exec {
            pod,
            container,
            stdin,
            tty,
            client,
            cmd,
        } => exec_verb(pod, container, (stdin, tty), client, cmd),
        Command::PortForward { pod, ports, client } => port_forward_verb(pod, ports, client),
        other => unreachable!("not a kubectl verb: {other:?}"),
    }
}

/// `kinglet port-forward POD|svc/NAME PORTS`.
fn port_forward_verb(pod: String, ports: String, client: ClientFlags) -> ExitCode {
    let ns = client.namespace.clone();
    client_verb(&client, |ch| async move {
        match crate::svc_forward::service_target(&pod) {
            Some(svc) => crate::svc_forward::port_forward(ch, svc, &ns, &ports).await,
            None => {
                let pod = pod.strip_prefix("pod/").unwrap_or(&pod);
                crate::stream_cli::port_forward(ch, pod, &ns, &ports).await
            }
        }
    })
}

/// `kinglet get`.
fn get_verb(args: GetArgs) -> ExitCode {
    let ns = args.client.namespace.clone();
    client_verb(&args.client, |ch| async move {
        let print = crate::kubectl::Printing {
            output: args.output.as_deref(),
            all: args.all_namespaces,
            reveal: args.reveal,
            labels: args.show_labels,
        };
        if crate::get_named::names_several(&args.kind, &args.names) {
            anyhow::ensure!(
                !(args.watch || args.watch_only || args.all_namespaces || args.selector.is_some()),
                "-w, -A and -l take one KIND (and at most one NAME)"
            );
            let (kind, names) = (&args.kind, &args.names);
            return crate::get_named::get_named(ch, kind, names, &ns, print).await;
        }
        let q = crate::kubectl::GetQuery {
            kinds: &args.kind,
            name: args.names.first().map(String::as_str),
            selector: args.selector.as_deref(),
        };
        if args.watch || args.watch_only {
            let opts = crate::watch_cli::WatchOptions {
                print,
                watch_only: args.watch_only,
            };
            return crate::watch_cli::watch(ch, q, &ns, &opts).await;
        }
        crate::kubectl::get_many(ch, q, &ns, print).await
    })
}

/// `kinglet create`: a generator's `--dry-run=client` needs no daemon.
fn create_verb(args: crate::create_cli::CreateArgs) -> ExitCode {
    if !crate::create_cli::needs_daemon(&args) {
        return report(crate::create_cli::dry_run_offline(args));
    }
    let client = args.client();
    client_verb(&client, |ch| crate::create_cli::create(ch, args))
}

fn expose_verb(args: crate::expose_cli::ExposeArgs) -> ExitCode {
    let client = args.client.clone();
    client_verb(&client, |ch| crate::expose_cli::expose(ch, args))
}

/// `kinglet exec`: through the streaming server with `-i`/`-t`, else ExecSync.
fn exec_verb(
    pod: String,
    container: Option<String>,
    (stdin, tty): (bool, bool),
    client: ClientFlags,
    cmd: Vec<String>,
) -> ExitCode {
    init_tracing("warn");
    let ns = client.namespace.clone();
    let r = run_client(async move {
        let ch = connect_to(&client.socket).await?;
        let pod = crate::pod_for::resolve(ch.clone(), &pod, &ns).await?;
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

pub(crate) async fn connect_to(
    socket: &std::path::Path,
) -> anyhow::Result<tonic::transport::Channel> {
    crate::client::connect(socket)
        .await
        .map_err(|e| anyhow::anyhow!(crate::client::explain_connect_error(socket, &e)))
}

/// Run a client verb against the daemon at `client.socket`.
pub(crate) fn client_verb<F, Fut>(client: &ClientFlags, f: F) -> ExitCode
where
    F: FnOnce(tonic::transport::Channel) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    init_tracing("warn");
    let socket = client.socket.clone();
    report(run_client(
        async move { f(connect_to(&socket).await?).await },
    ))
}

pub(crate) fn report(r: anyhow::Result<()>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        // kubectl's own words, as kubectl prints them.
        Err(e) if e.is::<crate::podref::Reported>() => ExitCode::FAILURE,
        Err(e) if e.is::<crate::podref::NotFound>() => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("kinglet: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A client verb's runtime: one thread (no worker pool to start for one or two calls).
fn run_client<F: std::future::Future<Output = anyhow::Result<()>>>(f: F) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?
        .block_on(f)
}

/// The daemon's (and `reset`'s) runtime: worker threads, a bounded blocking pool and capped
/// allocator arenas (see `crate::heap`).
fn run_async<F: std::future::Future<Output = anyhow::Result<()>>>(f: F) -> anyhow::Result<()> {
    crate::heap::limit_arenas();
    tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads(crate::heap::blocking_threads())
        .thread_keep_alive(crate::heap::BLOCKING_KEEP_ALIVE)
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
    let config_file = flags.config.clone();
    let config = Config::load(&flags)?;
    crate::trust::refuse_untrusted_inputs(&config, config_file.as_deref())?;
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
            crate::ops_cli::pull(channel, &reference, creds.as_deref()).await?;
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
        ImageCommand::Ls => crate::ops_cli::image_ls(channel).await?,
    }
    Ok(())
}
