//! `kinglet label`, `annotate` and `set image`, as kubectl's: change an object's labels or
//! annotations (`KEY=VALUE` sets, `KEY-` removes; a changed value needs `--overwrite`), or the
//! images of its containers (`set image deployment/web nginx=nginx:1.25`, `*=IMAGE` for all);
//! the object is read, changed and applied back.

use anyhow::bail;
use serde_json::Value;
use tonic::transport::Channel;

use crate::cli::ClientFlags;
use crate::delete_cli::{selection_for, Selection};
use crate::kubectl::{fetch, status_err};
use kinglet_proto::admin::objects_client::ObjectsClient;

/// `kinglet label` and `annotate`'s arguments.
#[derive(Debug, clap::Args)]
pub struct MetaArgs {
    /// `TYPE NAME... KEY=VALUE... KEY-...`, or `TYPE/NAME... KEY=VALUE...`.
    #[arg(required = true)]
    pub args: Vec<String>,
    /// Change a key that already has another value.
    #[arg(long)]
    pub overwrite: bool,
    #[command(flatten)]
    pub picking: Picking,
    #[command(flatten)]
    pub client: ClientFlags,
}

/// `--all` and `-l`: every object of the kinds given, or those whose labels match.
#[derive(Debug, Clone, clap::Args)]
pub struct Picking {
    /// Every object of TYPE in the namespace.
    #[arg(long)]
    pub all: bool,
    /// The objects of TYPE whose labels match (`app=web,tier!=db`).
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
}

impl Picking {
    /// Whether kinds are given instead of names.
    pub fn any(&self) -> bool {
        self.all || self.selector.is_some()
    }
}

/// `kinglet set image`'s arguments.
#[derive(Debug, clap::Args)]
pub struct SetImageArgs {
    /// `TYPE NAME CONTAINER=IMAGE...` or `TYPE/NAME CONTAINER=IMAGE...` (`*=IMAGE`: every
    /// container).
    #[arg(required = true)]
    pub args: Vec<String>,
}

/// What `kinglet set` changes.
#[derive(Debug, clap::Subcommand)]
pub enum SetCommand {
    /// The images of a pod's or a workload's containers: `set image deploy/web web=nginx:1.25`.
    Image(SetImageArgs),
}

/// Which map of the metadata `label`/`annotate` change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Labels,
    Annotations,
}

impl Field {
    /// The verb that changes it, for messages.
    fn verb(self) -> &'static str {
        match self {
            Field::Labels => "label",
            Field::Annotations => "annotate",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Field::Labels => "labels",
            Field::Annotations => "annotations",
        }
    }
}

/// The objects a command line names and the changes after them.
#[derive(Debug, PartialEq, Eq)]
pub struct Parsed {
    pub objects: Selection,
    pub changes: Vec<String>,
}

/// Read `args` as kubectl does: the changes are the arguments with `=` (or ending in `-`);
/// before them the objects, as `delete` reads them (`TYPE NAME...`, `TYPE/NAME...`, or `TYPE`
/// with --all/-l).
pub fn parse(verb: &str, args: &[String], all_or_selector: bool) -> anyhow::Result<Parsed> {
    let is_change = |a: &String| a.contains('=') || (a.ends_with('-') && !a.contains('/'));
    let split = args.iter().position(is_change).unwrap_or(args.len());
    let (targets, changes) = args.split_at(split);
    if changes.is_empty() {
        bail!("at least one change is required: KEY=VALUE or KEY-");
    }
    if let Some(bad) = changes.iter().find(|a| !is_change(a)) {
        bail!("{bad:?}: the changes come last, each KEY=VALUE or KEY-");
    }
    Ok(Parsed {
        objects: selection_for(verb, targets, all_or_selector)?,
        changes: changes.to_vec(),
    })
}

/// The objects a selection names: each named one (or kubectl's NotFound), or every one of
/// its kinds that `selector` matches.
pub(crate) async fn fetch_selected(
    ch: &Channel,
    objects: &Selection,
    selector: Option<&str>,
    ns: &str,
) -> anyhow::Result<Vec<Value>> {
    let mut objs = Vec::new();
    match objects {
        Selection::Named(named) => {
            for (kind, name) in named {
                objs.extend(fetch_named(ch, kind, name, ns).await?);
            }
        }
        Selection::Kinds(kinds) => {
            for kind in kinds {
                let found = fetch(ch.clone(), kind, None, selector, ns, false).await;
                objs.extend(found.map_err(status_err("get"))?);
            }
        }
    }
    Ok(objs)
}

