//! `kinglet create`: kubectl's create verb. `create -f FILE` sends manifests as `apply` does but
//! refuses objects that exist (kubectl's AlreadyExists error; nothing is updated); the
//! generators — `create namespace|configmap|secret generic|secret docker-registry|secret tls|
//! deployment|job|cronjob NAME ...` — build the object kubectl builds (same names, labels and
//! defaults) and create it, or print it with `--dry-run=client [-o yaml|json|name]`.
//!
//! The objects are built here, client-side, as kubectl does; the daemon only stores them.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use base64::Engine;
use serde_json::{json, Map, Value};
use tonic::transport::Channel;

use crate::cli::ClientFlags;
use kinglet_proto::admin::objects_client::ObjectsClient;

/// `kinglet create`'s arguments: manifests, or one generator.
#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// Manifest files, directories (their .yaml/.yml/.json files) or - for stdin.
    #[arg(short = 'f', long = "filename")]
    pub files: Vec<PathBuf>,
    #[command(subcommand)]
    pub what: Option<Generator>,
    /// Socket of the daemon.
    #[arg(long, global = true, default_value = "/run/kinglet/kinglet.sock")]
    pub socket: PathBuf,
    /// Namespace of the objects (default: `default`).
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
}

impl CreateArgs {
    /// The daemon's socket and the namespace (given before or after the generator).
    pub fn client(&self) -> ClientFlags {
        ClientFlags {
            socket: self.socket.clone(),
            namespace: self.ns().to_owned(),
        }
    }

    /// The objects' namespace: `-n`, else `default`.
    fn ns(&self) -> &str {
        self.namespace
            .as_deref()
            .unwrap_or(kinglet_manifest::DEFAULT_NAMESPACE)
    }

    /// What `--dry-run=client` prints of `obj`: as kubectl, no namespace unless `-n` named it.
    fn shown(&self, mut obj: Value) -> Value {
        if self.namespace.is_none() {
            if let Some(m) = obj["metadata"].as_object_mut() {
                m.remove("namespace");
            }
        }
        obj
    }
}

/// What kubectl's `--dry-run` and `-o` give every generator.
#[derive(Debug, Clone, clap::Args)]
pub struct GenFlags {
    /// `client`: print the object instead of creating it (`none`: create it).
    #[arg(long, num_args = 0..=1, default_missing_value = "client")]
    pub dry_run: Option<String>,
    /// With --dry-run: yaml, json or name (default: the `created (dry run)` line).
    #[arg(short = 'o', long)]
    pub output: Option<String>,
}

impl GenFlags {
    /// `--dry-run=client` (print, do not create); `none` or no flag: create.
    pub(crate) fn is_dry_run(&self) -> anyhow::Result<bool> {
        match self.dry_run.as_deref() {
            None | Some("none") => Ok(false),
            Some("client") => Ok(true),
            Some(other) => {
                bail!("--dry-run={other}: Kinglet has client (print the object) and none")
            }
        }
    }
}

