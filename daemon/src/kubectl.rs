//! kubectl-shaped client verbs against a running daemon: `apply`, `delete`, `get`, `logs`,
//! `exec`. Objects go through Kinglet's `Objects` service; logs and exec use the CRI like any
//! other client.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use k8s_openapi::api::core::v1::Pod;
use kinglet_proto::admin::objects_client::ObjectsClient;
use kinglet_proto::{admin, v1};
use tonic::transport::Channel;
use v1::runtime_service_client::RuntimeServiceClient;

use kinglet_kubelet::podspec::{LABEL_CONTAINER_NAME, LABEL_POD_NAME, LABEL_POD_NAMESPACE};

pub(crate) fn status_err(what: &str) -> impl FnOnce(tonic::Status) -> anyhow::Error + '_ {
    move |s| anyhow!("{what}: {}", s.message())
}

/// Manifests named by `-f`: files, every `.yaml`/`.yml`/`.json`/`.age` of a directory, or `-`
/// (stdin). Sealed files go as they are (armored); the daemon opens them.
pub(crate) fn read_manifests(paths: &[PathBuf]) -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for p in paths {
        if p == Path::new("-") {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)?;
            out.push(("-".into(), s));
        } else if p.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(p)
                .with_context(|| format!("read {}", p.display()))?
                .flatten()
                .map(|e| e.path())
                .filter(|f| {
                    matches!(
                        f.extension().and_then(|e| e.to_str()),
                        Some("yaml" | "yml" | "json" | "age")
                    )
                })
                .collect();
            files.sort();
            for f in files {
                out.push((
                    f.display().to_string(),
                    crate::secret_cli::manifest_text(&f)?,
                ));
            }
        } else {
            let text = crate::secret_cli::manifest_text(p)?;
            out.push((p.display().to_string(), text));
        }
    }
    Ok(out)
}

pub async fn apply(ch: Channel, files: &[PathBuf], ns: Option<&str>) -> anyhow::Result<()> {
    let mut c = ObjectsClient::new(ch);
    let mut failed = false;
    let how = Send {
        namespace: ns,
        ..Send::APPLY
    };
    for (source, content) in read_manifests(files)? {
        failed |= send(&mut c, source, content, &how).await?;
    }
    if failed {
        bail!("some documents were not applied (see the errors above)");
    }
    Ok(())
}

/// How [`send`] applies a manifest and prints what was done.
pub(crate) struct Send<'a> {
    /// As `kinglet create`: refuse objects that exist.
    pub create_only: bool,
    /// What a created object's line ends in (`created`; `exposed` for expose).
    pub created_as: &'a str,
    /// `-n`: the namespace of objects naming none (others must name it).
    pub namespace: Option<&'a str>,
}

impl Send<'static> {
    pub const APPLY: Send<'static> = Send {
        create_only: false,
        created_as: "created",
        namespace: None,
    };
    pub const CREATE: Send<'static> = Send {
        create_only: true,
        ..Send::APPLY
    };
}

/// Apply one manifest as `how` says and print the daemon's lines, errors and warnings on
/// stderr. Returns whether a document failed.
pub(crate) async fn send(
    c: &mut ObjectsClient<Channel>,
    source: String,
    content: String,
    how: &Send<'_>,
) -> anyhow::Result<bool> {
    let r = c
        .apply(admin::ApplyRequest {
            source: source.clone(),
            content,
            create_only: how.create_only,
            namespace: how.namespace.unwrap_or_default().to_owned(),
        })
        .await
        .map_err(status_err(&source))?
        .into_inner();
    let mut failed = false;
    for line in r.results {
        if let Some(e) = line.strip_prefix("error: ") {
            // A document that was not applied (the others were); kubectl's own
            // `Error from server (...)` lines as they are.
            let e = if e.starts_with("Error from server") {
                e
            } else {
                &line
            };
            eprintln!("{e}");
            failed = true;
        } else if line.starts_with("Warning:") {
            eprintln!("{line}");
        } else if let Some(what) = line.strip_suffix(" created") {
            println!("{what} {}", how.created_as);
        } else {
            println!("{line}");
        }
    }
    Ok(failed)
}