/// Apply `changes` to the `map` (labels or annotations): kubectl's message (`labeled`,
/// `unlabeled`, `not labeled`) and warnings for removed keys that were not there.
pub fn change(
    map: &mut serde_json::Map<String, Value>,
    changes: &[String],
    overwrite: bool,
    field: Field,
) -> anyhow::Result<(&'static str, Vec<String>)> {
    let before = map.clone();
    let mut warnings = Vec::new();
    for c in changes {
        if let Some((k, v)) = c.split_once('=') {
            if k.is_empty() {
                bail!("{c:?}: the key is empty");
            }
            match map.get(k).and_then(Value::as_str) {
                Some(old) if old != v && !overwrite => {
                    bail!("'{k}' already has a value ({old}), and --overwrite is false")
                }
                _ => {
                    map.insert(k.to_owned(), Value::from(v));
                }
            }
        } else {
            let k = c.trim_end_matches('-');
            if map.remove(k).is_none() {
                let what = &field.key()[..field.key().len() - 1];
                warnings.push(format!("{what} {k:?} not found."));
            }
        }
    }
    let (done, undone, not) = match field {
        Field::Labels => ("labeled", "unlabeled", "not labeled"),
        Field::Annotations => ("annotated", "unannotated", "not annotated"),
    };
    let msg = if *map == before {
        not
    } else if !overwrite && map.len() < before.len() {
        undone
    } else {
        done
    };
    Ok((msg, warnings))
}

/// Run `kinglet label` (`field` Labels) or `annotate`.
pub async fn label(ch: Channel, args: MetaArgs, field: Field) -> anyhow::Result<()> {
    let ns = &args.client.namespace;
    let picked = &args.picking;
    let p = parse(field.verb(), &args.args, picked.any())?;
    let objs = fetch_selected(&ch, &p.objects, picked.selector.as_deref(), ns).await?;
    let mut c = ObjectsClient::new(ch);
    for mut o in objs {
        let meta = o["metadata"].as_object_mut();
        let meta = meta.ok_or_else(|| anyhow::anyhow!("an object without metadata"))?;
        let map = meta
            .entry(field.key())
            .or_insert_with(|| Value::Object(Default::default()));
        if map.is_null() {
            *map = Value::Object(Default::default());
        }
        let map = map.as_object_mut().expect("an object");
        let (msg, warnings) = change(map, &p.changes, args.overwrite, field)?;
        for w in warnings {
            eprintln!("{w}");
        }
        let line = object_ref(&o);
        if msg.starts_with("not ") {
            println!("{line} {msg}");
            continue;
        }
        crate::workloads_cli::put(&mut c, o).await?;
        println!("{line} {msg}");
    }
    Ok(())
}

/// `pod/web`, `deployment.apps/web`.
fn object_ref(o: &Value) -> String {
    let kind = o["kind"].as_str().unwrap_or_default();
    let name = o["metadata"]["name"].as_str().unwrap_or_default();
    format!("{}/{name}", kinglet_kubelet::applied_ref(kind))
}

/// Object `kind` `name`, or kubectl's NotFound error.
pub(crate) async fn fetch_named(
    ch: &Channel,
    kind: &str,
    name: &str,
    ns: &str,
) -> anyhow::Result<Vec<Value>> {
    match fetch(ch.clone(), kind, Some(name), None, ns, false).await {
        Ok(o) if !o.is_empty() => Ok(o),
        Ok(_) => Err(not_found(kind, name)),
        Err(s) if s.code() == tonic::Code::NotFound => Err(not_found(kind, name)),
        Err(s) => Err(status_err("get")(s)),
    }
}

fn not_found(kind: &str, name: &str) -> anyhow::Error {
    eprintln!("{}", crate::delete_cli::not_found(kind, name));
    crate::podref::Reported.into()
}

/// The container lists of object `o` (pods, workloads' templates, a CronJob's job template).
fn container_lists(o: &mut Value) -> Vec<&mut Value> {
    let spec = match o["kind"].as_str().unwrap_or_default() {
        "Pod" => &mut o["spec"],
        "CronJob" => &mut o["spec"]["jobTemplate"]["spec"]["template"]["spec"],
        _ => &mut o["spec"]["template"]["spec"],
    };
    let Some(spec) = spec.as_object_mut() else {
        return Vec::new();
    };
    spec.iter_mut()
        .filter(|(k, _)| *k == "initContainers" || *k == "containers")
        .map(|(_, v)| v)
        .collect()
}

