//! The daemon's side of `Objects/Watch` (`kinglet get -w`): the objects a `GetRequest`
//! selects, sent first as they are (ADDED, then SYNCED), then as they change. Changes are
//! found by listing again whenever the supervisor publishes its objects (at once after a
//! change, else once a second) or the runtime reports a container event (a container created,
//! started, stopped or removed), and comparing with what the client was last sent.

use std::collections::BTreeMap;
use std::sync::Arc;

use kinglet_cri::{CriError, WatchEvents};
use kinglet_kubelet::Supervisor;
use kinglet_proto::{admin, v1};
use tokio::sync::{broadcast, mpsc};

use crate::podruntime::cri_error;

/// Objects by namespace/name, as JSON.
type Listing = BTreeMap<String, String>;

/// Start a watch of `req`: the current objects are listed before this returns (so a bad
/// kind or a missing named object is an error of the call); the events follow on the
/// receiver until it is dropped.
pub async fn watch(
    sup: Arc<Supervisor>,
    mut containers: broadcast::Receiver<v1::ContainerEventResponse>,
    req: admin::GetRequest,
) -> Result<WatchEvents, CriError> {
    let mut world = sup.subscribe();
    world.borrow_and_update();
    let first = listing(sup.get(req.clone()).await.map_err(cri_error)?.objects);
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        let mut known = Listing::new();
        for (ty, object) in diff(&known, &first).into_iter().chain([synced()]) {
            if tx
                .send(Ok(admin::WatchEvent {
                    r#type: ty.into(),
                    object,
                }))
                .await
                .is_err()
            {
                return;
            }
        }
        known = first;
        loop {
            tokio::select! {
                _ = tx.closed() => return,
                r = world.changed() => if r.is_err() { return },
                r = containers.recv() => if matches!(r, Err(broadcast::error::RecvError::Closed)) {
                    return;
                },
            }
            let now = match sup.get(req.clone()).await {
                Ok(r) => listing(r.objects),
                // A named object that went away.
                Err(kinglet_kubelet::error::KubeletError::NotFound { .. }) => Listing::new(),
                Err(e) => {
                    let _ = tx.send(Err(cri_error(e))).await;
                    return;
                }
            };
            for (ty, object) in diff(&known, &now) {
                if tx
                    .send(Ok(admin::WatchEvent {
                        r#type: ty.into(),
                        object,
                    }))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            known = now;
        }
    });
    Ok(rx)
}

fn synced() -> (&'static str, String) {
    ("SYNCED", String::new())
}

/// Key each object by its namespace and name (a listing's objects are unique by them).
fn listing(objects: Vec<String>) -> Listing {
    objects
        .into_iter()
        .map(|o| {
            let key = serde_json::from_str::<serde_json::Value>(&o)
                .ok()
                .map(|v| {
                    let s = |p: &str| {
                        v.pointer(p)
                            .and_then(|x| x.as_str())
                            .unwrap_or("")
                            .to_owned()
                    };
                    format!("{}/{}", s("/metadata/namespace"), s("/metadata/name"))
                })
                .unwrap_or_default();
            (key, o)
        })
        .collect()
}

/// What changed from `old` to `new`: ADDED and MODIFIED objects as they are now, DELETED ones
/// as they were last seen; in key order, the deletions last.
fn diff(old: &Listing, new: &Listing) -> Vec<(&'static str, String)> {
    let mut out: Vec<(&'static str, String)> = new
        .iter()
        .filter_map(|(k, o)| match old.get(k) {
            None => Some(("ADDED", o.clone())),
            Some(prev) if prev != o => Some(("MODIFIED", o.clone())),
            Some(_) => None,
        })
        .collect();
    out.extend(
        old.iter()
            .filter(|(k, _)| !new.contains_key(*k))
            .map(|(_, o)| ("DELETED", o.clone())),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(name: &str, phase: &str) -> String {
        serde_json::json!({"kind": "Pod", "metadata": {"namespace": "default", "name": name},
            "status": {"phase": phase}})
        .to_string()
    }

    #[test]
    fn diff_names_added_modified_and_deleted_objects() {
        let old = listing(vec![
            obj("a", "Pending"),
            obj("b", "Running"),
            obj("c", "Running"),
        ]);
        let new = listing(vec![
            obj("a", "Running"),
            obj("b", "Running"),
            obj("d", "Pending"),
        ]);
        let types: Vec<(&str, String)> = diff(&old, &new)
            .into_iter()
            .map(|(t, o)| {
                let v: serde_json::Value = serde_json::from_str(&o).unwrap();
                (
                    t,
                    format!(
                        "{}:{}",
                        v["metadata"]["name"].as_str().unwrap(),
                        v["status"]["phase"].as_str().unwrap()
                    ),
                )
            })
            .collect();
        assert_eq!(
            types,
            vec![
                ("MODIFIED", "a:Running".to_owned()),
                ("ADDED", "d:Pending".to_owned()),
                ("DELETED", "c:Running".to_owned()),
            ]
        );
        assert!(diff(&new, &new).is_empty());
    }

    #[test]
    fn the_first_listing_is_all_added() {
        let first = listing(vec![obj("x", "Running"), obj("y", "Running")]);
        let d = diff(&Listing::new(), &first);
        assert_eq!(d.len(), 2);
        assert!(d.iter().all(|(t, _)| *t == "ADDED"));
    }
}
