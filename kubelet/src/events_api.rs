//! `kinglet get events`: the recent events of every pod of a namespace (or all), as
//! `v1.Event` objects naming their pod (`involvedObject`), oldest first, as `kubectl get
//! events` sorts them.

use kinglet_manifest::Object;
use kinglet_proto::admin;

use crate::{status, KubeletError, Supervisor};

/// Whether `kind` asks for events.
pub(crate) fn is_events(kind: &str) -> bool {
    matches!(kind.to_lowercase().as_str(), "event" | "events" | "ev")
}

impl Supervisor {
    pub(crate) async fn get_events(
        &self,
        req: &admin::GetRequest,
    ) -> Result<admin::GetResponse, KubeletError> {
        let ns = if req.namespace.is_empty() {
            "default"
        } else {
            req.namespace.as_str()
        };
        let pods: Vec<(String, String, String)> = {
            let store = self.store.lock().await;
            store
                .map
                .iter()
                .filter(|(k, _)| req.all_namespaces || k.namespace == ns)
                .filter_map(|(k, o)| match o {
                    Object::Pod(p) => Some((
                        k.namespace.clone(),
                        k.name.clone(),
                        p.metadata.uid.clone().unwrap_or_default(),
                    )),
                    _ => None,
                })
                .collect()
        };
        let mut events = Vec::new();
        for (namespace, name, uid) in pods {
            for e in self.events_of(&uid) {
                events.push((e.at, namespace.clone(), name.clone(), uid.clone(), e));
            }
        }
        events.sort_by_key(|e| e.0);
        let objects = events
            .into_iter()
            .enumerate()
            .map(|(i, (at, namespace, name, uid, e))| {
                serde_json::json!({
                    "apiVersion": "v1",
                    "kind": "Event",
                    "metadata": {"name": format!("{name}.{at:x}.{i}"), "namespace": namespace},
                    "involvedObject": {"kind": "Pod", "name": name, "namespace": namespace, "uid": uid},
                    "type": if e.warning { "Warning" } else { "Normal" },
                    "reason": e.reason,
                    "message": e.message,
                    "lastTimestamp": status::time_of(at),
                    "source": {"component": "kubelet"},
                })
                .to_string()
            })
            .collect();
        Ok(admin::GetResponse {
            objects,
            events: Vec::new(),
        })
    }
}
