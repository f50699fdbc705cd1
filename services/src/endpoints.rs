//! EndpointSlices (discovery.k8s.io/v1) of a Service, computed as the endpointslice
//! controller does: the Pods of the Service's namespace its selector matches, that have an
//! address and are not finished (Succeeded/Failed). Conditions: `serving` is the Pod's Ready
//! condition, `terminating` its deletion mark, `ready` is serving and not terminating — or
//! always true with `publishNotReadyAddresses`. Each Service port's `targetPort` is resolved
//! per Pod (a number as is, a name through the Pod's container ports of that protocol); Pods
//! resolving to the same ports share one slice. A Service without a selector gets none.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// The label that ties a slice to its Service.
pub const LABEL_SERVICE_NAME: &str = "kubernetes.io/service-name";
const LABEL_MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";

/// Whether `pod` matches the Service's selector (an empty or absent selector matches nothing:
/// such a Service's endpoints are managed by hand).
pub fn selects(svc: &Service, pod: &Pod) -> bool {
    let Some(sel) = svc.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
        return false;
    };
    if sel.is_empty() || svc.metadata.namespace != pod.metadata.namespace {
        return false;
    }
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    sel.iter().all(|(k, v)| labels.get(k) == Some(v))
}

fn condition(pod: &Pod, kind: &str) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == kind && c.status == "True"))
}

/// The port `target` names in `pod` for `protocol`, if any.
fn resolve(target: Option<&IntOrString>, port: i32, protocol: &str, pod: &Pod) -> Option<i32> {
    match target {
        None => Some(port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => pod
            .spec
            .as_ref()?
            .containers
            .iter()
            .flat_map(|c| c.ports.iter().flatten())
            .find(|p| {
                p.name.as_deref() == Some(name.as_str())
                    && p.protocol.as_deref().unwrap_or("TCP") == protocol
            })
            .map(|p| p.container_port),
    }
}

/// The slices of `svc` given every Pod of the node (those of other namespaces are skipped).
pub fn slices(svc: &Service, pods: &[Pod]) -> Vec<EndpointSlice> {
    let spec = svc.spec.clone().unwrap_or_default();
    if spec.selector.as_ref().is_none_or(|s| s.is_empty())
        || spec.type_.as_deref() == Some("ExternalName")
    {
        return Vec::new();
    }
    let publish_all = spec.publish_not_ready_addresses == Some(true);
    let svc_ports = spec.ports.clone().unwrap_or_default();
    // Resolved port numbers (None: the pod lacks that named port) → endpoints.
    let mut groups: BTreeMap<Vec<Option<i32>>, Vec<Endpoint>> = BTreeMap::new();
    for pod in pods.iter().filter(|p| selects(svc, p)) {
        let status = pod.status.clone().unwrap_or_default();
        if matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")) {
            continue;
        }
        let Some(ip) = status.pod_ip.filter(|i| !i.is_empty()) else {
            continue;
        };
        let terminating = pod.metadata.deletion_timestamp.is_some();
        let serving = condition(pod, "Ready");
        let resolved: Vec<Option<i32>> = svc_ports
            .iter()
            .map(|p| {
                let proto = p.protocol.as_deref().unwrap_or("TCP");
                resolve(p.target_port.as_ref(), p.port, proto, pod)
            })
            .collect();
        groups.entry(resolved).or_default().push(Endpoint {
            addresses: vec![ip],
            conditions: Some(EndpointConditions {
                ready: Some(publish_all || (serving && !terminating)),
                serving: Some(publish_all || serving),
                terminating: Some(terminating),
            }),
            node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
            target_ref: Some(k8s_openapi::api::core::v1::ObjectReference {
                kind: Some("Pod".into()),
                namespace: pod.metadata.namespace.clone(),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
                ..Default::default()
            }),
            // Only for the Service the pod names as its subdomain (the controller's rule).
            hostname: pod
                .spec
                .as_ref()
                .filter(|s| s.subdomain.is_some() && s.subdomain == svc.metadata.name)
                .and_then(|s| s.hostname.clone())
                .filter(|h| !h.is_empty()),
            ..Default::default()
        });
    }
    let name = svc.metadata.name.clone().unwrap_or_default();
    groups
        .into_iter()
        .enumerate()
        .map(|(i, (resolved, mut endpoints))| {
            endpoints.sort_by(|a, b| a.addresses.cmp(&b.addresses));
            let ports = svc_ports
                .iter()
                .zip(&resolved)
                .filter_map(|(p, n)| {
                    n.map(|n| EndpointPort {
                        name: Some(p.name.clone().unwrap_or_default()),
                        port: Some(n),
                        protocol: Some(p.protocol.clone().unwrap_or_else(|| "TCP".into())),
                        app_protocol: p.app_protocol.clone(),
                    })
                })
                .collect();
            EndpointSlice {
                metadata: ObjectMeta {
                    name: Some(format!("{name}-{i}")),
                    namespace: svc.metadata.namespace.clone(),
                    labels: Some(BTreeMap::from([
                        (LABEL_SERVICE_NAME.to_owned(), name.clone()),
                        (
                            LABEL_MANAGED_BY.to_owned(),
                            "endpointslice-controller.k8s.io".to_owned(),
                        ),
                    ])),
                    ..Default::default()
                },
                address_type: "IPv4".into(),
                endpoints,
                ports: Some(ports),
            }
        })
        .collect()
}

