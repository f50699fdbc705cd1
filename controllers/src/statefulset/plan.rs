//! The StatefulSet controller's decisions, pure: from the set's parameters and its pods (by
//! ordinal), what one pass does — upstream's `updateStatefulSet` (`stateful_set_control.go`):
//! replicas first (create missing ordinals, replace failed pods; OrderedReady one at a time in
//! ordinal order, waiting for each to be Running and Ready/available), then the condemned
//! ordinals (highest first; OrderedReady one at a time, only while the others are healthy),
//! then the rolling update (highest ordinal down to the partition, one unhealthy pod at a time,
//! or up to maxUnavailable).

/// One pod of the set as the decisions see it.
#[derive(Debug, Clone, PartialEq)]
pub struct SetPod {
    pub ordinal: i32,
    pub name: String,
    /// Its `controller-revision-hash` label.
    pub revision: String,
    pub running_ready: bool,
    /// Running, Ready and available (minReadySeconds).
    pub available: bool,
    /// Succeeded or Failed: replaced.
    pub terminal: bool,
    /// Being deleted (deletionTimestamp set).
    pub terminating: bool,
}

impl SetPod {
    fn healthy(&self) -> bool {
        self.available && !self.terminating
    }
}

/// How the set updates its pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    OnDelete,
    Rolling {
        partition: i32,
        max_unavailable: i32,
    },
}

/// What decides a pass.
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    /// `spec.ordinals.start`.
    pub start: i32,
    pub replicas: i32,
    /// podManagementPolicy Parallel.
    pub parallel: bool,
    pub strategy: Strategy,
    pub current_revision: String,
    pub update_revision: String,
}

impl Params {
    /// The revision a pod created at `ordinal` gets (upstream's `newVersionedStatefulSetPod`):
    /// the current one below the partition, else the update revision.
    pub fn revision_for(&self, ordinal: i32) -> &str {
        match self.strategy {
            Strategy::Rolling { partition, .. } if ordinal < partition => &self.current_revision,
            _ => &self.update_revision,
        }
    }

    fn in_range(&self, ordinal: i32) -> bool {
        ordinal >= self.start && ordinal < self.start + self.replicas
    }
}

/// One pass's actions, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Create the pod of this ordinal at this revision (its claims first).
    Create { ordinal: i32, revision: String },
    /// Delete this pod (failed, condemned, or to update).
    Delete { name: String, ordinal: i32 },
}

/// Upstream's pass over the set: what to create and delete now.
pub fn plan(p: &Params, pods: &[SetPod]) -> Vec<Step> {
    let mut steps = Vec::new();
    let monotonic = !p.parallel;
    let mut replicas: Vec<&SetPod> = pods.iter().filter(|x| p.in_range(x.ordinal)).collect();
    replicas.sort_by_key(|x| x.ordinal);
    let mut condemned: Vec<&SetPod> = pods.iter().filter(|x| !p.in_range(x.ordinal)).collect();
    condemned.sort_by_key(|x| std::cmp::Reverse(x.ordinal));
    // Replicas, in ordinal order.
    for ord in p.start..p.start + p.replicas {
        match replicas.iter().find(|x| x.ordinal == ord) {
            None => {
                steps.push(Step::Create {
                    ordinal: ord,
                    revision: p.revision_for(ord).to_owned(),
                });
                if monotonic {
                    return steps;
                }
            }
            Some(x) if x.terminal && !x.terminating => {
                steps.push(Step::Delete {
                    name: x.name.clone(),
                    ordinal: ord,
                });
                if monotonic {
                    return steps;
                }
            }
            Some(x) if monotonic && !x.healthy() => return steps,
            Some(_) => {}
        }
    }
    // Condemned, highest ordinal first.
    let first_unhealthy = replicas
        .iter()
        .chain(condemned.iter().rev())
        .find(|x| !x.healthy())
        .map(|x| x.ordinal);
    for x in &condemned {
        if x.terminating {
            if monotonic {
                return steps;
            }
            continue;
        }
        if monotonic && !x.healthy() && first_unhealthy != Some(x.ordinal) {
            return steps;
        }
        steps.push(Step::Delete {
            name: x.name.clone(),
            ordinal: x.ordinal,
        });
        if monotonic {
            return steps;
        }
    }
    rolling_update(p, &replicas, &mut steps);
    steps
}

/// The rolling update, highest ordinal first, down to the partition (after the other steps).
fn rolling_update(p: &Params, replicas: &[&SetPod], steps: &mut Vec<Step>) {
    let Strategy::Rolling {
        partition,
        max_unavailable,
    } = p.strategy
    else {
        return;
    };
    let deleting: Vec<i32> = steps
        .iter()
        .filter_map(|s| match s {
            Step::Delete { ordinal, .. } => Some(*ordinal),
            Step::Create { .. } => None,
        })
        .collect();
    let pod = |o: i32| {
        replicas
            .iter()
            .find(|x| x.ordinal == o && !deleting.contains(&o))
    };
    let outdated = |x: &SetPod| x.revision != p.update_revision && !x.terminating;
    let end = p.start + p.replicas;
    let targets = (partition.max(p.start)..end).rev();
    if max_unavailable <= 1 {
        // Upstream's default: one pod at a time, waiting for each to be healthy again.
        for o in targets {
            let Some(x) = pod(o) else { return };
            if outdated(x) {
                steps.push(Step::Delete {
                    name: x.name.clone(),
                    ordinal: o,
                });
                return;
            }
            if !x.healthy() {
                return;
            }
        }
        return;
    }
    // maxUnavailable: delete outdated pods while fewer than that many are unavailable.
    let unavailable = (p.start..end)
        .filter(|o| pod(*o).is_none_or(|x| !x.healthy()))
        .count() as i32;
    let mut budget = max_unavailable - unavailable;
    for o in targets {
        if budget <= 0 {
            break;
        }
        if let Some(x) = pod(o).filter(|x| outdated(x)) {
            steps.push(Step::Delete {
                name: x.name.clone(),
                ordinal: o,
            });
            if x.healthy() {
                budget -= 1;
            }
        }
    }
}