/// Set the images `changes` name (`CONTAINER=IMAGE`, `*=IMAGE`) in `o`; an unknown container
/// is kubectl's error.
pub fn set_images(o: &mut Value, changes: &[String]) -> anyhow::Result<()> {
    for c in changes {
        let Some((name, image)) = c
            .split_once('=')
            .filter(|(n, i)| !n.is_empty() && !i.is_empty())
        else {
            bail!("{c:?}: expected CONTAINER=IMAGE");
        };
        let mut found = false;
        for list in container_lists(o) {
            for ctr in list.as_array_mut().into_iter().flatten() {
                if name == "*" || ctr["name"] == name {
                    ctr["image"] = Value::from(image);
                    found = true;
                }
            }
        }
        if !found {
            bail!("unable to find container named {name:?}");
        }
    }
    Ok(())
}

/// Run `kinglet set image`.
pub async fn set_image(ch: Channel, args: SetImageArgs, ns: &str) -> anyhow::Result<()> {
    let p = parse("set image", &args.args, false)?;
    let mut c = ObjectsClient::new(ch.clone());
    for mut o in fetch_selected(&ch, &p.objects, None, ns).await? {
        set_images(&mut o, &p.changes)?;
        let line = object_ref(&o);
        crate::workloads_cli::put(&mut c, o).await?;
        println!("{line} image updated");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn strings(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn command_lines_read_as_kubectl_reads_them() {
        let parse = |a: &[&str], all| parse("label", &strings(a), all);
        let p = parse(&["pods", "a", "b", "env=prod", "old-"], false).unwrap();
        let pair = |k: &str, n: &str| (k.to_string(), n.to_string());
        let named = |v: Vec<(String, String)>| Selection::Named(v);
        assert_eq!(p.objects, named(vec![pair("pods", "a"), pair("pods", "b")]));
        assert_eq!(p.changes, strings(&["env=prod", "old-"]));
        let p = parse(&["deploy/web", "pod/x", "a=b"], false).unwrap();
        assert_eq!(
            p.objects,
            named(vec![pair("deploy", "web"), pair("pod", "x")])
        );
        let p = parse(&["pods", "a=b"], true).unwrap();
        assert_eq!(p.objects, Selection::Kinds(strings(&["pods"])));
        assert!(parse(&["pods", "a"], false).is_err(), "no change");
        let e = parse(&["pods", "a=b"], false).unwrap_err().to_string();
        assert!(e.contains("write `label pods NAME`"), "no name: {e}");
        assert!(parse(&["pods", "x", "a=b"], true).is_err());
    }

    #[test]
    fn changes_need_overwrite_and_say_what_they_did() {
        let mut m = json!({"app": "web", "tier": "front"})
            .as_object()
            .unwrap()
            .clone();
        let e = change(&mut m, &strings(&["app=api"]), false, Field::Labels).unwrap_err();
        assert_eq!(
            e.to_string(),
            "'app' already has a value (web), and --overwrite is false"
        );
        let r = change(&mut m, &strings(&["app=api"]), true, Field::Labels).unwrap();
        assert_eq!((r.0, m["app"].clone()), ("labeled", json!("api")));
        let r = change(&mut m, &strings(&["tier-", "gone-"]), false, Field::Labels).unwrap();
        assert_eq!(r, ("unlabeled", strings(&["label \"gone\" not found."])));
        let r = change(&mut m, &strings(&["app=api"]), false, Field::Labels).unwrap();
        assert_eq!(r.0, "not labeled", "the same value again");
        let r = change(&mut m, &strings(&["note=a b"]), false, Field::Annotations).unwrap();
        assert_eq!(r.0, "annotated");
    }

    #[test]
    fn images_are_set_by_container_name_or_all() {
        let mut d = json!({"kind": "Deployment", "spec": {"template": {"spec": {
            "initContainers": [{"name": "init", "image": "busybox"}],
            "containers": [{"name": "web", "image": "nginx:1.14"}, {"name": "log", "image": "fluent"}]}}}});
        set_images(&mut d, &strings(&["web=nginx:1.16"])).unwrap();
        let spec = &d["spec"]["template"]["spec"];
        assert_eq!(spec["containers"][0]["image"], "nginx:1.16");
        assert_eq!(spec["containers"][1]["image"], "fluent");
        set_images(&mut d, &strings(&["*=img:2"])).unwrap();
        assert_eq!(
            d["spec"]["template"]["spec"]["initContainers"][0]["image"],
            "img:2"
        );
        let e = set_images(&mut d, &strings(&["nope=x"])).unwrap_err();
        assert_eq!(e.to_string(), "unable to find container named \"nope\"");
        let mut cj = json!({"kind": "CronJob", "spec": {"jobTemplate": {"spec": {"template": {"spec": {
            "containers": [{"name": "c", "image": "a"}]}}}}}});
        set_images(&mut cj, &strings(&["c=b"])).unwrap();
        assert_eq!(
            cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["image"],
            "b"
        );
    }
}