/// The EndpointSlices the endpointslicemirroring controller makes of v1 Endpoints (same
/// namespace, labelled with the Endpoints' name, which is their Service's): one per subset,
/// `addresses` ready, `notReadyAddresses` not.
pub fn mirror(e: &k8s_openapi::api::core::v1::Endpoints) -> Vec<EndpointSlice> {
    let name = e.metadata.name.clone().unwrap_or_default();
    e.subsets
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, s)| {
            let mut endpoints = Vec::new();
            for (list, ready) in [(&s.addresses, true), (&s.not_ready_addresses, false)] {
                for a in list.iter().flatten() {
                    endpoints.push(Endpoint {
                        addresses: vec![a.ip.clone()],
                        conditions: Some(EndpointConditions {
                            ready: Some(ready),
                            serving: Some(ready),
                            terminating: Some(false),
                        }),
                        hostname: a.hostname.clone(),
                        ..Default::default()
                    });
                }
            }
            let ports = s
                .ports
                .iter()
                .flatten()
                .map(|p| EndpointPort {
                    name: Some(p.name.clone().unwrap_or_default()),
                    port: Some(p.port),
                    protocol: Some(p.protocol.clone().unwrap_or_else(|| "TCP".into())),
                    app_protocol: p.app_protocol.clone(),
                })
                .collect();
            EndpointSlice {
                metadata: ObjectMeta {
                    name: Some(format!("{name}-mirror-{i}")),
                    namespace: e.metadata.namespace.clone(),
                    labels: Some(BTreeMap::from([
                        (LABEL_SERVICE_NAME.to_owned(), name.clone()),
                        (
                            LABEL_MANAGED_BY.to_owned(),
                            "endpointslicemirroring-controller.k8s.io".to_owned(),
                        ),
                    ])),
                    ..Default::default()
                },
                address_type: "IPv4".into(),
                endpoints,
                ports: Some(ports),
            }
        })
        .collect()
}