/// The objects `create` can build, as kubectl's generators.
#[derive(Debug, clap::Subcommand)]
pub enum Generator {
    /// A Namespace.
    #[command(alias = "ns")]
    Namespace {
        /// The object's name.
        name: String,
        #[command(flatten)]
        flags: GenFlags,
    },
    /// A ConfigMap from literals, files (a directory: each file in it) and env files.
    #[command(alias = "cm")]
    Configmap {
        /// The object's name.
        name: String,
        #[command(flatten)]
        sources: Sources,
        #[command(flatten)]
        flags: GenFlags,
    },
    /// A Secret: `generic`, `docker-registry` or `tls`.
    Secret {
        #[command(subcommand)]
        kind: SecretKind,
    },
    /// A Deployment running IMAGE (each --image one container), labelled app=NAME.
    #[command(alias = "deploy")]
    Deployment {
        /// The object's name.
        name: String,
        /// A container's image (given again: one more container).
        #[arg(long, required = true)]
        image: Vec<String>,
        /// How many pods.
        #[arg(short = 'r', long, default_value_t = 1)]
        replicas: i32,
        /// The container port to declare.
        #[arg(long)]
        port: Option<i32>,
        #[command(flatten)]
        flags: GenFlags,
        /// The container's command (after --).
        #[arg(last = true)]
        command: Vec<String>,
    },
    /// A Job running IMAGE, or one made from a CronJob's template (--from=cronjob/NAME).
    Job {
        /// The object's name.
        name: String,
        /// The container's image.
        #[arg(long, conflicts_with = "from")]
        image: Option<String>,
        /// cronjob/NAME: a manual run of that CronJob's job template.
        #[arg(long)]
        from: Option<String>,
        #[command(flatten)]
        flags: GenFlags,
        /// The container's command (after --).
        #[arg(last = true)]
        command: Vec<String>,
    },
    /// A CronJob running IMAGE on SCHEDULE.
    #[command(alias = "cj")]
    Cronjob {
        /// The object's name.
        name: String,
        /// The container's image.
        #[arg(long, required = true)]
        image: String,
        /// The cron schedule (`*/5 * * * *`, `@hourly`).
        #[arg(long, required = true)]
        schedule: String,
        /// The pods' restartPolicy: OnFailure (default) or Never.
        #[arg(long, default_value = "OnFailure")]
        restart: String,
        #[command(flatten)]
        flags: GenFlags,
        /// The container's command (after --).
        #[arg(last = true)]
        command: Vec<String>,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum SecretKind {
    /// From literals, files and env files, as a ConfigMap.
    Generic {
        /// The object's name.
        name: String,
        #[command(flatten)]
        sources: Sources,
        /// The Secret's type.
        #[arg(long = "type", default_value = "Opaque")]
        kind: String,
        #[command(flatten)]
        flags: GenFlags,
    },
    /// Registry credentials for imagePullSecrets (type kubernetes.io/dockerconfigjson).
    DockerRegistry {
        /// The object's name.
        name: String,
        /// The registry (host[:port] or URL) the credentials are for.
        #[arg(long, default_value = "https://index.docker.io/v1/")]
        docker_server: String,
        /// The registry user.
        #[arg(long, required = true)]
        docker_username: String,
        /// The registry password or token.
        #[arg(long, required = true)]
        docker_password: String,
        /// The user's email, kept in the config.
        #[arg(long)]
        docker_email: Option<String>,
        #[command(flatten)]
        flags: GenFlags,
    },
    /// A certificate and its key (type kubernetes.io/tls).
    Tls {
        /// The object's name.
        name: String,
        /// The PEM certificate (chain) file.
        #[arg(long, required = true)]
        cert: PathBuf,
        /// The PEM private key file.
        #[arg(long, required = true)]
        key: PathBuf,
        #[command(flatten)]
        flags: GenFlags,
    },
}

/// A ConfigMap's or Secret's keys, as kubectl takes them.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Sources {
    /// KEY=VALUE.
    #[arg(long)]
    pub from_literal: Vec<String>,
    /// [KEY=]FILE, or a directory (a key per regular file in it).
    #[arg(long)]
    pub from_file: Vec<String>,
    /// A file of KEY=VALUE lines (# comments and blank lines skipped).
    #[arg(long)]
    pub from_env_file: Vec<PathBuf>,
}

/// Run `kinglet create`.
pub async fn create(ch: Channel, args: CreateArgs) -> anyhow::Result<()> {
    let mut c = ObjectsClient::new(ch.clone());
    anyhow::ensure!(
        args.files.is_empty() || args.what.is_none(),
        "create takes -f FILE or a generator, not both"
    );
    let ns = args.ns().to_owned();
    let Some(what) = &args.what else {
        if args.files.is_empty() {
            bail!("create needs -f FILE or what to create (namespace, configmap, secret, deployment, job, cronjob)");
        }
        let mut failed = false;
        for (source, content) in crate::kubectl::read_manifests(&args.files)? {
            let how = crate::kubectl::Send {
                namespace: args.namespace.as_deref(),
                ..crate::kubectl::Send::CREATE
            };
            failed |= crate::kubectl::send(&mut c, source, content, &how).await?;
        }
        if failed {
            return Err(crate::podref::Reported.into());
        }
        return Ok(());
    };
    let flags = what.flags().clone();
    let obj = build(what, &ns, ch).await?;
    if flags.is_dry_run()? {
        return print_dry_run(&args.shown(obj), flags.output.as_deref());
    }
    if flags.output.is_some() {
        bail!("-o is for --dry-run=client (the created object: kinglet get KIND NAME -o yaml)");
    }
    let how = crate::kubectl::Send::CREATE;
    if crate::kubectl::send(&mut c, "create".into(), obj.to_string(), &how).await? {
        return Err(crate::podref::Reported.into());
    }
    Ok(())
}

impl Generator {
    fn flags(&self) -> &GenFlags {
        match self {
            Generator::Namespace { flags, .. }
            | Generator::Configmap { flags, .. }
            | Generator::Deployment { flags, .. }
            | Generator::Job { flags, .. }
            | Generator::Cronjob { flags, .. } => flags,
            Generator::Secret { kind } => match kind {
                SecretKind::Generic { flags, .. }
                | SecretKind::DockerRegistry { flags, .. }
                | SecretKind::Tls { flags, .. } => flags,
            },
        }
    }
}

/// Whether `create` needs the daemon: not for a generator's `--dry-run=client` (but for a Job
/// from a CronJob, which reads the CronJob).
pub fn needs_daemon(args: &CreateArgs) -> bool {
    match &args.what {
        None => true,
        Some(g) => {
            g.flags().dry_run.as_deref() != Some("client")
                || matches!(g, Generator::Job { from: Some(_), .. })
        }
    }
}

/// `create GENERATOR ... --dry-run=client` without a daemon: print the object.
pub fn dry_run_offline(args: CreateArgs) -> anyhow::Result<()> {
    let what = args.what.as_ref().context("create needs what to create")?;
    let obj = build_local(what, args.ns())?.context("this object needs the daemon to be built")?;
    print_dry_run(&args.shown(obj), what.flags().output.as_deref())
}

/// The object `what` asks for, in namespace `ns` (a Job from a CronJob reads it first).
async fn build(what: &Generator, ns: &str, ch: Channel) -> anyhow::Result<Value> {
    if let Some(obj) = build_local(what, ns)? {
        return Ok(obj);
    }
    let Generator::Job {
        name,
        from: Some(from),
        ..
    } = what
    else {
        bail!("create: nothing to build");
    };
    let cj_name = from
        .strip_prefix("cronjob/")
        .or_else(|| from.strip_prefix("cronjobs/"))
        .or_else(|| from.strip_prefix("cj/"))
        .ok_or_else(|| anyhow!("--from={from}: only cronjob/NAME is supported"))?;
    let objs = crate::kubectl::fetch(ch, "cronjob", Some(cj_name), None, ns, false)
        .await
        .map_err(crate::kubectl::status_err("get cronjob"))?;
    let cj = objs
        .first()
        .ok_or_else(|| anyhow!("cronjobs.batch \"{cj_name}\" not found"))?;
    job_from_cronjob(name, ns, cj)
}

/// The object `what` asks for, when it needs nothing from the daemon (all but a Job from a
/// CronJob: None).
fn build_local(what: &Generator, ns: &str) -> anyhow::Result<Option<Value>> {
    Ok(Some(match what {
        Generator::Namespace { name, .. } => {
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        }
        Generator::Configmap { name, sources, .. } => configmap(name, ns, &read_sources(sources)?),
        Generator::Secret { kind } => secret_of(kind, ns)?,
        Generator::Deployment {
            name,
            image,
            replicas,
            port,
            command,
            ..
        } => deployment(name, ns, image, *replicas, *port, command),
        Generator::Job {
            name,
            image,
            from,
            command,
            ..
        } => match (image, from) {
            (Some(image), None) => job(name, ns, image, command),
            (None, Some(_)) => return Ok(None),
            _ => bail!("create job needs --image IMAGE or --from=cronjob/NAME"),
        },
        Generator::Cronjob {
            name,
            image,
            schedule,
            restart,
            command,
            ..
        } => cronjob(name, ns, image, schedule, restart, command)?,
    }))
}

fn secret_of(kind: &SecretKind, ns: &str) -> anyhow::Result<Value> {
    Ok(match kind {
        SecretKind::Generic {
            name,
            sources,
            kind,
            ..
        } => secret(name, ns, kind, &read_sources(sources)?),
        SecretKind::DockerRegistry {
            name,
            docker_server,
            docker_username,
            docker_password,
            docker_email,
            ..
        } => {
            let auth = registry_auth(
                docker_server,
                docker_username,
                docker_password,
                docker_email.as_deref(),
            );
            let data = vec![(
                ".dockerconfigjson".to_owned(),
                auth.to_string().into_bytes(),
            )];
            secret(name, ns, "kubernetes.io/dockerconfigjson", &data)
        }
        SecretKind::Tls {
            name, cert, key, ..
        } => {
            let data = vec![
                ("tls.crt".to_owned(), read(cert)?),
                ("tls.key".to_owned(), read(key)?),
            ];
            secret(name, ns, "kubernetes.io/tls", &data)
        }
    })
}

/// Print a generated object as `--dry-run=client` asks.
pub(crate) fn print_dry_run(obj: &Value, output: Option<&str>) -> anyhow::Result<()> {
    match output {
        None => println!("{} created (dry run)", applied_name(obj)),
        Some("yaml") => print!("{}", serde_yaml_ng::to_string(obj)?),
        Some("json") => println!("{}", serde_json::to_string_pretty(obj)?),
        Some("name") => println!("{}", crate::output::name_of(obj)),
        Some(o) => bail!("-o {o}: with --dry-run, yaml, json or name"),
    }
    Ok(())
}

/// `deployment.apps/web`, as apply and create print an object.
fn applied_name(obj: &Value) -> String {
    let kind = obj["kind"].as_str().unwrap_or_default();
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    format!("{}/{name}", kinglet_kubelet::applied_ref(kind))
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("read {}", path.display()))
}