/// Wait until `kind` `name` is gone (a pod: its containers stopped and the object removed), or
/// replaced by an object of the same name that is not being deleted (a StatefulSet's pod), as
/// kubectl waits by uid.
pub(crate) async fn wait_gone(
    c: &mut ObjectsClient<Channel>,
    kind: &str,
    name: &str,
    ns: &str,
) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(600);
    while std::time::Instant::now() < deadline {
        let r = c
            .get(admin::GetRequest {
                kind: kind.into(),
                namespace: ns.into(),
                name: name.into(),
                ..Default::default()
            })
            .await;
        match r {
            Err(s) if s.code() == tonic::Code::NotFound => return Ok(()),
            Err(s) => return Err(status_err("delete")(s)),
            Ok(r) => {
                let terminating = r.into_inner().objects.first().is_some_and(|o| {
                    serde_json::from_str::<serde_json::Value>(o)
                        .is_ok_and(|v| !v["metadata"]["deletionTimestamp"].is_null())
                });
                if !terminating {
                    return Ok(());
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await
            }
        }
    }
    bail!("{kind} {ns}/{name} is still being deleted after 10 minutes")
}

/// kubectl's STATUS column: a waiting or terminated reason when there is one, else the phase.
pub fn pod_status_column(p: &Pod) -> String {
    crate::podview::columns(p).status
}

pub(crate) fn redact(v: &mut serde_json::Value) {
    for key in ["data", "stringData"] {
        if let Some(m) = v.get_mut(key).and_then(|d| d.as_object_mut()) {
            for val in m.values_mut() {
                *val = "<redacted>".into();
            }
        }
    }
}

/// What `get` lists: kinds (`deploy,rs`), or `kind/name`, and a label selector.
pub struct GetQuery<'a> {
    pub kinds: &'a str,
    pub name: Option<&'a str>,
    pub selector: Option<&'a str>,
}

/// How `get` prints objects: `-o`, `-A` (a NAMESPACE column first), `--reveal` (Secret
/// data), `--show-labels` (a LABELS column last).
#[derive(Clone, Copy, Debug, Default)]
pub struct Printing<'a> {
    pub output: Option<&'a str>,
    pub all: bool,
    pub reveal: bool,
    pub labels: bool,
}

impl Printing<'_> {
    /// `-o wide`.
    pub fn wide(&self) -> bool {
        self.output == Some("wide")
    }

    /// A table (no `-o`, `-o wide` or `-o custom-columns=`), not objects.
    pub fn table(&self) -> bool {
        self.output
            .is_none_or(|o| o == "wide" || o.starts_with("custom-columns="))
    }
}

pub async fn get_many(
    ch: Channel,
    q: GetQuery<'_>,
    ns: &str,
    p: Printing<'_>,
) -> anyhow::Result<()> {
    let (kinds, name) = match q.kinds.split_once('/') {
        Some((k, n)) if q.name.is_none() => (k.to_owned(), Some(n.to_owned())),
        _ => (q.kinds.to_owned(), q.name.map(str::to_owned)),
    };
    // kubectl's `all`: the workload kinds and Services.
    let kinds = if kinds == "all" {
        "pods,svc,deploy,rs,sts,job".to_owned()
    } else {
        kinds
    };
    let list: Vec<&str> = kinds.split(',').filter(|k| !k.is_empty()).collect();
    for (i, kind) in list.iter().enumerate() {
        if i > 0 && p.table() {
            println!();
        }
        get(ch.clone(), kind, name.as_deref(), q.selector, ns, p).await?;
    }
    Ok(())
}

pub async fn get(
    ch: Channel,
    kind: &str,
    name: Option<&str>,
    selector: Option<&str>,
    ns: &str,
    p: Printing<'_>,
) -> anyhow::Result<()> {
    let objs = match (fetch(ch, kind, name, selector, ns, p.all).await, name) {
        (Err(s), Some(name)) if s.code() == tonic::Code::NotFound => {
            eprintln!("{}", crate::delete_cli::not_found(kind, name));
            return Err(crate::podref::Reported.into());
        }
        (r, _) => r.map_err(status_err("get"))?,
    };
    if objs.is_empty() && p.table() {
        eprintln!("{}", no_resources(kind, ns, p.all));
        return Ok(());
    }
    render(objs, kind, name.is_some(), p)
}