/// The slices of a Service without a selector: the hand-applied ones (`stored`) of its
/// namespace labelled `kubernetes.io/service-name: <its name>`. An endpoint without a `ready`
/// condition counts as ready, as consumers of the API read a missing one.
pub fn manual(svc: &Service, stored: &[EndpointSlice]) -> Vec<EndpointSlice> {
    let spec = svc.spec.clone().unwrap_or_default();
    if spec.selector.as_ref().is_some_and(|s| !s.is_empty())
        || spec.type_.as_deref() == Some("ExternalName")
    {
        return Vec::new();
    }
    stored
        .iter()
        .filter(|s| {
            s.metadata.namespace.as_deref().unwrap_or("default")
                == svc.metadata.namespace.as_deref().unwrap_or("default")
                && s.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(LABEL_SERVICE_NAME))
                    == svc.metadata.name.as_ref()
        })
        .map(|s| {
            let mut s = s.clone();
            for e in &mut s.endpoints {
                let c = e.conditions.get_or_insert_with(Default::default);
                c.ready = Some(c.ready.unwrap_or(true));
                c.serving = Some(c.serving.unwrap_or(c.ready == Some(true)));
                c.terminating = Some(c.terminating.unwrap_or(false));
            }
            s
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        Container, ContainerPort, PodCondition, PodSpec, PodStatus, ServicePort, ServiceSpec,
    };

    fn svc(target: IntOrString, publish: bool) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("default".into()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                selector: Some(BTreeMap::from([("app".into(), "web".into())])),
                ports: Some(vec![ServicePort {
                    name: Some("http".into()),
                    port: 80,
                    target_port: Some(target),
                    ..Default::default()
                }]),
                publish_not_ready_addresses: Some(publish),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn pod(name: &str, app: &str, ip: &str, ready: bool, port: (&str, i32)) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                labels: Some(BTreeMap::from([("app".into(), app.into())])),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    ports: Some(vec![ContainerPort {
                        name: Some(port.0.into()),
                        container_port: port.1,
                        ..Default::default()
                    }]),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some("Running".into()),
                pod_ip: Some(ip.into()).filter(|i: &String| !i.is_empty()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    fn ready_of(s: &EndpointSlice) -> Vec<(String, bool, bool)> {
        s.endpoints
            .iter()
            .map(|e| {
                let c = e.conditions.clone().unwrap();
                (e.addresses[0].clone(), c.ready.unwrap(), c.serving.unwrap())
            })
            .collect()
    }

    #[test]
    fn readiness_and_selector() {
        let pods = [
            pod("a", "web", "10.85.0.2", true, ("web", 8080)),
            pod("b", "web", "10.85.0.3", false, ("web", 8080)),
            pod("c", "db", "10.85.0.4", true, ("web", 8080)),
            pod("d", "web", "", true, ("web", 8080)),
        ];
        let s = slices(&svc(IntOrString::Int(8080), false), &pods);
        assert_eq!(s.len(), 1);
        assert_eq!(
            ready_of(&s[0]),
            vec![
                ("10.85.0.2".into(), true, true),
                ("10.85.0.3".into(), false, false)
            ]
        );
        assert_eq!(s[0].ports.as_ref().unwrap()[0].port, Some(8080));
        assert_eq!(
            s[0].metadata.labels.as_ref().unwrap()[LABEL_SERVICE_NAME],
            "web"
        );
        let s = slices(&svc(IntOrString::Int(8080), true), &pods);
        assert_eq!(ready_of(&s[0])[1], ("10.85.0.3".into(), true, true));
    }

    #[test]
    fn terminating_pods_serve_but_are_not_ready() {
        let mut p = pod("a", "web", "10.85.0.2", true, ("web", 8080));
        p.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            Default::default(),
        ));
        let s = slices(&svc(IntOrString::Int(8080), false), &[p]);
        let c = s[0].endpoints[0].conditions.clone().unwrap();
        assert_eq!(
            (c.ready, c.serving, c.terminating),
            (Some(false), Some(true), Some(true))
        );
    }

    #[test]
    fn named_target_ports_split_slices() {
        let pods = [
            pod("a", "web", "10.85.0.2", true, ("http", 8080)),
            pod("b", "web", "10.85.0.3", true, ("http", 9090)),
            pod("c", "web", "10.85.0.4", true, ("other", 7070)),
        ];
        let s = slices(&svc(IntOrString::String("http".into()), false), &pods);
        let mut got: Vec<(Vec<i32>, Vec<String>)> = s
            .iter()
            .map(|s| {
                (
                    s.ports
                        .as_ref()
                        .unwrap()
                        .iter()
                        .filter_map(|p| p.port)
                        .collect(),
                    s.endpoints.iter().map(|e| e.addresses[0].clone()).collect(),
                )
            })
            .collect();
        got.sort();
        assert_eq!(
            got,
            vec![
                (vec![], vec!["10.85.0.4".to_string()]),
                (vec![8080], vec!["10.85.0.2".to_string()]),
                (vec![9090], vec!["10.85.0.3".to_string()]),
            ]
        );
    }

    #[test]
    fn no_selector_no_slices() {
        let mut s = svc(IntOrString::Int(80), false);
        s.spec.as_mut().unwrap().selector = None;
        assert!(slices(&s, &[pod("a", "web", "10.85.0.2", true, ("web", 80))]).is_empty());
    }

    #[test]
    fn selectorless_service_takes_its_hand_applied_slices() {
        let mut plain = svc(IntOrString::Int(8080), false);
        plain.spec.as_mut().unwrap().selector = None;
        let slice = |name: &str, svc_name: &str, ready: Option<bool>| EndpointSlice {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                labels: Some(BTreeMap::from([(
                    LABEL_SERVICE_NAME.to_owned(),
                    svc_name.to_owned(),
                )])),
                ..Default::default()
            },
            address_type: "IPv4".into(),
            endpoints: vec![Endpoint {
                addresses: vec!["192.0.2.9".into()],
                conditions: ready.map(|r| EndpointConditions {
                    ready: Some(r),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ports: None,
        };
        let stored = [
            slice("mine", "web", None),
            slice("unready", "web", Some(false)),
            slice("other", "db", None),
        ];
        let got = manual(&plain, &stored);
        let names: Vec<_> = got
            .iter()
            .map(|s| s.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(names, ["mine", "unready"]);
        // No ready condition reads as ready; a stated one is kept.
        let c = got[0].endpoints[0].conditions.clone().unwrap();
        assert_eq!(
            (c.ready, c.serving, c.terminating),
            (Some(true), Some(true), Some(false))
        );
        assert_eq!(
            got[1].endpoints[0].conditions.clone().unwrap().ready,
            Some(false)
        );
        // A Service with a selector ignores hand-applied slices.
        assert!(manual(&svc(IntOrString::Int(8080), false), &stored).is_empty());
    }

    #[test]
    fn endpoints_are_mirrored_one_slice_per_subset() {
        let e: k8s_openapi::api::core::v1::Endpoints = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "default"},
            "subsets": [
                {"addresses": [{"ip": "192.0.2.1", "hostname": "a"}],
                 "notReadyAddresses": [{"ip": "192.0.2.2"}],
                 "ports": [{"name": "http", "port": 8080}]},
                {"addresses": [{"ip": "192.0.2.3"}], "ports": [{"name": "http", "port": 9090}]}
            ]
        }))
        .unwrap();
        let m = mirror(&e);
        assert_eq!(m.len(), 2);
        let ready: Vec<_> = m[0]
            .endpoints
            .iter()
            .map(|e| (e.addresses[0].as_str(), e.conditions.clone().unwrap().ready))
            .collect();
        assert_eq!(
            ready,
            [("192.0.2.1", Some(true)), ("192.0.2.2", Some(false))]
        );
        assert_eq!(m[0].endpoints[0].hostname.as_deref(), Some("a"));
        assert_eq!(m[1].ports.as_ref().unwrap()[0].port, Some(9090));
        let mut plain = svc(IntOrString::Int(8080), false);
        plain.spec.as_mut().unwrap().selector = None;
        assert_eq!(manual(&plain, &m).len(), 2);
    }
}
