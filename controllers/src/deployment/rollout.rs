//! The Deployment controller's pure decisions, as upstream's `deployment/util` and
//! `rolling.go`/`recreate.go` make them: fenceposts from maxSurge/maxUnavailable (percentages
//! of replicas, surge rounded up, unavailable down, never both 0), the pod-template-hash, and
//! one step of a RollingUpdate or a Recreate over views of the ReplicaSets.

use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;

use crate::common::ALPHANUMS;

/// One ReplicaSet as the Deployment controller sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct RsView {
    pub name: String,
    /// spec.replicas
    pub replicas: i32,
    /// status.replicas
    pub actual: i32,
    pub ready: i32,
    pub available: i32,
    pub revision: i64,
    pub created: Option<Timestamp>,
}

/// `v` (an int, or a percentage of `total`) as a count; percentages rounded up or down.
pub fn scaled_value(v: &IntOrString, total: i32, round_up: bool) -> Result<i32, String> {
    match v {
        IntOrString::Int(n) => Ok(*n),
        IntOrString::String(s) => {
            let pct: i64 = s
                .strip_suffix('%')
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| {
                    format!("invalid value {s:?}: must be an integer or a percentage")
                })?;
            let x = pct * total as i64;
            Ok(if round_up { (x + 99) / 100 } else { x / 100 } as i32)
        }
    }
}

/// (maxSurge, maxUnavailable) for `desired` replicas; defaults 25% each; when both come out
/// 0, maxUnavailable is 1 (so a rollout can progress).
pub fn resolve_fenceposts(
    surge: Option<&IntOrString>,
    unavailable: Option<&IntOrString>,
    desired: i32,
) -> Result<(i32, i32), String> {
    let quarter = IntOrString::String("25%".into());
    let s = scaled_value(surge.unwrap_or(&quarter), desired, true)?;
    let u = scaled_value(unavailable.unwrap_or(&quarter), desired, false)?;
    Ok(if s == 0 && u == 0 { (0, 1) } else { (s, u) })
}

/// A Deployment's rolling parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rolling {
    pub replicas: i32,
    pub max_surge: i32,
    /// Already capped at `replicas` (upstream's `MaxUnavailable`).
    pub max_unavailable: i32,
}

impl Rolling {
    pub fn new(replicas: i32, surge: i32, unavailable: i32) -> Rolling {
        Rolling {
            replicas,
            max_surge: surge,
            max_unavailable: if replicas == 0 {
                0
            } else {
                unavailable.min(replicas)
            },
        }
    }
}

/// Replicas the new ReplicaSet should have now (upstream's `NewRSNewReplicas`, rolling).
pub fn new_rs_replicas(r: &Rolling, all: &[RsView], new_replicas: i32) -> i32 {
    let current: i32 = all.iter().map(|v| v.replicas).sum();
    let max_total = r.replicas + r.max_surge;
    if current >= max_total {
        return new_replicas;
    }
    let up = (max_total - current).min(r.replicas - new_replicas);
    new_replicas + up.max(0)
}

