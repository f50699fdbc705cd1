//! This node as the scheduling predicates see it (name, labels, taints from the daemon's
//! config), and those predicates as upstream's DaemonSet controller applies them
//! (`NodeShouldRunDaemonPod`): spec.nodeName, nodeSelector, required node affinity
//! (matchExpressions In/NotIn/Exists/DoesNotExist/Gt/Lt, matchFields metadata.name) and
//! taints against tolerations (NoSchedule/NoExecute to start, NoExecute to keep running).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    NodeSelectorRequirement, NodeSelectorTerm, PodSpec, Taint, Toleration,
};

pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";
pub const OS_LABEL: &str = "kubernetes.io/os";
pub const ARCH_LABEL: &str = "kubernetes.io/arch";

/// The one node Kinglet runs pods on.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Node {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
}

/// Go's name for this machine's architecture (what `kubernetes.io/arch` holds).
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

impl Node {
    /// Node `name` with the well-known labels (`kubernetes.io/hostname`, `/os`, `/arch`) and the
    /// user's `labels` (which may override them), and `taints` in kubelet's
    /// `--register-with-taints` form (`key[=value]:Effect`).
    pub fn new(
        name: &str,
        labels: &BTreeMap<String, String>,
        taints: &[String],
    ) -> Result<Node, String> {
        let mut l = BTreeMap::from([
            (HOSTNAME_LABEL.to_owned(), name.to_owned()),
            (OS_LABEL.to_owned(), std::env::consts::OS.to_owned()),
            (ARCH_LABEL.to_owned(), go_arch().to_owned()),
        ]);
        l.extend(labels.clone());
        let taints = taints
            .iter()
            .map(|t| parse_taint(t))
            .collect::<Result<_, _>>()?;
        Ok(Node {
            name: name.to_owned(),
            labels: l,
            taints,
        })
    }
}

/// `key[=value]:Effect`, as kubelet's `--register-with-taints` and `kubectl taint` take it.
pub fn parse_taint(s: &str) -> Result<Taint, String> {
    let (kv, effect) = s.rsplit_once(':').ok_or_else(|| {
        format!("taint {s:?}: want key[=value]:Effect, e.g. dedicated=infra:NoSchedule")
    })?;
    if !["NoSchedule", "PreferNoSchedule", "NoExecute"].contains(&effect) {
        return Err(format!(
            "taint {s:?}: effect {effect:?} is not NoSchedule, PreferNoSchedule or NoExecute"
        ));
    }
    let (key, value) = match kv.split_once('=') {
        Some((k, v)) => (k, Some(v.to_owned())),
        None => (kv, None),
    };
    if key.is_empty() {
        return Err(format!("taint {s:?}: the key is empty"));
    }
    Ok(Taint {
        key: key.to_owned(),
        value,
        effect: effect.to_owned(),
        time_added: None,
    })
}

/// Whether `t` tolerates `taint` (upstream's `Toleration.ToleratesTaint`).
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    let effect = t.effect.as_deref().unwrap_or("");
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = t.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match t.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" => t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        _ => false,
    }
}

/// The first taint with an effect `filter` admits that no toleration tolerates.
pub fn untolerated<'a>(
    taints: &'a [Taint],
    tolerations: &[Toleration],
    filter: impl Fn(&Taint) -> bool,
) -> Option<&'a Taint> {
    taints
        .iter()
        .filter(|t| filter(t))
        .find(|taint| !tolerations.iter().any(|t| tolerates(t, taint)))
}

fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    let int = |s: &str| s.parse::<i64>().ok();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(have), Some(want)) =
                (value.and_then(int), values.first().and_then(|s| int(s)))
            else {
                return false;
            };
            if r.operator == "Gt" {
                have > want
            } else {
                have < want
            }
        }
        _ => false,
    }
}

/// One nodeSelectorTerm: every expression and field requirement holds (an empty term matches
/// no node).
pub fn term_matches(term: &NodeSelectorTerm, node: &Node) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    exprs
        .iter()
        .all(|r| requirement_matches(r, node.labels.get(&r.key).map(String::as_str)))
        && fields.iter().all(|r| {
            let v = (r.key == "metadata.name").then_some(node.name.as_str());
            requirement_matches(r, v)
        })
}

/// nodeSelector and required node affinity (terms ORed) admit `node`.
pub fn affinity_matches(spec: &PodSpec, node: &Node) -> bool {
    let selector_ok = spec
        .node_selector
        .iter()
        .flatten()
        .all(|(k, v)| node.labels.get(k) == Some(v));
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    selector_ok
        && required.is_none_or(|r| r.node_selector_terms.iter().any(|t| term_matches(t, node)))
}

/// Upstream's `NodeShouldRunDaemonPod` for a daemon pod `spec` (its tolerations already
/// including the DaemonSet defaults): (should run, should keep running if already there).
pub fn should_run(spec: &PodSpec, node: &Node) -> (bool, bool) {
    if spec
        .node_name
        .as_deref()
        .is_some_and(|n| !n.is_empty() && n != node.name)
    {
        return (false, false);
    }
    if !affinity_matches(spec, node) {
        return (false, false);
    }
    let tol = spec.tolerations.as_deref().unwrap_or_default();
    let blocking = |t: &Taint| t.effect == "NoSchedule" || t.effect == "NoExecute";
    if untolerated(&node.taints, tol, blocking).is_some() {
        let evicting = untolerated(&node.taints, tol, |t| t.effect == "NoExecute");
        return (false, evicting.is_none());
    }
    (true, true)
}

/// The tolerations the DaemonSet controller adds to every daemon pod (upstream's
/// `AddOrUpdateDaemonPodTolerations`): node conditions never evict or block a daemon.
pub fn add_daemon_tolerations(spec: &mut PodSpec) {
    let mut add = vec![
        ("node.kubernetes.io/not-ready", "NoExecute"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
        ("node.kubernetes.io/disk-pressure", "NoSchedule"),
        ("node.kubernetes.io/memory-pressure", "NoSchedule"),
        ("node.kubernetes.io/pid-pressure", "NoSchedule"),
        ("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if spec.host_network == Some(true) {
        add.push(("node.kubernetes.io/network-unavailable", "NoSchedule"));
    }
    let tols = spec.tolerations.get_or_insert_with(Vec::new);
    for (key, effect) in add {
        let t = Toleration {
            key: Some(key.into()),
            operator: Some("Exists".into()),
            effect: Some(effect.into()),
            ..Default::default()
        };
        let present = tols.iter().any(|x| {
            x.key.as_deref() == Some(key)
                && x.effect.as_deref() == Some(effect)
                && x.operator.as_deref() == Some("Exists")
        });
        if !present {
            tols.push(t);
        }
    }
}