/// kubectl's note for an empty table: in which namespace nothing was found (not for every
/// namespace, nor for a kind that has none).
pub(crate) fn no_resources(kind: &str, ns: &str, all: bool) -> String {
    let cluster_scoped = matches!(
        kinglet_kubelet::resource_of(kind),
        Some("namespaces" | "ingressclasses.networking.k8s.io")
    );
    if all || cluster_scoped {
        "No resources found".to_owned()
    } else {
        format!("No resources found in {ns} namespace.")
    }
}

/// The objects of `kind` (named `name`, matching `selector`) in `ns` or every namespace.
pub(crate) async fn fetch(
    ch: Channel,
    kind: &str,
    name: Option<&str>,
    selector: Option<&str>,
    ns: &str,
    all: bool,
) -> Result<Vec<serde_json::Value>, tonic::Status> {
    let r = ObjectsClient::new(ch)
        .get(admin::GetRequest {
            kind: kind.into(),
            namespace: ns.into(),
            all_namespaces: all,
            name: name.unwrap_or_default().into(),
            label_selector: selector.unwrap_or_default().into(),
        })
        .await?
        .into_inner();
    r.objects
        .iter()
        .map(|o| serde_json::from_str(o))
        .collect::<Result<_, _>>()
        .map_err(|e| tonic::Status::internal(format!("the daemon sent bad JSON: {e}")))
}

/// Print `objs` (of `kind`) as `output` asks; `single`: one named object, printed alone (not
/// in a List) by yaml/json/jsonpath.
pub(crate) fn render(
    mut objs: Vec<serde_json::Value>,
    kind: &str,
    single: bool,
    p: Printing<'_>,
) -> anyhow::Result<()> {
    let is_secret = objs.first().and_then(|o| o["kind"].as_str()) == Some("Secret")
        || kind.starts_with("secret");
    if is_secret && !p.reveal {
        objs.iter_mut().for_each(redact);
    }
    let doc = if objs.len() == 1 && single {
        objs[0].clone()
    } else {
        serde_json::json!({"apiVersion": "v1", "kind": "List", "items": objs})
    };
    match p.output {
        Some("json") => println!("{}", serde_json::to_string_pretty(&doc)?),
        Some("yaml") => print!("{}", serde_yaml_ng::to_string(&doc)?),
        Some("wide") | None => print_table(&objs, &p)?,
        Some("name") => objs
            .iter()
            .for_each(|o| println!("{}", crate::output::name_of(o))),
        Some(o) if o.starts_with("jsonpath=") => {
            print!(
                "{}",
                crate::output::jsonpath(&o["jsonpath=".len()..], &doc)?
            );
            std::io::stdout().flush()?;
        }
        Some(o) if o.starts_with("custom-columns=") => {
            let columns = crate::output::custom_columns(&o["custom-columns=".len()..])?;
            let header: Vec<&str> = columns.iter().map(|(h, _)| h.as_str()).collect();
            let rows: Vec<Vec<String>> = objs
                .iter()
                .map(|o| crate::output::custom_row(&columns, o))
                .collect();
            let widths = column_widths(&header, &rows);
            println!("{}", table_line(&widths, &header));
            rows.iter()
                .for_each(|r| println!("{}", table_line(&widths, r)));
        }
        Some(o) => bail!("unknown output format {o:?} ({FORMATS})"),
    }
    Ok(())
}

/// The `-o` formats `get` knows, for its error.
pub(crate) const FORMATS: &str =
    "wide, yaml, json, name, jsonpath=TEMPLATE, custom-columns=HEADER:PATH,...";

