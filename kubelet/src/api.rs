//! The objects API of the mini-kubelet (`kinglet apply`, `delete`, `get`): objects are
//! stored (create or update, keeping uid and creation time), then the dispatcher is woken.
//! `get` returns Pods with their current status and, for one named Pod, its events.

use kinglet_manifest::{Object, ObjectKey};
use kinglet_proto::admin;

use crate::{services, status, KubeletError, Supervisor};

impl Supervisor {
    /// `kinglet apply`.
    pub async fn apply(
        &self,
        req: admin::ApplyRequest,
    ) -> Result<admin::ApplyResponse, KubeletError> {
        let objs = kinglet_manifest::parse(&req.source, &req.content)
            .map_err(|e| KubeletError::invalid("manifest", e.to_string()))?;
        let warnings: Vec<String> = objs
            .iter()
            .flat_map(|o| {
                let k = o.key();
                kinglet_manifest::ignored_fields(o)
                    .into_iter()
                    .map(move |f| {
                        format!(
                            "Warning: {}/{}: {f} is not supported by kinglet and is ignored",
                            k.kind.to_lowercase(),
                            k.name
                        )
                    })
            })
            .collect();
        let mut results = self.apply_objects(objs).await?;
        results.extend(warnings);
        Ok(admin::ApplyResponse { results })
    }

    /// Store objects (create or update), then wake the reconciler. One line per object.
    pub(crate) async fn apply_objects(
        &self,
        objs: Vec<Object>,
    ) -> Result<Vec<String>, KubeletError> {
        let mut results = Vec::new();
        {
            let mut store = self.store.lock().await;
            for mut o in objs {
                let k = o.key();
                let prev = store.map.get(&k).cloned();
                services::admit(
                    self.cfg.services.as_ref(),
                    &store.map,
                    &mut o,
                    prev.as_ref(),
                )?;
                let verdict = match &prev {
                    None => "created",
                    Some(p) if same_content(p, &o) => "unchanged",
                    Some(_) => "configured",
                };
                carry_identity(&mut o, prev.as_ref());
                if verdict != "unchanged" {
                    store.put(o)?;
                }
                results.push(format!("{}/{} {verdict}", k.kind.to_lowercase(), k.name));
            }
        }
        self.wake.notify_one();
        services::READINESS_CHANGED.notify_one();
        Ok(results)
    }

    /// Remove objects (absent ones are skipped), then wake the reconciler.
    pub(crate) async fn delete_keys(
        &self,
        keys: &[ObjectKey],
    ) -> Result<Vec<String>, KubeletError> {
        let mut results = Vec::new();
        {
            let mut store = self.store.lock().await;
            for k in keys {
                if store.remove(k)?.is_some() {
                    results.push(format!("{}/{} deleted", k.kind.to_lowercase(), k.name));
                }
            }
        }
        self.wake.notify_one();
        services::READINESS_CHANGED.notify_one();
        Ok(results)
    }

    /// `kinglet delete`.
    pub async fn delete(
        &self,
        req: admin::DeleteRequest,
    ) -> Result<admin::DeleteResponse, KubeletError> {
        let keys: Vec<ObjectKey> = if !req.content.is_empty() {
            kinglet_manifest::parse(&req.source, &req.content)
                .map_err(|e| KubeletError::invalid("manifest", e.to_string()))?
                .iter()
                .map(Object::key)
                .collect()
        } else {
            vec![ObjectKey {
                kind: kind_of(&req.kind).ok_or_else(|| {
                    KubeletError::invalid("kind", format!("unknown kind {:?}", req.kind))
                })?,
                namespace: if req.namespace.is_empty() {
                    "default".into()
                } else {
                    req.namespace.clone()
                },
                name: req.name.clone(),
            }]
        };
        let mut results = Vec::new();
        {
            let mut store = self.store.lock().await;
            for k in keys {
                match store.remove(&k)? {
                    Some(_) => {
                        results.push(format!("{}/{} deleted", k.kind.to_lowercase(), k.name))
                    }
                    None => {
                        return Err(KubeletError::not_found(
                            "object",
                            format!("{} {}/{}", k.kind, k.namespace, k.name),
                        ))
                    }
                }
            }
        }
        self.wake.notify_one();
        services::READINESS_CHANGED.notify_one();
        Ok(admin::DeleteResponse { results })
    }

