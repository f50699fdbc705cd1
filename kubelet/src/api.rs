//! The objects API of the mini-kubelet (`kinglet apply`, `delete`, `get`): objects are
//! stored (create or update, keeping uid and creation time), then the dispatcher is woken.
//! `get` returns Pods with their current status and, for one named Pod, its events.

use kinglet_manifest::{Object, ObjectKey};
use kinglet_proto::admin;

use crate::{graceful, serviceaccounts, services, status, KubeletError, Supervisor};

impl Supervisor {
    /// `kinglet apply`.
    pub async fn apply(
        &self,
        req: admin::ApplyRequest,
    ) -> Result<admin::ApplyResponse, KubeletError> {
        // A sealed manifest is opened here, in memory, with the daemon's age identity.
        let (content, _) = self
            .cfg
            .keys
            .text_of(&req.source, req.content.into_bytes())
            .map_err(|e| KubeletError::invalid("manifest", crate::error::chain(&e)))?;
        // Document by document, as kubectl applies: a bad document is an `error:` line and
        // does not stop the others.
        let (objs, errors) = kinglet_manifest::parse_each(&req.source, &content);
        let (objs, refused) = match req.namespace.as_str() {
            "" => (objs, Vec::new()),
            ns => crate::namespaces::enforce(objs, ns),
        };
        if objs.is_empty() && refused.is_empty() {
            if let Some(e) = errors.first() {
                return Err(KubeletError::invalid("manifest", e.to_string()));
            }
        }
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
        let mut results = self.apply_objects(objs, req.create_only).await?;
        results.extend(refused);
        results.extend(warnings);
        results.extend(errors.iter().map(|e| format!("error: {e}")));
        Ok(admin::ApplyResponse { results })
    }