fn print_table(objs: &[serde_json::Value], p: &Printing<'_>) -> anyhow::Result<()> {
    let kind = objs.first().and_then(|o| o["kind"].as_str()).unwrap_or("");
    let header = table_header(kind, p);
    let rows = objs
        .iter()
        .map(|o| table_row(o, kind, p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if rows.is_empty() {
        eprintln!("No resources found.");
        return Ok(());
    }
    let widths = column_widths(&header, &rows);
    println!("{}", table_line(&widths, &header));
    for r in rows {
        println!("{}", table_line(&widths, &r));
    }
    Ok(())
}

/// kubectl's columns for objects of `kind` as `p` asks (`-o wide`, NAMESPACE, LABELS).
pub(crate) fn table_header(kind: &str, p: &Printing<'_>) -> Vec<&'static str> {
    let (wide, all) = (p.wide(), p.all);
    let mut header: Vec<&str> = match kind {
        "Pod" => vec!["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
        "Secret" => vec!["NAME", "TYPE", "DATA", "AGE"],
        "Event" => vec!["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"],
        "ServiceAccount" => vec!["NAME", "SECRETS", "AGE"],
        "Service" => [kinglet_services::columns::SERVICE_HEADER, &["AGE"]].concat(),
        "EndpointSlice" => [kinglet_services::columns::SLICE_HEADER, &["AGE"]].concat(),
        k => crate::workloads_cli::header(k, wide)
            .or_else(|| crate::sts_cli::header(k, wide))
            .or_else(|| crate::ingress_cli::header(k))
            .unwrap_or_else(|| vec!["NAME", "DATA", "AGE"]),
    };
    if wide && kind == "Pod" {
        header.extend(["IP", "NODE", "NOMINATED NODE", "READINESS GATES"]);
    }
    if wide && kind == "Service" {
        header.push("SELECTOR");
    }
    if all {
        header.insert(0, "NAMESPACE");
    }
    if p.labels {
        header.push("LABELS");
    }
    header
}

/// One object's row under [`table_header`].
pub(crate) fn table_row(
    o: &serde_json::Value,
    kind: &str,
    p: &Printing<'_>,
) -> anyhow::Result<Vec<String>> {
    let (wide, all) = (p.wide(), p.all);
    let name = o
        .pointer("/metadata/name")
        .and_then(|n| n.as_str())
        .unwrap_or("")
        .to_string();
    let age = crate::fields::age(o);
    let mut row = match kind {
        "Pod" => pod_row(o, name, age, wide)?,
        "Secret" => {
            let n = o["data"].as_object().map(|m| m.len()).unwrap_or(0);
            let kind = o["type"].as_str().unwrap_or("Opaque").into();
            vec![name, kind, n.to_string(), age]
        }
        "Event" => vec![
            crate::fields::since(o["lastTimestamp"].as_str()).unwrap_or_else(|| "<unknown>".into()),
            o["type"].as_str().unwrap_or_default().into(),
            o["reason"].as_str().unwrap_or_default().into(),
            format!(
                "pod/{}",
                o["involvedObject"]["name"].as_str().unwrap_or_default()
            ),
            o["message"].as_str().unwrap_or_default().into(),
        ],
        "Deployment" | "ReplicaSet" | "Job" | "DaemonSet" | "CronJob" | "Namespace" => {
            crate::workloads_cli::row(o, age, wide)
        }
        "Ingress" | "IngressClass" => crate::ingress_cli::row(o, age),
        "StatefulSet" | "PersistentVolumeClaim" | "ControllerRevision" => {
            crate::sts_cli::row(o, age, wide)
        }
        "Service" => {
            let s: k8s_openapi::api::core::v1::Service = serde_json::from_value(o.clone())?;
            let mut r = kinglet_services::columns::service_row(&s);
            r.push(age);
            if wide {
                r.push(kinglet_services::columns::service_selector(&s));
            }
            r
        }
        "EndpointSlice" => {
            let s: k8s_openapi::api::discovery::v1::EndpointSlice =
                serde_json::from_value(o.clone())?;
            let mut r = kinglet_services::columns::slice_row(&s);
            r.push(age);
            r
        }
        "ServiceAccount" => {
            let n = o["secrets"].as_array().map(Vec::len).unwrap_or(0);
            vec![name, n.to_string(), age]
        }
        _ => {
            let n = o["data"].as_object().map(|m| m.len()).unwrap_or(0)
                + o["binaryData"].as_object().map(|m| m.len()).unwrap_or(0);
            vec![name, n.to_string(), age]
        }
    };
    if all {
        let ns = o.pointer("/metadata/namespace").and_then(|n| n.as_str());
        row.insert(0, ns.unwrap_or("").into());
    }
    if p.labels {
        row.push(labels_cell(o));
    }
    Ok(row)
}

/// `--show-labels`' cell: `key=value` pairs by key, comma-separated, or `<none>`.
fn labels_cell(o: &serde_json::Value) -> String {
    let Some(labels) = o.pointer("/metadata/labels").and_then(|l| l.as_object()) else {
        return "<none>".into();
    };
    let mut pairs: Vec<(&String, &str)> = labels
        .iter()
        .map(|(k, v)| (k, v.as_str().unwrap_or_default()))
        .collect();
    pairs.sort();
    if pairs.is_empty() {
        return "<none>".into();
    }
    let cells: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    cells.join(",")
}

fn pod_row(
    o: &serde_json::Value,
    name: String,
    age: String,
    wide: bool,
) -> anyhow::Result<Vec<String>> {
    let p: Pod = serde_json::from_value(o.clone())?;
    let c = crate::podview::columns(&p);
    let restarts = c.restarts_cell();
    let mut r = vec![name, c.ready, c.status, restarts, age];
    if wide {
        let ip = p.status.as_ref().and_then(|s| s.pod_ip.clone());
        r.push(ip.unwrap_or_else(|| "<none>".into()));
        r.push(node_of(&p));
        let st = p.status.as_ref();
        let nominated = st.and_then(|s| s.nominated_node_name.clone());
        r.push(nominated.unwrap_or_else(|| "<none>".into()));
        r.push(readiness_gates(&p));
    }
    Ok(r)
}

/// kubectl's READINESS GATES cell: `<none>`, else how many of the pod's gates have a True
/// condition, `ready/total`.
fn readiness_gates(p: &Pod) -> String {
    let gates = p.spec.as_ref().and_then(|s| s.readiness_gates.as_ref());
    let Some(gates) = gates.filter(|g| !g.is_empty()) else {
        return "<none>".into();
    };
    let conditions = p.status.as_ref().and_then(|s| s.conditions.as_ref());
    let ready = gates
        .iter()
        .filter(|g| {
            conditions
                .into_iter()
                .flatten()
                .any(|c| c.type_ == g.condition_type && c.status == "True")
        })
        .count();
    format!("{ready}/{}", gates.len())
}

/// The node pod `p` runs on as `-o wide` and `describe` show it: its `spec.nodeName`, else
/// (a pod from a daemon that did not set it) the host name.
pub(crate) fn node_of(p: &Pod) -> String {
    let given = p.spec.as_ref().and_then(|s| s.node_name.clone());
    given.filter(|n| !n.is_empty()).unwrap_or_else(|| {
        nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_default()
    })
}

/// Each column's width: its widest cell.
pub(crate) fn column_widths<S: AsRef<str>>(header: &[&str], rows: &[Vec<S>]) -> Vec<usize> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.as_ref().len());
        }
    }
    widths
}

