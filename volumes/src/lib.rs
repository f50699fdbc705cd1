//! Pod volumes: ConfigMaps and Secrets as files (Secrets on tmpfs only), emptyDir, hostPath,
//! projected and downwardAPI volumes, with the kubelet's atomic-update layout.
//!
//! Empty for now: the CRI path mounts what the client's `Mount` list names (see
//! `daemon::runtime::spec`). This crate is filled by the manifests issue, when Kinglet itself
//! starts preparing volumes for pods it runs from Kubernetes YAML.