/// Every key of `s`, in kubectl's order: files, then literals, then env files. A key given
/// twice is an error, as kubectl's.
fn read_sources(s: &Sources) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    for f in &s.from_file {
        let (key, path) = match f.split_once('=') {
            Some((k, p)) => (Some(k.to_owned()), PathBuf::from(p)),
            None => (None, PathBuf::from(f)),
        };
        if path.is_dir() {
            anyhow::ensure!(
                key.is_none(),
                "--from-file={f}: a directory takes no key (each file's name is its key)"
            );
            let mut files: Vec<PathBuf> = std::fs::read_dir(&path)
                .with_context(|| format!("read {}", path.display()))?
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect();
            files.sort();
            for p in files {
                out.push((file_key(&p)?, read(&p)?));
            }
        } else {
            let key = match key {
                Some(k) => k,
                None => file_key(&path)?,
            };
            out.push((key, read(&path)?));
        }
    }
    for l in &s.from_literal {
        let (k, v) = l
            .split_once('=')
            .ok_or_else(|| anyhow!("--from-literal={l}: expected KEY=VALUE"))?;
        out.push((k.to_owned(), v.as_bytes().to_vec()));
    }
    for f in &s.from_env_file {
        let text = std::fs::read_to_string(f).with_context(|| format!("read {}", f.display()))?;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim_start();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (k, v) = line.split_once('=').ok_or_else(|| {
                anyhow!(
                    "{}:{}: expected KEY=VALUE, got {line:?}",
                    f.display(),
                    n + 1
                )
            })?;
            out.push((k.trim_end().to_owned(), v.as_bytes().to_vec()));
        }
    }
    for (i, (k, _)) in out.iter().enumerate() {
        check_key(k)?;
        if out[..i].iter().any(|(other, _)| other == k) {
            bail!("cannot add key {k}, another key by that name already exists");
        }
    }
    Ok(out)
}