    /// `kinglet get`: objects as Kubernetes JSON, Pods with their current status.
    pub async fn get(&self, req: admin::GetRequest) -> Result<admin::GetResponse, KubeletError> {
        let kind = kind_of(&req.kind)
            .ok_or_else(|| KubeletError::invalid("kind", format!("unknown kind {:?}", req.kind)))?;
        let ns = if req.namespace.is_empty() {
            "default"
        } else {
            req.namespace.as_str()
        };
        if kind == "EndpointSlice" {
            // Derived objects, kept in memory by the services loop.
            let objects: Vec<String> = self
                .endpoint_slices((!req.all_namespaces).then_some(ns), &req.name)
                .iter()
                .map(|v| v.to_string())
                .collect();
            if !req.name.is_empty() && objects.is_empty() {
                return Err(KubeletError::not_found(
                    "object",
                    format!("{kind} {ns}/{}", req.name),
                ));
            }
            return Ok(admin::GetResponse {
                objects,
                events: Vec::new(),
            });
        }
        let picked: Vec<Object> = {
            let store = self.store.lock().await;
            store
                .map
                .iter()
                .filter(|(k, _)| k.kind == kind)
                .filter(|(k, _)| req.all_namespaces || k.namespace == ns)
                .filter(|(k, _)| req.name.is_empty() || k.name == req.name)
                .map(|(_, o)| o.clone())
                .collect()
        };
        if !req.name.is_empty() && picked.is_empty() {
            return Err(KubeletError::not_found(
                "object",
                format!("{kind} {ns}/{}", req.name),
            ));
        }
        let mut objects = Vec::new();
        for o in picked {
            let v = match o {
                Object::Pod(mut p) => {
                    p.status = Some(self.pod_status(&p).await);
                    serde_json::to_value(&*p)
                }
                Object::ConfigMap(c) => serde_json::to_value(&c),
                Object::Secret(s) => serde_json::to_value(&s),
                Object::Service(s) => serde_json::to_value(&*s),
            }
            .map_err(|e| KubeletError::internal("encode object", e))?;
            objects.push(v.to_string());
        }
        let mut events = Vec::new();
        if kind == "Pod" && !req.name.is_empty() {
            if let Some(uid) = objects
                .first()
                .and_then(|o| serde_json::from_str::<serde_json::Value>(o).ok())
                .and_then(|v| {
                    v.pointer("/metadata/uid")
                        .and_then(|u| u.as_str())
                        .map(str::to_owned)
                })
            {
                for e in self.events_of(&uid) {
                    let t = status::time_of(e.at);
                    events.push(
                        serde_json::json!({
                            "apiVersion": "v1",
                            "kind": "Event",
                            "type": if e.warning { "Warning" } else { "Normal" },
                            "reason": e.reason,
                            "message": e.message,
                            "lastTimestamp": t,
                        })
                        .to_string(),
                    );
                }
            }
        }
        Ok(admin::GetResponse { objects, events })
    }
}

fn kind_of(s: &str) -> Option<&'static str> {
    match s.to_lowercase().as_str() {
        "pod" | "pods" | "po" => Some("Pod"),
        "configmap" | "configmaps" | "cm" => Some("ConfigMap"),
        "secret" | "secrets" => Some("Secret"),
        "service" | "services" | "svc" => Some("Service"),
        "endpointslice" | "endpointslices" => Some("EndpointSlice"),
        _ => None,
    }
}

/// Equal apart from the identity fields Kinglet fills in.
fn same_content(a: &Object, b: &Object) -> bool {
    let strip = |o: &Object| {
        let mut o = o.clone();
        let m = match &mut o {
            Object::Pod(p) => &mut p.metadata,
            Object::ConfigMap(c) => &mut c.metadata,
            Object::Secret(s) => &mut s.metadata,
            Object::Service(s) => &mut s.metadata,
        };
        m.uid = None;
        m.creation_timestamp = None;
        m.generation = None;
        m.resource_version = None;
        if m.namespace.is_none() {
            m.namespace = Some("default".into());
        }
        if let Object::Pod(p) = &mut o {
            p.status = None;
        }
        o
    };
    strip(a) == strip(b)
}

/// Keep uid and creation time across updates; give new objects theirs.
fn carry_identity(o: &mut Object, prev: Option<&Object>) {
    let prev_meta = prev.map(|p| match p {
        Object::Pod(p) => p.metadata.clone(),
        Object::ConfigMap(c) => c.metadata.clone(),
        Object::Secret(s) => s.metadata.clone(),
        Object::Service(s) => s.metadata.clone(),
    });
    let m = match o {
        Object::Pod(p) => &mut p.metadata,
        Object::ConfigMap(c) => &mut c.metadata,
        Object::Secret(s) => &mut s.metadata,
        Object::Service(s) => &mut s.metadata,
    };
    match prev_meta {
        Some(pm) => {
            m.uid = pm.uid;
            m.creation_timestamp = pm.creation_timestamp;
            m.generation = Some(pm.generation.unwrap_or(1) + 1);
        }
        None => {
            let id = new_uid_hex();
            m.uid = Some(format!(
                "{}-{}-{}-{}-{}",
                &id[0..8],
                &id[8..12],
                &id[12..16],
                &id[16..20],
                &id[20..32]
            ));
            m.creation_timestamp = Some(status::now_time());
            m.generation = Some(1);
        }
    }
    if m.namespace.is_none() {
        m.namespace = Some("default".into());
    }
}

/// 16 random bytes in hex (32 digits), the raw material of a new object's uid.
fn new_uid_hex() -> String {
    use rand::RngCore;
    let mut b = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut b);
    hex::encode(b)
}
