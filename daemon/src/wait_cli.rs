//! `kinglet wait`, as kubectl's: wait until objects meet a condition — `--for=condition=Ready`
//! (a `status.conditions` entry, `=false` for its opposite), `--for=jsonpath='{.status.phase}'=
//! Running`, `--for=delete` or `--for=create` — printing `pod/web condition met` for each, or
//! kubectl's timeout error after `--timeout`.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::Value;
use tonic::transport::Channel;

use crate::cli::ClientFlags;
use crate::delete_cli::{selection_for, Selection};
use crate::kubectl::{fetch, status_err};

/// `kinglet wait`'s arguments.
#[derive(Debug, clap::Args)]
pub struct WaitArgs {
    /// `TYPE NAME...`, `TYPE/NAME...`, or `TYPE` with --all or -l.
    #[arg(required = true)]
    pub objects: Vec<String>,
    /// `condition=NAME[=VALUE]`, `jsonpath={PATH}=VALUE`, `delete` or `create`.
    #[arg(long = "for")]
    pub for_: String,
    /// How long to wait (e.g. 30s, 5m; default 30s).
    #[arg(long, default_value = "30s")]
    pub timeout: String,
    #[command(flatten)]
    pub picking: crate::label_cli::Picking,
    #[command(flatten)]
    pub client: ClientFlags,
}

/// What `--for` waits for.
#[derive(Debug, PartialEq, Eq)]
pub enum For {
    /// A condition of this type with this status (`True` unless given).
    Condition {
        kind: String,
        status: String,
    },
    /// A JSONPath's value.
    JsonPath {
        path: String,
        value: String,
    },
    Delete,
    Create,
}

/// Read `--for` as kubectl does.
pub fn parse_for(s: &str) -> anyhow::Result<For> {
    if s == "delete" {
        return Ok(For::Delete);
    }
    if s == "create" {
        return Ok(For::Create);
    }
    if let Some(c) = s.strip_prefix("condition=") {
        let (kind, status) = match c.split_once('=') {
            Some((k, v)) => (k, v),
            None => (c, "True"),
        };
        if kind.is_empty() {
            bail!("--for={s}: the condition's name is missing");
        }
        return Ok(For::Condition {
            kind: kind.to_owned(),
            status: status.to_owned(),
        });
    }
    if let Some(j) = s.strip_prefix("jsonpath=") {
        let Some(end) = j.rfind('}') else {
            bail!("--for={s}: expected jsonpath={{PATH}}=VALUE");
        };
        let (path, rest) = j.split_at(end + 1);
        let rest = rest.strip_prefix('\'').unwrap_or(rest);
        let value = rest.strip_prefix('=').unwrap_or_default();
        let path = path.trim_matches('\'');
        return Ok(For::JsonPath {
            path: path.to_owned(),
            value: value.trim_matches('\'').to_owned(),
        });
    }
    bail!("--for={s}: expected condition=NAME[=VALUE], jsonpath={{PATH}}=VALUE, delete or create")
}

/// Whether object `o` meets `f` (not for Delete/Create, which look at its presence).
pub fn met(f: &For, o: &Value) -> anyhow::Result<bool> {
    Ok(match f {
        For::Condition { kind, status } => o["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| {
                c["type"]
                    .as_str()
                    .is_some_and(|t| t.eq_ignore_ascii_case(kind))
                    && c["status"]
                        .as_str()
                        .is_some_and(|v| v.eq_ignore_ascii_case(status))
            }),
        For::JsonPath { path, value } => {
            let got = crate::output::jsonpath(path, o)?;
            if value.is_empty() {
                !got.is_empty()
            } else {
                got == *value
            }
        }
        For::Delete | For::Create => true,
    })
}