fn file_key(p: &Path) -> anyhow::Result<String> {
    p.file_name()
        .and_then(|n| n.to_str())
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("{}: no file name to use as the key", p.display()))
}

/// A ConfigMap/Secret key: letters, digits, `-`, `_` and `.`, as the API server checks.
fn check_key(k: &str) -> anyhow::Result<()> {
    let ok = !k.is_empty()
        && k.len() <= 253
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    anyhow::ensure!(
        ok,
        "{k:?} is not a valid key name: a valid key must consist of alphanumeric characters, '-', '_' or '.'"
    );
    Ok(())
}

fn meta(name: &str, ns: &str) -> Value {
    json!({"name": name, "namespace": ns})
}

/// A ConfigMap: UTF-8 values under data, the others under binaryData.
pub(crate) fn configmap(name: &str, ns: &str, keys: &[(String, Vec<u8>)]) -> Value {
    let (mut data, mut binary) = (Map::new(), Map::new());
    for (k, v) in keys {
        match std::str::from_utf8(v) {
            Ok(s) => data.insert(k.clone(), s.into()),
            Err(_) => binary.insert(k.clone(), b64(v).into()),
        };
    }
    let mut o = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta(name, ns)});
    if !data.is_empty() {
        o["data"] = data.into();
    }
    if !binary.is_empty() {
        o["binaryData"] = binary.into();
    }
    o
}

pub(crate) fn secret(name: &str, ns: &str, kind: &str, keys: &[(String, Vec<u8>)]) -> Value {
    let data: Map<String, Value> = keys
        .iter()
        .map(|(k, v)| (k.clone(), b64(v).into()))
        .collect();
    let mut o =
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": meta(name, ns), "type": kind});
    if !data.is_empty() {
        o["data"] = data.into();
    }
    o
}

