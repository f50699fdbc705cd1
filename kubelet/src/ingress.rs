//! The Ingress controller on this node: at each pass of the services loop (right after the
//! EndpointSlices are recomputed) the Ingresses of Kinglet's class, the Services, their
//! slices and the TLS Secrets become the proxy's routes and certificates
//! (`kinglet-ingress`); its listeners are bound while one such Ingress exists. Each of those
//! Ingresses gets `status.loadBalancer.ingress[].ip` = the host's address.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::networking::v1::{
    Ingress, IngressClass, IngressLoadBalancerIngress, IngressLoadBalancerStatus, IngressStatus,
};
use kinglet_ingress::{CertMap, IngressProxy, Routes};
use kinglet_manifest::Object;

use crate::Supervisor;

/// The proxy, created at the first pass (when the ingress is configured on).
#[derive(Default)]
pub(crate) struct IngressState {
    proxy: tokio::sync::OnceCell<Option<Arc<IngressProxy>>>,
    /// The last bind error, logged once until it changes.
    last_error: std::sync::Mutex<Option<String>>,
}

impl Supervisor {
    /// The proxy, if the ingress is on (None also when it could not be created).
    async fn ingress_proxy(&self) -> Option<Arc<IngressProxy>> {
        let cfg = self.cfg.ingress.clone()?;
        self.ingress
            .proxy
            .get_or_init(|| async move {
                match IngressProxy::new(cfg) {
                    Ok(p) => Some(Arc::new(p)),
                    Err(e) => {
                        tracing::error!(err = %e, "ingress proxy not started");
                        None
                    }
                }
            })
            .await
            .clone()
    }

    /// One pass: routes, certificates, listeners on or off, status. True while an Ingress of
    /// ours is stored or the listeners are to be bound again (the services loop keeps looking).
    pub(crate) async fn sync_ingress(&self) -> bool {
        let Some(proxy) = self.ingress_proxy().await else {
            return false;
        };
        let (mut ingresses, mut classes, mut services, mut secrets) = (
            Vec::new(),
            Vec::new(),
            Vec::<Service>::new(),
            Vec::<Secret>::new(),
        );
        {
            let store = self.store.lock().await;
            for o in store.map.values() {
                match o {
                    Object::Ingress(i) => ingresses.push((**i).clone()),
                    Object::IngressClass(c) => classes.push((**c).clone()),
                    Object::Service(s) => services.push((**s).clone()),
                    Object::Secret(s) if s.type_.as_deref() == Some("kubernetes.io/tls") => {
                        secrets.push(s.clone())
                    }
                    _ => {}
                }
            }
        }
        let classes: Vec<IngressClass> = classes;
        let ours: Vec<Ingress> = ingresses
            .into_iter()
            .filter(|i| kinglet_ingress::is_ours(i, &classes))
            .collect();
        let routes = {
            let slices = self
                .services
                .slices
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            Routes::build(&ours, &services, &slices)
        };
        let certs = CertMap::build(&ours, &secrets, &proxy.certs());
        let res = proxy.update(routes, certs, !ours.is_empty()).await;
        let err = res.err().map(|e| {
            let mut s = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(x) = src {
                s.push_str(&format!(": {x}"));
                src = x.source();
            }
            s
        });
        let retry = err.is_some();
        {
            let mut last = self
                .ingress
                .last_error
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if err != *last {
                if let Some(e) = &err {
                    tracing::warn!(err = %e, "ingress listeners not bound; retrying");
                }
                *last = err;
            }
        }
        self.write_ingress_status(&ours).await;
        retry || !ours.is_empty()
    }

    /// `status.loadBalancer.ingress[0].ip` = the host's address on each of `ours`.
    async fn write_ingress_status(&self, ours: &[Ingress]) {
        let route = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
        let Some(ip) = kinglet_ingress::host_address(&route) else {
            return;
        };
        let want = IngressStatus {
            load_balancer: Some(IngressLoadBalancerStatus {
                ingress: Some(vec![IngressLoadBalancerIngress {
                    ip: Some(ip.to_string()),
                    ..Default::default()
                }]),
            }),
        };
        for ing in ours {
            if ing.status.as_ref() == Some(&want) {
                continue;
            }
            let key = Object::Ingress(Box::new(ing.clone())).key();
            let res = self
                .modify_object(&key, false, |o| match o {
                    Object::Ingress(i) if i.status.as_ref() != Some(&want) => {
                        i.status = Some(want.clone());
                        true
                    }
                    _ => false,
                })
                .await;
            if let Err(e) = res {
                tracing::warn!(ingress = %key, err = %e, "ingress status not written");
            }
        }
    }
}
