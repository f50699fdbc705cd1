//! `kinglet run` and `kinglet attach`, as kubectl's: `run NAME --image=I [-- ARGS]` makes a
//! Pod of one container (labelled `run=NAME`), and with `-i` (or `--attach`) waits for it to
//! run and attaches to it — `run -it --rm --restart=Never debug --image=busybox -- sh` is the
//! Kubernetes docs' way to get a shell in the cluster. With a restart policy of Never or
//! OnFailure, the command's exit code is `run`'s; `--rm` deletes the pod afterwards.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use k8s_openapi::api::core::v1::Pod;
use kinglet_proto::admin;
use kinglet_proto::admin::objects_client::ObjectsClient;
use serde_json::{json, Value};
use tonic::transport::Channel;

use crate::cli::ClientFlags;
use crate::create_cli::GenFlags;

/// `kinglet run`'s arguments.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The pod's name (and its container's).
    pub name: String,
    /// The container's image.
    #[arg(long)]
    pub image: String,
    /// Always (default), OnFailure or Never.
    #[arg(long, default_value = "Always")]
    pub restart: String,
    /// An environment variable, KEY=VALUE (repeatable).
    #[arg(long = "env")]
    pub env: Vec<String>,
    /// The port the container exposes.
    #[arg(long)]
    pub port: Option<i32>,
    /// The pod's labels, `k=v,k2=v2` (default: run=NAME).
    #[arg(short = 'l', long)]
    pub labels: Option<String>,
    /// An annotation, KEY=VALUE (repeatable).
    #[arg(long = "annotations")]
    pub annotations: Vec<String>,
    /// The arguments after -- are the command (else they are the image's command's args).
    #[arg(long)]
    pub command: bool,
    /// Always, IfNotPresent or Never (default: the image's tag decides, as the kubelet's).
    #[arg(long)]
    pub image_pull_policy: Option<String>,
    /// Keep a stdin open in the container and attach this one to it.
    #[arg(short = 'i', long)]
    pub stdin: bool,
    /// Give the container a terminal (needs -i).
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Attach to the container once it runs (default: with -i).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub attach: Option<bool>,
    /// Delete the pod once the attached container ends (needs an attach).
    #[arg(long)]
    pub rm: bool,
    /// Leave the container's stdin open after the first attach ends (default: it is closed).
    #[arg(long)]
    pub leave_stdin_open: bool,
    /// Run the container privileged.
    #[arg(long)]
    pub privileged: bool,
    /// How long to wait for the pod to run before attaching (e.g. 1m, 30s).
    #[arg(long, default_value = "1m")]
    pub pod_running_timeout: String,
    /// Print nothing but the container's output.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    #[command(flatten)]
    pub flags: GenFlags,
    /// Socket of the daemon.
    #[arg(long, default_value = "/run/kinglet/kinglet.sock")]
    pub socket: std::path::PathBuf,
    /// The pod's namespace (default: `default`).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// The command's arguments (with --command: the command), after `--`.
    #[arg(last = true)]
    pub args: Vec<String>,
}

impl RunArgs {
    fn ns(&self) -> &str {
        self.namespace
            .as_deref()
            .unwrap_or(kinglet_manifest::DEFAULT_NAMESPACE)
    }

    /// Whether `run` attaches: `--attach`, else `-i`.
    fn attaches(&self) -> bool {
        self.attach.unwrap_or(self.stdin)
    }
}

/// `kinglet attach`'s arguments.
#[derive(Debug, clap::Args)]
pub struct AttachArgs {
    /// The pod (or TYPE/NAME, as exec takes it).
    pub pod: String,
    /// Container (default: as for logs).
    #[arg(short = 'c', long)]
    pub container: Option<String>,
    /// Pass this stdin to the container's (it must have `stdin: true`).
    #[arg(short = 'i', long)]
    pub stdin: bool,
    /// The container's terminal (it must have `tty: true`).
    #[arg(short = 't', long)]
    pub tty: bool,
    #[command(flatten)]
    pub client: ClientFlags,
}