/// One line of a table: cells padded to `widths`, three spaces apart.
pub(crate) fn table_line<S: AsRef<str>>(widths: &[usize], cells: &[S]) -> String {
    cells
        .iter()
        .enumerate()
        .map(|(i, c)| {
            format!(
                "{:<w$}",
                c.as_ref(),
                w = widths.get(i).copied().unwrap_or(0)
            )
        })
        .collect::<Vec<_>>()
        .join("   ")
        .trim_end()
        .to_string()
}

/// The CRI container of `pod`/`container` (newest attempt, or the one before with
/// `previous`). Without `container`: kubectl's default container of the pod object
/// ([`crate::podref`]); for a pod made through the CRI alone, its one running container.
pub(crate) async fn find_container(
    ch: Channel,
    rt: &mut RuntimeServiceClient<Channel>,
    pod: &str,
    ns: &str,
    container: Option<&str>,
    previous: bool,
) -> anyhow::Result<v1::Container> {
    let object = crate::podref::pod_object(ch, pod, ns).await;
    let chosen = container
        .map(str::to_owned)
        .or_else(|| object.as_ref().and_then(crate::podref::default_container));
    if container.is_none() {
        if let Some(note) = object.as_ref().and_then(crate::podref::defaulted_note) {
            eprintln!("{note}");
        }
    }
    let container = chosen.as_deref();
    let mut sel: std::collections::HashMap<String, String> = [
        (LABEL_POD_NAME.to_string(), pod.to_string()),
        (LABEL_POD_NAMESPACE.to_string(), ns.to_string()),
    ]
    .into_iter()
    .collect();
    if let Some(c) = container {
        sel.insert(LABEL_CONTAINER_NAME.into(), c.into());
    }
    let mut cs = rt
        .list_containers(v1::ListContainersRequest {
            filter: Some(v1::ContainerFilter {
                label_selector: sel,
                ..Default::default()
            }),
        })
        .await
        .map_err(status_err("list containers"))?
        .into_inner()
        .containers;
    if cs.is_empty() {
        return Err(match (container, &object) {
            (None, None) => crate::podref::NotFound {
                resource: "pods",
                name: pod.to_owned(),
            }
            .into(),
            (Some(_), None) if !pod_has_containers(rt, pod, ns).await => crate::podref::NotFound {
                resource: "pods",
                name: pod.to_owned(),
            }
            .into(),
            (Some(c), o) => crate::podref::no_container(o.as_ref(), pod, c),
            (None, Some(_)) => anyhow!("pod {ns}/{pod} has no container yet"),
        });
    }
    let names: std::collections::BTreeSet<String> = cs
        .iter()
        .filter_map(|c| c.labels.get(LABEL_CONTAINER_NAME).cloned())
        .collect();
    // Without -c: the one running container, when exactly one name is running (init
    // containers have finished by then).
    let running: std::collections::BTreeSet<String> = cs
        .iter()
        .filter(|c| c.state == v1::ContainerState::ContainerRunning as i32)
        .filter_map(|c| c.labels.get(LABEL_CONTAINER_NAME).cloned())
        .collect();
    if container.is_none() && names.len() > 1 && running.len() == 1 {
        let only = running.into_iter().next().unwrap_or_default();
        cs.retain(|c| c.labels.get(LABEL_CONTAINER_NAME) == Some(&only));
    } else if container.is_none() && names.len() > 1 {
        bail!(
            "pod {ns}/{pod} has several containers, choose one with -c: {}",
            names.into_iter().collect::<Vec<_>>().join(", ")
        );
    }
    cs.sort_by_key(|c| c.metadata.as_ref().map(|m| m.attempt).unwrap_or(0));
    let idx = if previous {
        cs.len()
            .checked_sub(2)
            .ok_or_else(|| anyhow!("previous terminated container not found in pod {ns}/{pod}"))?
    } else {
        cs.len() - 1
    };
    Ok(cs.swap_remove(idx))
}

