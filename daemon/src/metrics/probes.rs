//! `kinglet_prober_probe_total{namespace,pod,container,probe_type,result}` (the kubelet's
//! `prober_probe_total`): the supervisor counts every probe run of its pods' containers
//! (`Supervisor::probe_results`); each poll round adds what grew since the last one to the
//! counters, and drops the series of pods whose worker is gone.

use std::collections::HashMap;

use kinglet_kubelet::metrics_api::ProbeCount;

use super::{Labels, Metrics};

/// The counts seen at the last round, by series.
pub type Seen = HashMap<Labels, u64>;

/// What one round found: increments to add, and series that are gone.
#[derive(Debug, Default, PartialEq)]
pub struct Round {
    pub add: Vec<(Labels, u64)>,
    pub gone: Vec<Labels>,
}

fn labels(c: &ProbeCount) -> Labels {
    vec![
        ("namespace".into(), c.namespace.clone()),
        ("pod".into(), c.pod.clone()),
        ("container".into(), c.container.clone()),
        ("probe_type".into(), c.probe_type.into()),
        ("result".into(), c.result.into()),
    ]
}

/// The decision of one round: the growth of each series since `seen` (a count that went down,
/// a pod's worker started again, starts over without taking the counter back), and the series
/// no longer reported.
pub fn observe(seen: &mut Seen, counts: &[ProbeCount]) -> Round {
    let mut round = Round::default();
    let mut now = Seen::new();
    for c in counts {
        let l = labels(c);
        let before = seen.get(&l).copied().unwrap_or(0);
        if c.count > before {
            round.add.push((l.clone(), c.count - before));
        }
        *now.entry(l).or_default() = c.count;
    }
    round.gone = seen
        .keys()
        .filter(|l| !now.contains_key(*l))
        .cloned()
        .collect();
    round.gone.sort();
    *seen = now;
    round
}

/// Apply a round to the counters.
pub fn apply(metrics: &Metrics, round: Round) {
    for (l, n) in round.add {
        metrics.probes.get_or_create(&l).inc_by(n);
    }
    for l in round.gone {
        metrics.probes.remove(&l);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(pod: &str, result: &'static str, count: u64) -> ProbeCount {
        ProbeCount {
            namespace: "default".into(),
            pod: pod.into(),
            pod_uid: format!("uid-{pod}"),
            container: "c".into(),
            probe_type: "Readiness",
            result,
            count,
        }
    }

    #[test]
    fn growth_is_added_and_series_go_with_their_pod() {
        let mut seen = Seen::new();
        let r = observe(&mut seen, &[count("a", "successful", 2)]);
        assert_eq!(r.add.len(), 1);
        assert_eq!(r.add[0].1, 2);
        assert!(r.add[0]
            .0
            .contains(&("probe_type".into(), "Readiness".into())));
        let r = observe(
            &mut seen,
            &[count("a", "successful", 5), count("a", "failed", 1)],
        );
        assert_eq!(r.add.iter().map(|(_, n)| *n).collect::<Vec<_>>(), [3, 1]);
        // Nothing new: nothing added.
        let r = observe(
            &mut seen,
            &[count("a", "successful", 5), count("a", "failed", 1)],
        );
        assert_eq!(r, Round::default());
        // A worker that started again counts from 0: its growth is added from there.
        let r = observe(
            &mut seen,
            &[count("a", "successful", 1), count("a", "failed", 1)],
        );
        assert!(r.add.is_empty() && r.gone.is_empty());
        let r = observe(
            &mut seen,
            &[count("a", "successful", 2), count("a", "failed", 1)],
        );
        assert_eq!(r.add[0].1, 1);
        // The pod is gone: both its series are.
        let r = observe(&mut seen, &[count("b", "successful", 1)]);
        assert_eq!(r.gone.len(), 2);
        assert!(seen.len() == 1);
    }

    #[test]
    fn applied_rounds_are_scraped_as_the_kubelets_series() {
        let m = Metrics::new();
        let mut seen = Seen::new();
        apply(&m, observe(&mut seen, &[count("a", "failed", 3)]));
        let text = m.encode();
        assert!(
            text.contains(
                "kinglet_prober_probe_total{namespace=\"default\",pod=\"a\",container=\"c\",probe_type=\"Readiness\",result=\"failed\"} 3"
            ),
            "{text}"
        );
        apply(&m, observe(&mut seen, &[]));
        assert!(!m.encode().contains("pod=\"a\""));
    }
}