/// Check `args` as kubectl does and build the Pod `run` creates.
pub fn pod_for(args: &RunArgs) -> anyhow::Result<Value> {
    if !matches!(args.restart.as_str(), "Always" | "OnFailure" | "Never") {
        bail!(
            "invalid restart policy: {} (Always, OnFailure or Never)",
            args.restart
        );
    }
    if args.tty && !args.stdin {
        bail!("-i/--stdin is required for containers with -t/--tty=true");
    }
    if args.rm && !args.attaches() {
        bail!("--rm should only be used for attached containers");
    }
    let labels = match &args.labels {
        Some(l) => pairs(l.split(',').map(str::to_owned), "--labels")?,
        None => json!({"run": args.name}),
    };
    let mut c = json!({"name": args.name, "image": args.image});
    if !args.args.is_empty() {
        c[if args.command { "command" } else { "args" }] = json!(args.args);
    }
    if !args.env.is_empty() {
        let env = pairs(args.env.iter().cloned(), "--env")?;
        let env = env.as_object().into_iter().flatten();
        c["env"] = env
            .map(|(k, v)| json!({"name": k, "value": v}))
            .collect::<Vec<_>>()
            .into();
    }
    if let Some(p) = args.port {
        c["ports"] = json!([{ "containerPort": p }]);
    }
    if let Some(p) = &args.image_pull_policy {
        c["imagePullPolicy"] = json!(p);
    }
    if args.stdin {
        c["stdin"] = json!(true);
        c["stdinOnce"] = json!(!args.leave_stdin_open);
    }
    if args.tty {
        c["tty"] = json!(true);
    }
    if args.privileged {
        c["securityContext"] = json!({"privileged": true});
    }
    let mut metadata = json!({"name": args.name, "labels": labels});
    if let Some(ns) = &args.namespace {
        metadata["namespace"] = json!(ns);
    }
    if !args.annotations.is_empty() {
        metadata["annotations"] = pairs(args.annotations.iter().cloned(), "--annotations")?;
    }
    Ok(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": {
            "containers": [c],
            "restartPolicy": args.restart,
            "dnsPolicy": "ClusterFirst",
        },
    }))
}

/// `K=V` items as a JSON object; `flag` names them in errors.
fn pairs(items: impl Iterator<Item = String>, flag: &str) -> anyhow::Result<Value> {
    let mut out = serde_json::Map::new();
    for item in items.filter(|i| !i.is_empty()) {
        let Some((k, v)) = item.split_once('=') else {
            bail!("{flag} {item:?}: expected KEY=VALUE");
        };
        if k.is_empty() {
            bail!("{flag} {item:?}: the key is empty");
        }
        out.insert(k.to_owned(), json!(v));
    }
    Ok(Value::Object(out))
}

/// Run `kinglet run`; the process's exit code.
pub fn run_verb(args: RunArgs) -> ExitCode {
    let pod = match pod_for(&args) {
        Ok(p) => p,
        Err(e) => return crate::cli::report(Err(e)),
    };
    let dry = match args.flags.is_dry_run() {
        Ok(d) => d,
        Err(e) => return crate::cli::report(Err(e)),
    };
    if dry {
        let out = args.flags.output.as_deref();
        return crate::cli::report(crate::create_cli::print_dry_run(&pod, out));
    }
    if args.flags.output.is_some() && args.attaches() {
        return crate::cli::report(Err(anyhow::anyhow!(
            "-o is for --dry-run=client or a run that does not attach"
        )));
    }
    let client = ClientFlags {
        socket: args.socket.clone(),
        namespace: args.ns().to_owned(),
    };
    crate::cli::client_verb(&client, |ch| async move {
        let code = run(ch, &args, pod).await?;
        if code != 0 {
            std::process::exit(code);
        }
        Ok(())
    })
}

/// Create the pod, then (attaching) wait for it, attach, wait for its end and remove it.
async fn run(ch: Channel, args: &RunArgs, pod: Value) -> anyhow::Result<i32> {
    let mut c = ObjectsClient::new(ch.clone());
    let lines = c
        .apply(admin::ApplyRequest {
            source: "run".into(),
            content: pod.to_string(),
            create_only: true,
            ..Default::default()
        })
        .await
        .map_err(crate::kubectl::status_err("run"))?
        .into_inner()
        .results;
    if let Some(e) = lines.iter().find_map(|l| l.strip_prefix("error: ")) {
        eprintln!("{e}");
        return Err(crate::podref::Reported.into());
    }
    if !args.attaches() {
        if !args.quiet {
            println!("pod/{} created", args.name);
        }
        return Ok(0);
    }
    let (name, ns) = (args.name.as_str(), args.ns());
    let timeout =
        crate::logs_cli::parse_since(&args.pod_running_timeout).context("--pod-running-timeout")?;
    let p = wait_for(&ch, name, ns, timeout, |ph| ph != "Pending").await?;
    if matches!(phase(&p), "Succeeded" | "Failed") {
        // It ended before an attach could see its output: kubectl prints its log instead.
        let opts = crate::logs_cli::LogOptions::default();
        crate::logs_cli::logs(ch.clone(), name, ns, None, &opts).await?;
    } else {
        if args.tty && !args.quiet {
            eprintln!("If you don't see a command prompt, try pressing enter.");
        }
        crate::stream_cli::attach(ch.clone(), name, ns, None, args.stdin, args.tty).await?;
    }
    let exit_code_counts =
        !args.leave_stdin_open && matches!(args.restart.as_str(), "Never" | "OnFailure");
    let ended = if exit_code_counts {
        let forever = Duration::from_secs(u64::MAX / 4);
        let done = |ph: &str| matches!(ph, "Succeeded" | "Failed");
        Some(wait_for(&ch, name, ns, forever, done).await?)
    } else {
        None
    };
    if args.rm {
        let target = crate::delete_cli::DeleteTarget {
            files: &[],
            objects: &["pod".into(), name.into()],
            all: false,
            selector: None,
            cascade: "background",
        };
        crate::delete_cli::delete(ch, target, ns).await?;
    }
    Ok(ended.map_or(0, |p| exit_code(&p)))
}

