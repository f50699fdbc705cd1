//! The applied objects at one moment, as the dispatcher publishes them to every pod worker:
//! Pods by uid, and the ConfigMap and Secret data their volumes, env and pull secrets read,
//! and the Services their service link variables name.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Pod, Service};

use crate::podspec::Sources;

/// ConfigMap and Secret data at one moment, by (namespace, name).
#[derive(Debug, Default)]
pub struct Snapshot {
    pub config_maps: HashMap<(String, String), BTreeMap<String, Vec<u8>>>,
    pub secrets: HashMap<(String, String), BTreeMap<String, Vec<u8>>>,
    /// Every Service (service link variables).
    pub services: Vec<Service>,
    /// PersistentVolumeClaims and their bound directories (`crate::pvc`).
    pub claims: HashMap<(String, String), crate::pvc::Claim>,
}

impl Sources for Snapshot {
    fn config_map(&self, ns: &str, name: &str) -> Option<BTreeMap<String, Vec<u8>>> {
        self.config_maps
            .get(&(ns.to_owned(), name.to_owned()))
            .cloned()
    }
    fn secret(&self, ns: &str, name: &str) -> Option<BTreeMap<String, Vec<u8>>> {
        self.secrets.get(&(ns.to_owned(), name.to_owned())).cloned()
    }
    fn services(&self) -> Vec<&Service> {
        self.services.iter().collect()
    }
    fn claim(&self, ns: &str, name: &str) -> crate::pvc::Claim {
        self.claims
            .get(&(ns.to_owned(), name.to_owned()))
            .cloned()
            .unwrap_or(crate::pvc::Claim::Missing)
    }
}

/// The applied objects at one moment, shared by all workers. Pods and the snapshot are
/// shared with the previous publication while unchanged (`crate::pod_sync`).
#[derive(Debug, Default)]
pub struct World {
    /// Pods by uid.
    pub pods: HashMap<String, Arc<Pod>>,
    pub snap: Arc<Snapshot>,
}
