//! `kinglet delete`: which objects a command line names, read as kubectl reads it (`KIND NAME...`,
//! `KIND/NAME...`, `KIND[,KIND] --all|-l SELECTOR`, `-f FILE`), and deleting them as kubectl does:
//! every deletion is sent, a missing object is kubectl's NotFound error that does not stop the
//! others, then the deleted pods (and foreground owners) are waited for.

use std::path::PathBuf;

use anyhow::bail;
use kinglet_proto::admin;
use kinglet_proto::admin::objects_client::ObjectsClient;
use tonic::transport::Channel;

use crate::kubectl::{read_manifests, status_err, wait_gone};

/// What `delete` removes: files, named objects, or every object of some kinds (`--all`) or
/// those whose labels match (`-l`); and `--cascade`.
pub struct DeleteTarget<'a> {
    pub files: &'a [PathBuf],
    /// `KIND NAME...`, `KIND/NAME...`, or `KIND[,KIND]` with `--all`/`-l`.
    pub objects: &'a [String],
    pub all: bool,
    pub selector: Option<&'a str>,
    pub cascade: &'a str,
}

/// The objects a command line names.
#[derive(Debug, PartialEq, Eq)]
pub enum Selection {
    /// (kind, name) pairs, in the order given.
    Named(Vec<(String, String)>),
    /// Every object of these kinds (filtered by the selector, if any).
    Kinds(Vec<String>),
}

/// Read `objects` as kubectl does: a first argument with a `/` makes every argument
/// `KIND/NAME`; else the first is `KIND` (or `KIND,KIND`) and the rest are names, each
/// deleted for each kind; `--all`/`-l` take kinds and no name.
pub fn selection(objects: &[String], all_or_selector: bool) -> anyhow::Result<Selection> {
    selection_for("delete", objects, all_or_selector)
}

/// [`selection`] for `verb` (`label`, `wait`, ...), which its errors name.
pub fn selection_for(
    verb: &str,
    objects: &[String],
    all_or_selector: bool,
) -> anyhow::Result<Selection> {
    let Some(first) = objects.first() else {
        bail!("give -f FILE, or KIND NAME..., or KIND/NAME..., or KIND --all, or KIND -l SELECTOR")
    };
    if first.contains('/') {
        if all_or_selector {
            bail!("--all and -l take a KIND and no NAME, e.g. `{verb} pods --all`");
        }
        let mut named = Vec::new();
        for o in objects {
            match o.split_once('/') {
                Some((k, n)) if !k.is_empty() && !n.is_empty() && !n.contains('/') => {
                    named.push((k.to_owned(), n.to_owned()))
                }
                Some(_) => bail!("{o:?} is not KIND/NAME, e.g. pod/web"),
                None => bail!(
                    "there is no need to give a kind as a separate argument when passing \
                     arguments in KIND/NAME form: write {first} pod/{o} (or KIND NAME...)"
                ),
            }
        }
        return Ok(Selection::Named(named));
    }
    let kinds: Vec<String> = first.split(',').map(str::to_owned).collect();
    if kinds.iter().any(String::is_empty) {
        bail!("{first:?}: a kind is empty (write KIND or KIND,KIND)");
    }
    let names = &objects[1..];
    if all_or_selector {
        if !names.is_empty() {
            bail!("--all and -l take a KIND and no NAME, e.g. `{verb} pods --all`");
        }
        return Ok(Selection::Kinds(kinds));
    }
    if names.is_empty() {
        bail!(
            "{first}: no name was given: write `{verb} {first} NAME`, or `--all`, or `-l SELECTOR`"
        );
    }
    if let Some(n) = names.iter().find(|n| n.contains('/')) {
        bail!("{n:?}: give either KIND NAME... or KIND/NAME..., not both");
    }
    Ok(Selection::Named(
        kinds
            .iter()
            .flat_map(|k| names.iter().map(move |n| (k.clone(), n.clone())))
            .collect(),
    ))
}

/// kubectl's error for a name that is not there.
pub(crate) fn not_found(kind: &str, name: &str) -> String {
    let resource = kinglet_kubelet::resource_of(kind).unwrap_or(kind);
    format!("Error from server (NotFound): {resource} \"{name}\" not found")
}

pub async fn delete(ch: Channel, target: DeleteTarget<'_>, ns: &str) -> anyhow::Result<()> {
    let cascade = target.cascade;
    let mut c = ObjectsClient::new(ch);
    let by_name = |kind: String, name: String| admin::DeleteRequest {
        kind,
        name,
        namespace: ns.into(),
        propagation_policy: cascade.into(),
        ..Default::default()
    };
    let reqs: Vec<admin::DeleteRequest> = if !target.files.is_empty() {
        if !target.objects.is_empty() {
            bail!("give either -f FILE or KIND NAME, not both");
        }
        read_manifests(target.files)?
            .into_iter()
            .map(|(source, content)| admin::DeleteRequest {
                source,
                content,
                propagation_policy: cascade.into(),
                ..Default::default()
            })
            .collect()
    } else {
        let all_or_selector = target.all || target.selector.is_some();
        match selection(target.objects, all_or_selector)? {
            Selection::Named(named) => named.into_iter().map(|(k, n)| by_name(k, n)).collect(),
            Selection::Kinds(kinds) => {
                let mut reqs = Vec::new();
                for kind in kinds {
                    for name in names_of(&mut c, &kind, target.selector, ns).await? {
                        reqs.push(by_name(kind.clone(), name));
                    }
                }
                if reqs.is_empty() {
                    eprintln!("No resources found");
                }
                reqs
            }
        }
    };
    let foreground = cascade.eq_ignore_ascii_case("foreground");
    let (mut waits, mut failed) = (Vec::new(), false);
    for r in reqs {
        let (kind, name) = (r.kind.clone(), r.name.clone());
        match c.delete(r).await {
            Ok(resp) => {
                for line in resp.into_inner().results {
                    println!("{line}");
                    // As kubectl (--wait): a deleted pod is waited for through its grace
                    // period, an owner deleted in foreground until its dependents are gone.
                    if let Some((kind, name)) = deleted_object(&line)
                        .filter(|(kind, _)| *kind == "pod" || (foreground && *kind != "namespace"))
                    {
                        waits.push((kind.to_owned(), name.to_owned()));
                    }
                }
            }
            Err(s) if s.code() == tonic::Code::NotFound && !name.is_empty() => {
                eprintln!("{}", not_found(&kind, &name));
                failed = true;
            }
            Err(s) => return Err(status_err("delete")(s)),
        }
    }
    for (kind, name) in waits {
        wait_gone(&mut c, &kind, &name, ns).await?;
    }
    if failed {
        return Err(crate::podref::Reported.into());
    }
    Ok(())
}