/// Whether the CRI knows any container of pod `ns/name`.
async fn pod_has_containers(rt: &mut RuntimeServiceClient<Channel>, pod: &str, ns: &str) -> bool {
    let sel = [
        (LABEL_POD_NAME.to_string(), pod.to_string()),
        (LABEL_POD_NAMESPACE.to_string(), ns.to_string()),
    ]
    .into_iter()
    .collect();
    rt.list_containers(v1::ListContainersRequest {
        filter: Some(v1::ContainerFilter {
            label_selector: sel,
            ..Default::default()
        }),
    })
    .await
    .is_ok_and(|r| !r.into_inner().containers.is_empty())
}

pub async fn exec(
    ch: Channel,
    pod: &str,
    ns: &str,
    container: Option<&str>,
    cmd: Vec<String>,
) -> anyhow::Result<i32> {
    let mut rt = RuntimeServiceClient::new(ch.clone());
    let c = find_container(ch, &mut rt, pod, ns, container, false).await?;
    let r = rt
        .exec_sync(v1::ExecSyncRequest {
            container_id: c.id,
            cmd,
            timeout: 0,
        })
        .await
        .map_err(status_err("exec"))?
        .into_inner();
    std::io::stdout().write_all(&r.stdout)?;
    std::io::stderr().write_all(&r.stderr)?;
    Ok(r.exit_code)
}