/// One step of a RollingUpdate: the (ReplicaSet, replicas) to set, in order. Scale the new
/// ReplicaSet up within maxSurge; failing that, scale the old ones down — first their
/// unavailable pods, then available ones while at least `replicas - maxUnavailable` stay
/// available — oldest first.
pub fn rolling_step(r: &Rolling, new: &RsView, old: &[RsView]) -> Vec<(String, i32)> {
    let mut all: Vec<RsView> = old.to_vec();
    all.push(new.clone());
    if new.replicas > r.replicas {
        return vec![(new.name.clone(), r.replicas)];
    }
    if new.replicas < r.replicas {
        let n = new_rs_replicas(r, &all, new.replicas);
        if n != new.replicas {
            return vec![(new.name.clone(), n)];
        }
    }
    let mut old: Vec<RsView> = old.iter().filter(|v| v.replicas > 0).cloned().collect();
    if old.is_empty() {
        return vec![];
    }
    old.sort_by(|a, b| a.created.cmp(&b.created).then(a.name.cmp(&b.name)));
    let all_pods: i32 = all.iter().map(|v| v.replicas).sum();
    let min_available = r.replicas - r.max_unavailable;
    let new_unavailable = new.replicas - new.available;
    let max_scaled_down = all_pods - min_available - new_unavailable;
    if max_scaled_down <= 0 {
        return vec![];
    }
    let mut out = Vec::new();
    // Unhealthy replicas first: they count for nothing.
    let mut cleaned = 0;
    for v in old.iter_mut() {
        if cleaned >= max_scaled_down {
            break;
        }
        if v.replicas == 0 || v.replicas == v.available {
            continue;
        }
        let down = (max_scaled_down - cleaned).min(v.replicas - v.available);
        v.replicas -= down;
        cleaned += down;
        out.push((v.name.clone(), v.replicas));
    }
    // Then available ones, keeping minAvailable.
    let available: i32 = old.iter().map(|v| v.available).sum::<i32>() + new.available;
    if available > min_available {
        let total = available - min_available;
        let mut done = 0;
        for v in old.iter_mut() {
            if done >= total {
                break;
            }
            if v.replicas == 0 {
                continue;
            }
            let down = v.replicas.min(total - done);
            v.replicas -= down;
            done += down;
            match out.iter_mut().find(|(n, _)| *n == v.name) {
                Some(e) => e.1 = v.replicas,
                None => out.push((v.name.clone(), v.replicas)),
            }
        }
    }
    out
}

/// One step of a Recreate rollout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecreateStep {
    /// Scale these old ReplicaSets to 0.
    ScaleDownOld(Vec<String>),
    /// Old pods still exist: wait for them to be gone.
    WaitOldPods,
    /// Create the new ReplicaSet (absent) or scale it to the replicas.
    ScaleUpNew,
    Done,
}

pub fn recreate_step(
    replicas: i32,
    new: Option<&RsView>,
    old: &[RsView],
    old_pods: usize,
) -> RecreateStep {
    let active: Vec<String> = old
        .iter()
        .filter(|v| v.replicas > 0)
        .map(|v| v.name.clone())
        .collect();
    if !active.is_empty() {
        return RecreateStep::ScaleDownOld(active);
    }
    if old_pods > 0 {
        return RecreateStep::WaitOldPods;
    }
    match new {
        Some(n) if n.replicas == replicas => RecreateStep::Done,
        _ => RecreateStep::ScaleUpNew,
    }
}

/// FNV-1a, 32 bits.
fn fnv32a(data: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in data {
        h ^= *b as u32;
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// The pod-template-hash of a template (without that label) and the collision count: FNV-1a
/// of the template's JSON, its decimal digits mapped onto the safe alphabet as upstream's
/// `SafeEncodeString` does.
pub fn template_hash(t: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let mut t = t.clone();
    if let Some(l) = t.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        l.remove(super::HASH_LABEL);
    }
    let mut data = serde_json::to_vec(&t).unwrap_or_default();
    if let Some(c) = collision_count {
        data.extend_from_slice(&(c as u32).to_le_bytes());
    }
    fnv32a(&data)
        .to_string()
        .bytes()
        .map(|b| ALPHANUMS[b as usize % ALPHANUMS.len()] as char)
        .collect()
}

/// Templates equal apart from the pod-template-hash label (upstream's `EqualIgnoreHash`).
pub fn equal_ignore_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    let strip = |t: &PodTemplateSpec| {
        let mut t = t.clone();
        let m = t.metadata.get_or_insert_with(Default::default);
        if let Some(l) = m.labels.as_mut() {
            l.remove(super::HASH_LABEL);
            if l.is_empty() {
                m.labels = None;
            }
        }
        t
    };
    strip(a) == strip(b)
}
