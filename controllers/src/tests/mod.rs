//! Decision tests of the controllers against [`FakeStore`](crate::fake::FakeStore): no root,
//! no containers, a clock the test moves.

mod cronjob;
mod daemonset;
mod deployment;
mod foreground;
mod job;
mod job_tracking;
mod namespace;
mod replicaset;
mod statefulset;

use kinglet_manifest::Object;

use crate::fake::FakeStore;

/// Parse one object of a manifest (validated as `kinglet apply` does).
pub fn object(yaml: &str) -> Object {
    kinglet_manifest::parse("test.yaml", yaml)
        .unwrap()
        .remove(0)
}

/// Apply a manifest to the fake store (as a user's apply: a new object, or a new spec).
pub fn apply(store: &FakeStore, yaml: &str) -> Object {
    let o = object(yaml);
    match store.obj(o.kind(), &o.key().name) {
        None => store.put(o),
        Some(prev) => {
            let mut o = o;
            let pm = prev.meta().clone();
            let m = o.meta_mut();
            m.uid = pm.uid;
            m.generation = Some(pm.generation.unwrap_or(1) + 1);
            m.creation_timestamp = pm.creation_timestamp;
            match (&mut o, prev) {
                (Object::Deployment(d), Object::Deployment(p)) => {
                    d.status = p.status;
                    let a = d.metadata.annotations.get_or_insert_with(Default::default);
                    a.extend(p.metadata.annotations.unwrap_or_default());
                }
                (Object::ReplicaSet(r), Object::ReplicaSet(p)) => r.status = p.status,
                (Object::Job(j), Object::Job(p)) => j.status = p.status,
                (Object::DaemonSet(d), Object::DaemonSet(p)) => d.status = p.status,
                (Object::CronJob(c), Object::CronJob(p)) => c.status = p.status,
                (Object::StatefulSet(s), Object::StatefulSet(p)) => s.status = p.status,
                _ => {}
            }
            store.objects.lock().unwrap().insert(o.key(), o.clone());
            o
        }
    }
}