/// `kinglet describe svc NAME`: the Service and its ready endpoints.
async fn describe_service(ch: Channel, name: &str, ns: &str) -> anyhow::Result<()> {
    let get = |kind: &str, name: &str| admin::GetRequest {
        kind: kind.into(),
        namespace: ns.into(),
        all_namespaces: false,
        name: name.into(),
        label_selector: String::new(),
    };
    let mut client = ObjectsClient::new(ch);
    let r = client
        .get(get("services", name))
        .await
        .map_err(status_err("describe"))?
        .into_inner();
    let raw = r
        .objects
        .first()
        .ok_or_else(|| anyhow!("service {ns}/{name} not found"))?;
    let svc: k8s_openapi::api::core::v1::Service = serde_json::from_str(raw)?;
    let slices = client
        .get(get("endpointslices", ""))
        .await
        .map_err(status_err("describe"))?
        .into_inner()
        .objects
        .iter()
        .map(|o| serde_json::from_str::<k8s_openapi::api::discovery::v1::EndpointSlice>(o))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .filter(|s| {
            s.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(kinglet_services::endpoints::LABEL_SERVICE_NAME))
                == Some(&name.to_owned())
        })
        .collect::<Vec<_>>();
    print!(
        "{}",
        kinglet_services::columns::describe_service(&svc, &slices)
    );
    Ok(())
}

/// `kinglet describe pod NAME`: the pod, its containers and volumes, and recent events.
pub async fn describe(ch: Channel, kind: &str, name: &str, ns: &str) -> anyhow::Result<()> {
    if matches!(
        kind,
        "deploy"
            | "deployment"
            | "deployments"
            | "rs"
            | "replicaset"
            | "replicasets"
            | "job"
            | "jobs"
    ) {
        return crate::workloads_cli::describe(ch, kind, name, ns).await;
    }
    if crate::sts_cli::describes(kind) {
        return crate::sts_cli::describe(ch, kind, name, ns).await;
    }
    if crate::apps_cli::describes(kind) {
        return crate::apps_cli::describe(ch, kind, name, ns).await;
    }
    if matches!(kind, "svc" | "service" | "services") {
        return describe_service(ch, name, ns).await;
    }
    if crate::describe_cli::handles(kind) {
        return crate::describe_cli::describe(ch, kind, name, ns).await;
    }
    if matches!(kind, "ing" | "ingress" | "ingresses") {
        return crate::ingress_cli::describe(ch, name, ns).await;
    }
    if !matches!(kind, "pod" | "pods" | "po") {
        bail!("describe supports pods, deployments, replicasets, daemonsets, statefulsets, jobs, cronjobs, services, ingresses, persistentvolumeclaims, configmaps and secrets");
    }
    crate::describe_pod::describe_pod(ch, name, ns).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn show_labels_adds_a_labels_column_sorted_by_key() {
        let p = Printing {
            labels: true,
            all: true,
            ..Printing::default()
        };
        assert_eq!(
            table_header("ConfigMap", &p),
            ["NAMESPACE", "NAME", "DATA", "AGE", "LABELS"]
        );
        let cm = serde_json::json!({"kind": "ConfigMap", "metadata": {"name": "c", "namespace": "ns",
            "labels": {"tier": "web", "app.kubernetes.io/name": "x", "app": "a"}}, "data": {"k": "v"}});
        let row = table_row(&cm, "ConfigMap", &p).unwrap();
        assert_eq!(row[0], "ns");
        assert_eq!(row[1], "c");
        assert_eq!(row[2], "1");
        assert_eq!(row[4], "app=a,app.kubernetes.io/name=x,tier=web");
        let bare = serde_json::json!({"kind": "ConfigMap", "metadata": {"name": "d"}});
        assert_eq!(table_row(&bare, "ConfigMap", &p).unwrap()[4], "<none>");
        let plain = Printing::default();
        assert_eq!(table_header("ConfigMap", &plain), ["NAME", "DATA", "AGE"]);
    }
}