fn all_met(f: &For, objs: &[Value]) -> anyhow::Result<bool> {
    for o in objs {
        if !met(f, o)? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The objects named on the command line, read as `delete` reads them: (kind, Some(name))
/// pairs, or (kind, None) for all of a kind (filtered by the selector).
fn targets(args: &WaitArgs) -> anyhow::Result<Vec<(String, Option<String>)>> {
    Ok(
        match selection_for("wait", &args.objects, args.picking.any())? {
            Selection::Named(named) => named.into_iter().map(|(k, n)| (k, Some(n))).collect(),
            Selection::Kinds(kinds) => kinds.into_iter().map(|k| (k, None)).collect(),
        },
    )
}

/// Run `kinglet wait`.
pub async fn wait(ch: Channel, args: WaitArgs) -> anyhow::Result<()> {
    let f = parse_for(&args.for_)?;
    let timeout = crate::logs_cli::parse_since(&args.timeout).context("--timeout")?;
    let deadline = Instant::now() + timeout;
    let ns = &args.client.namespace;
    for (kind, name) in targets(&args)? {
        let sel = args.picking.selector.as_deref();
        let mut seen = Vec::new();
        loop {
            let r = fetch(ch.clone(), &kind, name.as_deref(), sel, ns, false).await;
            let objs = match r {
                Ok(o) => o,
                Err(s) if s.code() == tonic::Code::NotFound => Vec::new(),
                Err(s) => return Err(status_err("get")(s)),
            };
            let done = match &f {
                For::Delete => objs.is_empty(),
                For::Create => !objs.is_empty(),
                _ if objs.is_empty() => match &name {
                    Some(n) => {
                        eprintln!("{}", crate::delete_cli::not_found(&kind, n));
                        return Err(crate::podref::Reported.into());
                    }
                    None => false,
                },
                _ => all_met(&f, &objs)?,
            };
            if !objs.is_empty() {
                seen = objs;
            }
            if done {
                break;
            }
            if Instant::now() >= deadline {
                let resource = kinglet_kubelet::resource_of(&kind).unwrap_or(&kind);
                let what = name
                    .clone()
                    .map_or(resource.to_owned(), |n| format!("{resource}/{n}"));
                eprintln!("error: timed out waiting for the condition on {what}");
                return Err(crate::podref::Reported.into());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        for o in &seen {
            let k = o["kind"].as_str().unwrap_or_default();
            let n = o["metadata"]["name"].as_str().unwrap_or_default();
            println!("{}/{n} condition met", kinglet_kubelet::applied_ref(k));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn for_reads_as_kubectls() {
        assert_eq!(
            parse_for("condition=Ready").unwrap(),
            For::Condition {
                kind: "Ready".into(),
                status: "True".into()
            }
        );
        assert_eq!(
            parse_for("condition=Available=false").unwrap(),
            For::Condition {
                kind: "Available".into(),
                status: "false".into()
            }
        );
        assert_eq!(
            parse_for("jsonpath='{.status.phase}'=Running").unwrap(),
            For::JsonPath {
                path: "{.status.phase}".into(),
                value: "Running".into()
            }
        );
        assert_eq!(parse_for("delete").unwrap(), For::Delete);
        assert!(parse_for("ready").is_err());
    }

    #[test]
    fn conditions_and_paths_are_met_or_not() {
        let pod = json!({"status": {"phase": "Running", "conditions": [
            {"type": "Ready", "status": "True"}, {"type": "PodScheduled", "status": "True"}]}});
        let ready = parse_for("condition=ready").unwrap();
        assert!(
            met(&ready, &pod).unwrap(),
            "types compare case-insensitively"
        );
        assert!(!met(&parse_for("condition=Ready=false").unwrap(), &pod).unwrap());
        assert!(met(
            &parse_for("jsonpath={.status.phase}=Running").unwrap(),
            &pod
        )
        .unwrap());
        assert!(!met(&parse_for("jsonpath={.status.phase}=Failed").unwrap(), &pod).unwrap());
        let job = json!({"status": {"conditions": [{"type": "Complete", "status": "True"}]}});
        assert!(met(&parse_for("condition=complete").unwrap(), &job).unwrap());
    }
}