    /// Store objects (create or update; only create with `create_only`), then wake the
    /// reconciler. One line per object.
    pub(crate) async fn apply_objects(
        &self,
        objs: Vec<Object>,
        create_only: bool,
    ) -> Result<Vec<String>, KubeletError> {
        let mut results = Vec::new();
        {
            let mut store = self.store.lock().await;
            for mut o in objs {
                let k = o.key();
                let prev = store.map.get(&k).cloned();
                if create_only && prev.is_some() {
                    let resource = resource_of(k.kind).unwrap_or(k.kind);
                    results.push(format!(
                        "error: Error from server (AlreadyExists): {resource} \"{}\" already exists",
                        k.name
                    ));
                    continue;
                }
                if prev.is_none() {
                    crate::namespaces::admit(&store.map, &k)?;
                }
                // Compared with what the controllers added carried over (status, owner,
                // revision), so re-applying an unchanged workload is "unchanged".
                carry_identity(&mut o, prev.as_ref());
                // Admission: a refused object is an `error:` line; the others are stored.
                let admitted = services::admit(
                    self.cfg.services.as_ref(),
                    &store.map,
                    &mut o,
                    prev.as_ref(),
                )
                .map_err(|e| crate::error::chain(&e))
                .and_then(|()| serviceaccounts::admit_pod(&store.map, &mut o));
                if let Err(e) = admitted {
                    tracing::warn!(object = %k, error = %e, "object refused at admission");
                    results.push(format!("error: {}/{}: {e}", k.kind.to_lowercase(), k.name));
                    continue;
                }
                if let Some(sa) = serviceaccounts::default_if_missing(&store.map, &k.namespace) {
                    store.put(sa)?;
                }
                let verdict = match &prev {
                    None => "created",
                    Some(p) if same_content(p, &o) => "unchanged",
                    Some(_) => "configured",
                };
                if verdict != "unchanged" {
                    store.put(o)?;
                }
                results.push(format!("{}/{} {verdict}", applied_ref(k.kind), k.name));
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
                if graceful::delete(&mut store, k)? {
                    results.push(deleted_line(k.kind, &k.name));
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
            let (content, _) = self
                .cfg
                .keys
                .text_of(&req.source, req.content.into_bytes())
                .map_err(|e| KubeletError::invalid("manifest", crate::error::chain(&e)))?;
            kinglet_manifest::parse_each(&req.source, &content)
                .0
                .iter()
                .map(Object::key)
                .collect()
        } else {
            vec![ObjectKey {
                kind: kind_of(&req.kind).ok_or_else(|| {
                    KubeletError::invalid("kind", format!("unknown kind {:?}", req.kind))
                })?,
                namespace: if kind_of(&req.kind) == Some("Namespace") {
                    String::new()
                } else if req.namespace.is_empty() {
                    "default".into()
                } else {
                    req.namespace.clone()
                },
                name: req.name.clone(),
            }]
        };
        let policy = crate::cascade::parse(&req.propagation_policy)?;
        let mut results = Vec::new();
        {
            let mut store = self.store.lock().await;
            for k in keys {
                if policy == crate::cascade::Propagation::Orphan {
                    let uid = store.map.get(&k).and_then(|o| o.meta().uid.clone());
                    if let Some(uid) = uid {
                        crate::cascade::orphan_dependents(&mut store, &uid)?;
                    }
                }
                if policy == crate::cascade::Propagation::Foreground
                    && crate::cascade::delete_foreground(&mut store, &k)?
                {
                    results.push(deleted_line(k.kind, &k.name));
                    continue;
                }
                // A Namespace is marked Terminating; the namespace controller removes it.
                if k.kind == "Namespace" {
                    if let Some(mut o) = store.map.get(&k).cloned() {
                        crate::namespaces::mark_terminating(&mut o, status::now_time())?;
                        store.put(o)?;
                        results.push(deleted_line("Namespace", &k.name));
                        continue;
                    }
                }
                match graceful::delete(&mut store, &k)?.then_some(()) {
                    Some(()) => results.push(deleted_line(k.kind, &k.name)),
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
        if crate::events_api::is_events(&req.kind) {
            return self.get_events(&req).await;
        }
        let kind = kind_of(&req.kind)
            .ok_or_else(|| KubeletError::invalid("kind", format!("unknown kind {:?}", req.kind)))?;
        let ns = if req.namespace.is_empty() {
            "default"
        } else {
            req.namespace.as_str()
        };
        let selector = if req.label_selector.is_empty() {
            None
        } else {
            Some(
                kinglet_manifest::parse_selector(&req.label_selector)
                    .map_err(|e| KubeletError::invalid("selector (-l)", e))?,
            )
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
        let picked = self.pick(kind, ns, &req, selector.as_ref()).await;
        if !req.name.is_empty() && picked.is_empty() {
            return Err(KubeletError::not_found(
                "object",
                format!("{kind} {ns}/{}", req.name),
            ));
        }
        let objects = self.encode_with_status(picked).await?;
        let events = if kind == "Pod" && !req.name.is_empty() {
            self.pod_events(objects.first())
        } else {
            Vec::new()
        };
        Ok(admin::GetResponse { objects, events })
    }

    /// The stored objects of `kind` a get request selects.
    async fn pick(
        &self,
        kind: &str,
        ns: &str,
        req: &admin::GetRequest,
        selector: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>,
    ) -> Vec<Object> {
        let store = self.store.lock().await;
        store
            .map
            .iter()
            .filter(|(k, _)| k.kind == kind)
            // Namespaces are cluster-scoped.
            .filter(|(k, _)| req.all_namespaces || k.namespace == ns || kind == "Namespace")
            .filter(|(k, _)| req.name.is_empty() || k.name == req.name)
            .filter(|(_, o)| {
                selector.is_none_or(|sel| {
                    let labels = o.meta().labels.clone().unwrap_or_default();
                    kinglet_manifest::selector_matches(sel, &labels).unwrap_or(false)
                })
            })
            .map(|(_, o)| o.clone())
            .collect()
    }

    /// The objects as JSON, pods with their status from the runtime.
    async fn encode_with_status(&self, picked: Vec<Object>) -> Result<Vec<String>, KubeletError> {
        let mut objects = Vec::new();
        // Several pods: one listing of the runtime for all of them.
        let view = if picked
            .iter()
            .filter(|o| matches!(o, Object::Pod(_)))
            .count()
            > 1
        {
            crate::status_batch::RuntimeView::take(&*self.rt).await
        } else {
            None
        };
        for o in picked {
            let v = match o {
                Object::Pod(mut p) => {
                    let spec = p.spec.get_or_insert_with(Default::default);
                    if spec.node_name.as_deref().unwrap_or_default().is_empty() {
                        // Every pod is bound to this node, as a scheduler would have bound it.
                        spec.node_name = Some(self.cfg.node_name.clone());
                    }
                    p.status = Some(match &view {
                        Some(view) => self.pod_status_in(view, &p).await,
                        None => self.pod_status(&p).await,
                    });
                    Object::Pod(p).to_json()
                }
                o => o.to_json(),
            }
            .map_err(|e| KubeletError::internal("encode object", e))?;
            objects.push(v.to_string());
        }
        Ok(objects)
    }

    /// The events of the pod encoded in `pod` (JSON), as Event objects.
    fn pod_events(&self, pod: Option<&String>) -> Vec<String> {
        let mut events = Vec::new();
        if let Some(uid) = pod
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
        events
    }
}

/// How kubectl names an applied object's kind in its output: the kind in lower case, with
/// its API group (`deployment.apps`, `job.batch`, `ingress.networking.k8s.io`; `pod`).
pub fn applied_ref(kind: &str) -> String {
    let group = resource_of(kind)
        .and_then(|r| r.split_once('.'))
        .map(|(_, g)| g);
    match group {
        Some(g) => format!("{}.{g}", kind.to_lowercase()),
        None => kind.to_lowercase(),
    }
}

/// kubectl's line for a deleted object: `pod "web" deleted`, `deployment.apps "web" deleted`.
pub fn deleted_line(kind: &str, name: &str) -> String {
    format!("{} \"{name}\" deleted", applied_ref(kind))
}

/// The API resource of a kind as the user typed it (`po`, `deploy`, `Deployment`), in
/// kubectl's words for errors: `pods`, `deployments.apps`.
pub fn resource_of(s: &str) -> Option<&'static str> {
    Some(match kind_of(s)? {
        "Pod" => "pods",
        "ConfigMap" => "configmaps",
        "Secret" => "secrets",
        "Deployment" => "deployments.apps",
        "ReplicaSet" => "replicasets.apps",
        "Job" => "jobs.batch",
        "DaemonSet" => "daemonsets.apps",
        "CronJob" => "cronjobs.batch",
        "Namespace" => "namespaces",
        "Service" => "services",
        "ServiceAccount" => "serviceaccounts",
        "EndpointSlice" => "endpointslices.discovery.k8s.io",
        "Endpoints" => "endpoints",
        "Ingress" => "ingresses.networking.k8s.io",
        "IngressClass" => "ingressclasses.networking.k8s.io",
        "StatefulSet" => "statefulsets.apps",
        "PersistentVolumeClaim" => "persistentvolumeclaims",
        "ControllerRevision" => "controllerrevisions.apps",
        _ => return None,
    })
}

fn kind_of(s: &str) -> Option<&'static str> {
    match s.to_lowercase().as_str() {
        "pod" | "pods" | "po" => Some("Pod"),
        "configmap" | "configmaps" | "cm" => Some("ConfigMap"),
        "secret" | "secrets" => Some("Secret"),
        "deployment" | "deployments" | "deploy" => Some("Deployment"),
        "replicaset" | "replicasets" | "rs" => Some("ReplicaSet"),
        "job" | "jobs" => Some("Job"),
        "daemonset" | "daemonsets" | "ds" => Some("DaemonSet"),
        "cronjob" | "cronjobs" | "cj" => Some("CronJob"),
        "namespace" | "namespaces" | "ns" => Some("Namespace"),
        "service" | "services" | "svc" => Some("Service"),
        "serviceaccount" | "serviceaccounts" | "sa" => Some("ServiceAccount"),
        "endpointslice" | "endpointslices" => Some("EndpointSlice"),
        "endpoints" | "ep" => Some("Endpoints"),
        "ingress" | "ingresses" | "ing" => Some("Ingress"),
        "ingressclass" | "ingressclasses" => Some("IngressClass"),
        "statefulset" | "statefulsets" | "sts" => Some("StatefulSet"),
        "persistentvolumeclaim" | "persistentvolumeclaims" | "pvc" => Some("PersistentVolumeClaim"),
        "controllerrevision" | "controllerrevisions" => Some("ControllerRevision"),
        _ => None,
    }
}

/// Equal apart from the identity fields Kinglet fills in.
fn same_content(a: &Object, b: &Object) -> bool {
    let strip = |o: &Object| {
        let mut o = o.clone();
        let m = o.meta_mut();
        m.uid = None;
        m.creation_timestamp = None;
        m.generation = None;
        m.resource_version = None;
        if m.namespace.is_none() {
            m.namespace = Some("default".into());
        }
        clear_status(&mut o);
        o
    };
    strip(a) == strip(b)
}

/// Drop the status (what controllers and the kubelet write, not the user).
fn clear_status(o: &mut Object) {
    match o {
        Object::Pod(p) => p.status = None,
        Object::Deployment(d) => d.status = None,
        Object::ReplicaSet(r) => r.status = None,
        Object::Job(j) => j.status = None,
        Object::DaemonSet(d) => d.status = None,
        Object::CronJob(c) => c.status = None,
        Object::Namespace(n) => n.status = None,
        Object::Ingress(i) => i.status = None,
        Object::StatefulSet(s) => s.status = None,
        Object::PersistentVolumeClaim(c) => c.status = None,
        Object::ControllerRevision(_)
        | Object::ConfigMap(_)
        | Object::Secret(_)
        | Object::Service(_)
        | Object::ServiceAccount(_)
        | Object::EndpointSlice(_)
        | Object::Endpoints(_)
        | Object::IngressClass(_) => {}
    }
}

/// Annotations the workload controllers write on objects a user applies.
const CONTROLLER_ANNOTATIONS: &[&str] = &[
    "deployment.kubernetes.io/revision",
    "deployment.kubernetes.io/desired-replicas",
    "deployment.kubernetes.io/max-replicas",
];

/// Keep uid and creation time across updates; give new objects theirs.
fn carry_identity(o: &mut Object, prev: Option<&Object>) {
    let prev_meta = prev.map(|p| p.meta().clone());
    // Status belongs to the controllers: an apply keeps it.
    match (&mut *o, prev) {
        (Object::Deployment(d), Some(Object::Deployment(p))) => d.status = p.status.clone(),
        (Object::ReplicaSet(r), Some(Object::ReplicaSet(p))) => r.status = p.status.clone(),
        (Object::Job(j), Some(Object::Job(p))) => j.status = p.status.clone(),
        (Object::DaemonSet(d), Some(Object::DaemonSet(p))) => d.status = p.status.clone(),
        (Object::CronJob(c), Some(Object::CronJob(p))) => c.status = p.status.clone(),
        (Object::Namespace(n), Some(Object::Namespace(p))) => {
            n.status = p.status.clone();
            n.metadata.deletion_timestamp = p.metadata.deletion_timestamp.clone();
        }
        (Object::Ingress(i), Some(Object::Ingress(p))) => i.status = p.status.clone(),
        (Object::StatefulSet(s), Some(Object::StatefulSet(p))) => s.status = p.status.clone(),
        (Object::PersistentVolumeClaim(c), Some(Object::PersistentVolumeClaim(p))) => {
            c.status = p.status.clone();
            // The provisioner's binding is kept across applies that name no volume.
            if let (Some(s), Some(ps)) = (&mut c.spec, &p.spec) {
                if s.volume_name.is_none() {
                    s.volume_name = ps.volume_name.clone();
                }
            }
        }
        _ => {}
    }
    let m = o.meta_mut();
    match prev_meta {
        Some(pm) => {
            if m.owner_references.is_none() {
                m.owner_references = pm.owner_references;
            }
            // Annotations the controllers keep on their objects.
            for a in CONTROLLER_ANNOTATIONS {
                if let Some(v) = pm.annotations.as_ref().and_then(|x| x.get(*a)) {
                    m.annotations
                        .get_or_insert_with(Default::default)
                        .entry((*a).to_owned())
                        .or_insert_with(|| v.clone());
                }
            }
            m.uid = pm.uid;
            m.creation_timestamp = pm.creation_timestamp;
            // A Pod being deleted stays so (as on the API server).
            m.deletion_timestamp = pm.deletion_timestamp;
            m.deletion_grace_period_seconds = pm.deletion_grace_period_seconds;
            m.generation = Some(pm.generation.unwrap_or(1) + 1);
        }
        None => {
            m.uid = Some(new_uid());
            m.creation_timestamp = Some(status::now_time());
            m.generation = Some(1);
        }
    }
    if m.namespace.is_none() {
        m.namespace = Some("default".into());
    }
}

/// A new object's uid: 16 random bytes as a UUID (`8-4-4-4-12` hex digits).
pub(crate) fn new_uid() -> String {
    use rand::RngCore;
    let mut b = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut b);
    let id = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &id[0..8],
        &id[8..12],
        &id[12..16],
        &id[16..20],
        &id[20..32]
    )
}

#[cfg(test)]
mod applied_ref_tests {
    use super::applied_ref;

    #[test]
    fn kinds_carry_their_api_group_as_kubectl_prints_them() {
        assert_eq!(applied_ref("Deployment"), "deployment.apps");
        assert_eq!(applied_ref("Job"), "job.batch");
        assert_eq!(applied_ref("CronJob"), "cronjob.batch");
        assert_eq!(applied_ref("StatefulSet"), "statefulset.apps");
        assert_eq!(applied_ref("Ingress"), "ingress.networking.k8s.io");
        assert_eq!(applied_ref("Pod"), "pod");
        assert_eq!(applied_ref("ConfigMap"), "configmap");
        assert_eq!(applied_ref("Namespace"), "namespace");
    }
}