/// Kind (lower case, no group) and name of the object a daemon line `deployment.apps "web"
/// deleted` names.
fn deleted_object(line: &str) -> Option<(&str, &str)> {
    let (resource, name) = line.strip_suffix(" deleted")?.split_once(' ')?;
    let name = name.strip_prefix('"')?.strip_suffix('"')?;
    Some((resource.split('.').next()?, name))
}

/// The names of the objects of `kind` in `ns` (matching `selector`).
async fn names_of(
    c: &mut ObjectsClient<Channel>,
    kind: &str,
    selector: Option<&str>,
    ns: &str,
) -> anyhow::Result<Vec<String>> {
    let objects = c
        .get(admin::GetRequest {
            kind: kind.into(),
            namespace: ns.into(),
            all_namespaces: false,
            name: String::new(),
            label_selector: selector.unwrap_or_default().into(),
        })
        .await
        .map_err(status_err("delete"))?
        .into_inner()
        .objects;
    let mut names = Vec::new();
    for o in objects {
        let v: serde_json::Value = serde_json::from_str(&o)?;
        if let Some(n) = v.pointer("/metadata/name").and_then(|n| n.as_str()) {
            names.push(n.to_owned());
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }
    fn named(p: &[(&str, &str)]) -> Selection {
        Selection::Named(
            p.iter()
                .map(|(k, n)| (k.to_string(), n.to_string()))
                .collect(),
        )
    }

    #[test]
    fn deleted_lines_name_kind_and_object() {
        assert_eq!(deleted_object("pod \"web\" deleted"), Some(("pod", "web")));
        assert_eq!(
            deleted_object("deployment.apps \"web\" deleted"),
            Some(("deployment", "web"))
        );
        assert_eq!(
            deleted_object("ingress.networking.k8s.io \"site\" deleted"),
            Some(("ingress", "site"))
        );
        assert_eq!(deleted_object("error: pod/x: refused"), None);
    }

    #[test]
    fn several_names_of_one_kind() {
        assert_eq!(
            selection(&args(&["pod", "a", "b", "c"]), false).unwrap(),
            named(&[("pod", "a"), ("pod", "b"), ("pod", "c")])
        );
    }

    #[test]
    fn kind_slash_name_forms() {
        assert_eq!(
            selection(&args(&["pod/a", "svc/b", "deploy/c"]), false).unwrap(),
            named(&[("pod", "a"), ("svc", "b"), ("deploy", "c")])
        );
        let e = selection(&args(&["pod/a", "b"]), false).unwrap_err();
        assert!(e.to_string().contains("KIND/NAME form"), "{e}");
        assert!(selection(&args(&["pod/"]), false).is_err());
        assert!(selection(&args(&["pod", "a/b"]), false).is_err());
    }

    #[test]
    fn several_kinds_times_names() {
        assert_eq!(
            selection(&args(&["pod,svc", "web"]), false).unwrap(),
            named(&[("pod", "web"), ("svc", "web")])
        );
        assert!(selection(&args(&["pod,", "web"]), false).is_err());
    }

    #[test]
    fn all_and_selector_take_kinds_only() {
        assert_eq!(
            selection(&args(&["pods,svc"]), true).unwrap(),
            Selection::Kinds(args(&["pods", "svc"]))
        );
        assert!(selection(&args(&["pods", "a"]), true).is_err());
        assert!(selection(&args(&["pod/a"]), true).is_err());
    }

    #[test]
    fn a_kind_without_a_name_says_what_to_write() {
        let e = selection(&args(&["pod"]), false).unwrap_err().to_string();
        assert!(e.contains("delete pod NAME") && e.contains("--all"), "{e}");
        let e = selection(&[], false).unwrap_err().to_string();
        assert!(e.contains("-f FILE"), "{e}");
    }

    #[test]
    fn not_found_is_kubectls() {
        assert_eq!(
            not_found("po", "x"),
            "Error from server (NotFound): pods \"x\" not found"
        );
        assert_eq!(
            not_found("deploy", "web"),
            "Error from server (NotFound): deployments.apps \"web\" not found"
        );
        assert_eq!(
            not_found("widget", "w"),
            "Error from server (NotFound): widget \"w\" not found"
        );
    }
}