fn phase(p: &Pod) -> &str {
    let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
    phase.unwrap_or("Pending")
}

/// Poll pod `ns/name` until its phase passes `done`, for at most `timeout`.
async fn wait_for(
    ch: &Channel,
    name: &str,
    ns: &str,
    timeout: Duration,
    done: impl Fn(&str) -> bool,
) -> anyhow::Result<Pod> {
    let deadline = Instant::now() + timeout;
    loop {
        let p = crate::podref::pod_object(ch.clone(), name, ns).await;
        let p = p.with_context(|| format!("pod {ns}/{name} is gone"))?;
        if done(phase(&p)) {
            return Ok(p);
        }
        if Instant::now() >= deadline {
            bail!(
                "timed out waiting for pod {ns}/{name} to run (--pod-running-timeout): {}",
                phase(&p)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A finished pod's exit code: 0 when it succeeded, else its container's (1 if none is told).
fn exit_code(p: &Pod) -> i32 {
    if phase(p) == "Succeeded" {
        return 0;
    }
    let statuses = p
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref());
    statuses
        .into_iter()
        .flatten()
        .find_map(|c| c.state.as_ref()?.terminated.as_ref())
        .map_or(1, |t| if t.exit_code == 0 { 1 } else { t.exit_code })
}

/// Run `kinglet attach`.
pub fn attach_verb(args: AttachArgs) -> ExitCode {
    let client = args.client.clone();
    crate::cli::client_verb(&client, |ch| async move {
        let ns = &args.client.namespace;
        let pod = crate::pod_for::resolve(ch.clone(), &args.pod, ns).await?;
        let c = args.container.as_deref();
        crate::stream_cli::attach(ch, &pod, ns, c, args.stdin, args.tty).await
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cmd {
        #[command(flatten)]
        run: RunArgs,
    }

    fn args(line: &[&str]) -> RunArgs {
        Cmd::try_parse_from([&["run"], line].concat()).unwrap().run
    }

    #[test]
    fn a_pod_as_kubectl_run_builds_it() {
        let p = pod_for(&args(&[
            "web",
            "--image=nginx:1.25",
            "--port=80",
            "--env=A=1",
            "--env=B=x=y",
            "--",
            "-g",
            "daemon off;",
        ]))
        .unwrap();
        assert_eq!(p["metadata"]["labels"], json!({"run": "web"}));
        assert!(p["metadata"].get("namespace").is_none());
        assert_eq!(p["spec"]["restartPolicy"], "Always");
        let c = &p["spec"]["containers"][0];
        assert_eq!(c["name"], "web");
        assert_eq!(c["args"], json!(["-g", "daemon off;"]));
        assert!(c.get("command").is_none());
        assert_eq!(c["ports"][0]["containerPort"], 80);
        assert_eq!(c["env"][1], json!({"name": "B", "value": "x=y"}));
        assert!(c.get("stdin").is_none());
        let (objs, errs) = kinglet_manifest::parse_each("run", &p.to_string());
        assert!(errs.is_empty() && objs.len() == 1, "{errs:?}");
    }

    #[test]
    fn interactive_runs_keep_stdin_once_and_a_terminal() {
        let a = args(&[
            "-it",
            "--rm",
            "--restart=Never",
            "debug",
            "--image=busybox",
            "--command",
            "--",
            "sh",
        ]);
        assert!(a.attaches());
        let p = pod_for(&a).unwrap();
        let c = &p["spec"]["containers"][0];
        assert_eq!(c["command"], json!(["sh"]));
        assert_eq!(
            (&c["stdin"], &c["stdinOnce"], &c["tty"]),
            (&json!(true), &json!(true), &json!(true))
        );
        assert_eq!(p["spec"]["restartPolicy"], "Never");
    }

    #[test]
    fn what_kubectl_refuses_is_refused() {
        let e = |line: &[&str]| pod_for(&args(line)).unwrap_err().to_string();
        assert!(e(&["x", "--image=i", "-t"]).contains("-i/--stdin is required"));
        assert!(e(&["x", "--image=i", "--rm"]).contains("--rm should only be used"));
        assert!(e(&["x", "--image=i", "--restart=Sometimes"]).contains("invalid restart policy"));
        assert!(e(&["x", "--image=i", "--env=NOVALUE"]).contains("KEY=VALUE"));
        let a = args(&["x", "--image=i", "-i", "--attach=false", "-l", "a=b,c=d"]);
        assert!(!a.attaches());
        assert_eq!(
            pod_for(&a).unwrap()["metadata"]["labels"],
            json!({"a": "b", "c": "d"})
        );
    }
}