fn b64(v: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(v)
}

/// A docker config.json holding one registry's credentials, as kubectl writes it.
pub(crate) fn registry_auth(
    server: &str,
    user: &str,
    password: &str,
    email: Option<&str>,
) -> Value {
    let mut entry = json!({
        "username": user,
        "password": password,
        "auth": b64(format!("{user}:{password}").as_bytes()),
    });
    if let Some(e) = email {
        entry["email"] = e.into();
    }
    json!({"auths": {server: entry}})
}

/// A container name from an image, as kubectl derives it: the last path component without
/// tag or digest, in DNS-label characters.
pub(crate) fn container_name(image: &str) -> String {
    let last = image.rsplit('/').next().unwrap_or(image);
    let last = last.split(['@', ':']).next().unwrap_or(last);
    let name: String = last
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '-' => c,
            'A'..='Z' => c.to_ascii_lowercase(),
            _ => '-',
        })
        .collect();
    let name = name.trim_matches('-');
    if name.is_empty() {
        "container".into()
    } else {
        name.to_owned()
    }
}

pub(crate) fn deployment(
    name: &str,
    ns: &str,
    images: &[String],
    replicas: i32,
    port: Option<i32>,
    command: &[String],
) -> Value {
    let mut used: Vec<String> = Vec::new();
    let containers: Vec<Value> = images
        .iter()
        .map(|image| {
            let base = container_name(image);
            // Two containers of one image: kubectl's `-1`, `-2` suffixes.
            let mut n = base.clone();
            let mut i = 0;
            while used.contains(&n) {
                i += 1;
                n = format!("{base}-{i}");
            }
            used.push(n.clone());
            let mut c = json!({"name": n, "image": image, "resources": {}});
            if let Some(p) = port {
                c["ports"] = json!([{"containerPort": p}]);
            }
            if !command.is_empty() {
                c["command"] = json!(command);
            }
            c
        })
        .collect();
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "strategy": {},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": containers},
            },
        },
    })
}

/// The pod template kubectl's job and cronjob generators write: one container named after the
/// object.
fn run_template(name: &str, image: &str, command: &[String], restart: &str) -> Value {
    let mut c = json!({"name": name, "image": image, "resources": {}});
    if !command.is_empty() {
        c["command"] = json!(command);
    }
    json!({"metadata": {}, "spec": {"containers": [c], "restartPolicy": restart}})
}

pub(crate) fn job(name: &str, ns: &str, image: &str, command: &[String]) -> Value {
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": meta(name, ns),
        "spec": {"template": run_template(name, image, command, "Never")},
    })
}

pub(crate) fn cronjob(
    name: &str,
    ns: &str,
    image: &str,
    schedule: &str,
    restart: &str,
    command: &[String],
) -> anyhow::Result<Value> {
    anyhow::ensure!(
        matches!(restart, "OnFailure" | "Never"),
        "--restart={restart}: a CronJob's pods restart OnFailure or Never"
    );
    Ok(json!({
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": meta(name, ns),
        "spec": {
            "schedule": schedule,
            "jobTemplate": {
                "metadata": {"name": name},
                "spec": {"template": run_template(name, image, command, restart)},
            },
        },
    }))
}

/// A Job from a CronJob's jobTemplate, marked as kubectl marks a manual run and owned by
/// the CronJob.
pub(crate) fn job_from_cronjob(name: &str, ns: &str, cj: &Value) -> anyhow::Result<Value> {
    let tmpl = &cj["spec"]["jobTemplate"];
    anyhow::ensure!(
        tmpl["spec"].is_object(),
        "the CronJob has no spec.jobTemplate.spec"
    );
    let mut annotations = tmpl["metadata"]["annotations"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    annotations.insert("cronjob.kubernetes.io/instantiate".into(), "manual".into());
    let mut metadata = json!({"name": name, "namespace": ns, "annotations": annotations});
    if let Some(labels) = tmpl["metadata"]["labels"].as_object() {
        metadata["labels"] = labels.clone().into();
    }
    if let Some(uid) = cj["metadata"]["uid"].as_str() {
        metadata["ownerReferences"] = json!([{
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "name": cj["metadata"]["name"],
            "uid": uid,
            "controller": true,
        }]);
    }
    Ok(json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata,
        "spec": tmpl["spec"],
    }))
}

#[cfg(test)]
#[path = "create_tests.rs"]
mod tests;
