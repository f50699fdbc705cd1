//! A Kubernetes Pod → CRI configs (`PodSandboxConfig`, `ContainerConfig`), as the kubelet
//! builds them: pure, so it is unit-tested without a daemon.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use k8s_openapi::api::core::v1::{Container, EnvVar, Pod, PodSpec};
use kinglet_proto::v1;

use crate::downward;

/// Labels the kubelet puts on sandboxes and containers (CRI tools and users filter on them).
pub const LABEL_POD_NAME: &str = "io.kubernetes.pod.name";
pub const LABEL_POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
pub const LABEL_POD_UID: &str = "io.kubernetes.pod.uid";
pub const LABEL_CONTAINER_NAME: &str = "io.kubernetes.container.name";
/// Kinglet's own: the hash of the pod spec a sandbox was made for.
pub const LABEL_SPEC_HASH: &str = "kinglet.io/spec-hash";
/// Kinglet's own: the pod's terminationGracePeriodSeconds.
pub const ANNOTATION_GRACE: &str = "kinglet.io/termination-grace-period";

/// Lookups the translation needs from the object store.
pub trait Sources {
    fn config_map(&self, namespace: &str, name: &str) -> Option<BTreeMap<String, Vec<u8>>>;
    fn secret(&self, namespace: &str, name: &str) -> Option<BTreeMap<String, Vec<u8>>>;
    /// The Services a pod's service link variables come from (all namespaces).
    fn services(&self) -> Vec<&k8s_openapi::api::core::v1::Service> {
        Vec::new()
    }
    /// A PersistentVolumeClaim of `namespace` and where it is bound.
    fn claim(&self, _namespace: &str, _name: &str) -> crate::pvc::Claim {
        crate::pvc::Claim::Missing
    }
}

/// Why a container cannot be configured (the kubelet's CreateContainerConfigError).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

/// A stable hash of the pod spec (what decides "changed → replace").
pub fn spec_hash(pod: &Pod) -> String {
    use std::hash::{Hash, Hasher};
    // Without `nodeName`: `get` shows every pod bound to this node, and a pod applied back
    // with it (by `label`, or a user's edited `get -o yaml`) is the same pod.
    let bound = pod.spec.as_ref().filter(|s| s.node_name.is_some());
    let json = match bound {
        Some(s) => serde_json::to_string(&PodSpec {
            node_name: None,
            ..s.clone()
        }),
        None => serde_json::to_string(&pod.spec),
    }
    .unwrap_or_default();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    json.hash(&mut h);
    format!("{:016x}", h.finish())
}

/// The hostname the kubelet gives a pod: `spec.hostname`, else the pod's name, cut to 63
/// characters with trailing `-` and `.` trimmed (kubelet `truncatePodHostnameIfNeeded`).
pub fn pod_hostname(spec_hostname: Option<&str>, pod_name: &str) -> String {
    const MAX: usize = 63;
    let h = spec_hostname.filter(|h| !h.is_empty()).unwrap_or(pod_name);
    if h.len() <= MAX {
        return h.to_owned();
    }
    let mut end = MAX;
    while !h.is_char_boundary(end) {
        end -= 1;
    }
    h[..end].trim_end_matches(['-', '.']).to_owned()
}

pub fn sandbox_config(pod: &Pod, uid: &str, log_dir: &str, hash: &str) -> v1::PodSandboxConfig {
    let meta = &pod.metadata;
    let spec = pod.spec.clone().unwrap_or_default();
    let name = meta.name.clone().unwrap_or_default();
    let namespace = meta.namespace.clone().unwrap_or_else(|| "default".into());
    let mut labels: HashMap<String, String> = meta
        .labels
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    labels.insert(LABEL_POD_NAME.into(), name.clone());
    labels.insert(LABEL_POD_NAMESPACE.into(), namespace.clone());
    labels.insert(LABEL_POD_UID.into(), uid.into());
    labels.insert(LABEL_SPEC_HASH.into(), hash.into());
    let port_mappings = port_mappings(&spec);
    let pid_mode = if spec.share_process_namespace.unwrap_or(false) {
        v1::NamespaceMode::Pod
    } else {
        v1::NamespaceMode::Container
    };
    let node = |b: Option<bool>, otherwise: v1::NamespaceMode| {
        if b.unwrap_or(false) {
            v1::NamespaceMode::Node as i32
        } else {
            otherwise as i32
        }
    };
    v1::PodSandboxConfig {
        metadata: Some(v1::PodSandboxMetadata {
            name: name.clone(),
            uid: uid.into(),
            namespace,
            attempt: 0,
        }),
        hostname: pod_hostname(spec.hostname.as_deref(), &name),
        log_directory: log_dir.into(),
        // Chosen by dnsPolicy when the sandbox is made (`crate::dns`).
        dns_config: None,
        port_mappings,
        labels,
        annotations: {
            let mut a: HashMap<String, String> = meta
                .annotations
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect();
            // Remembered for a teardown after the Pod object itself is gone.
            a.insert(
                ANNOTATION_GRACE.into(),
                spec.termination_grace_period_seconds
                    .unwrap_or(30)
                    .to_string(),
            );
            a
        },
        linux: Some(v1::LinuxPodSandboxConfig {
            security_context: Some(v1::LinuxSandboxSecurityContext {
                namespace_options: Some(v1::NamespaceOption {
                    network: node(spec.host_network, v1::NamespaceMode::Pod),
                    pid: node(spec.host_pid, pid_mode),
                    ipc: node(spec.host_ipc, v1::NamespaceMode::Pod),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            // Admitted by `sysctl::SysctlAllowlist`; the runtime sets them in the pod's
            // namespaces. Names in dot form, as the kubelet passes them.
            sysctls: spec
                .security_context
                .as_ref()
                .and_then(|s| s.sysctls.as_ref())
                .into_iter()
                .flatten()
                .map(|s| (super::sysctl::dot_form(&s.name), s.value.clone()))
                .collect(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Put the pod's own user namespace (`hostUsers: false`) in its sandbox config.
pub fn set_userns(cfg: &mut v1::PodSandboxConfig, userns: Option<v1::UserNamespace>) {
    let Some(u) = userns else { return };
    let sc = cfg.linux.get_or_insert_with(Default::default);
    put_userns(
        &mut sc
            .security_context
            .get_or_insert_with(Default::default)
            .namespace_options,
        u,
    );
}

/// Put the pod's user namespace options in one of its containers' configs.
pub fn set_container_userns(cfg: &mut v1::ContainerConfig, userns: Option<v1::UserNamespace>) {
    let Some(u) = userns else { return };
    let sc = cfg.linux.get_or_insert_with(Default::default);
    put_userns(
        &mut sc
            .security_context
            .get_or_insert_with(Default::default)
            .namespace_options,
        u,
    );
}

fn put_userns(ns: &mut Option<v1::NamespaceOption>, u: v1::UserNamespace) {
    ns.get_or_insert_with(Default::default).userns_options = Some(u);
}

/// The hostPorts of the pod's containers.
fn port_mappings(spec: &k8s_openapi::api::core::v1::PodSpec) -> Vec<v1::PortMapping> {
    let mut port_mappings = Vec::new();
    for c in &spec.containers {
        for p in c.ports.iter().flatten() {
            if let Some(hp) = p.host_port {
                port_mappings.push(v1::PortMapping {
                    protocol: match p.protocol.as_deref() {
                        Some("UDP") => v1::Protocol::Udp as i32,
                        Some("SCTP") => v1::Protocol::Sctp as i32,
                        _ => v1::Protocol::Tcp as i32,
                    },
                    container_port: p.container_port,
                    host_port: hp,
                    host_ip: p.host_ip.clone().unwrap_or_default(),
                });
            }
        }
    }
    port_mappings
}

/// Expand `$(VAR)` references as Kubernetes does: `$$` escapes, unknown names stay as written.
pub fn expand(s: &str, vars: &HashMap<String, String>) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'$' && i + 1 < b.len() {
            if b[i + 1] == b'$' {
                out.push('$');
                i += 2;
                continue;
            }
            if b[i + 1] == b'(' {
                if let Some(end) = s[i + 2..].find(')') {
                    let name = &s[i + 2..i + 2 + end];
                    match vars.get(name) {
                        Some(v) => out.push_str(v),
                        None => out.push_str(&s[i..i + 3 + end]),
                    }
                    i += 3 + end;
                    continue;
                }
            }
        }
        let ch = s[i..].chars().next().unwrap_or('\0');
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

/// Pod fields a container's env can reference.
pub struct PodFields<'a> {
    pub name: &'a str,
    pub namespace: &'a str,
    pub uid: &'a str,
    pub pod_ip: &'a str,
    pub node_name: &'a str,
    /// The node's address (`status.hostIP`).
    pub host_ip: &'a str,
    /// For `resourceFieldRef` without a limit.
    pub allocatable: crate::downward::Allocatable,
}

/// The kubelet's error for an env source object that is not there (none when optional).
fn missing(optional: bool, kind: &str, name: &str) -> Result<Option<String>, ConfigError> {
    if optional {
        return Ok(None);
    }
    Err(ConfigError(format!("{kind} {name:?} not found")))
}

#[allow(clippy::too_many_arguments)]
fn env_value(
    e: &EnvVar,
    pod_obj: &Pod,
    container: &Container,
    ns: &str,
    pod: &PodFields<'_>,
    src: &dyn Sources,
    vars: &HashMap<String, String>,
) -> Result<Option<String>, ConfigError> {
    if let Some(v) = &e.value {
        return Ok(Some(expand(v, vars)));
    }
    let Some(from) = &e.value_from else {
        return Ok(Some(String::new()));
    };
    if let Some(r) = &from.config_map_key_ref {
        let optional = r.optional.unwrap_or(false);
        let Some(data) = src.config_map(ns, &r.name) else {
            return missing(optional, "configmap", &r.name);
        };
        return match data.get(&r.key) {
            Some(v) => Ok(Some(String::from_utf8_lossy(v).into_owned())),
            None if optional => Ok(None),
            None => Err(ConfigError(format!(
                "couldn't find key {} in ConfigMap {ns}/{}",
                r.key, r.name
            ))),
        };
    }
    if let Some(r) = &from.secret_key_ref {
        let optional = r.optional.unwrap_or(false);
        let Some(data) = src.secret(ns, &r.name) else {
            return missing(optional, "secret", &r.name);
        };
        return match data.get(&r.key) {
            Some(v) => Ok(Some(String::from_utf8_lossy(v).into_owned())),
            None if optional => Ok(None),
            None => Err(ConfigError(format!(
                "couldn't find key {} in Secret {ns}/{}",
                r.key, r.name
            ))),
        };
    }
    let named = |err: ConfigError| ConfigError(format!("env {}: {}", e.name, err.0));
    if let Some(f) = &from.field_ref {
        return downward::field_value(pod_obj, pod, f, downward::Use::Env)
            .map(Some)
            .map_err(named);
    }
    if let Some(r) = &from.resource_field_ref {
        return downward::resource_value(container, r, &pod.allocatable)
            .map(Some)
            .map_err(named);
    }
    Err(ConfigError(format!(
        "env {}: unsupported valueFrom",
        e.name
    )))
}

/// The environment of a container, in order: envFrom sources, then env (later wins).
/// Service link variables come last, each only when no other source set it, and `$(VAR)`
/// references may name them (the kubelet's `makeEnvironmentVariables`).
pub fn container_env(
    pod_obj: &Pod,
    c: &Container,
    ns: &str,
    pod: &PodFields<'_>,
    src: &dyn Sources,
) -> Result<Vec<(String, String)>, ConfigError> {
    let service_env = crate::envvars::service_env(pod_obj, &src.services());
    let mut vars: HashMap<String, String> = HashMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut set = |k: String, v: String, vars: &mut HashMap<String, String>| {
        if !vars.contains_key(&k) {
            order.push(k.clone());
        }
        vars.insert(k, v);
    };
    for from in c.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        let data = if let Some(r) = &from.config_map_ref {
            match src.config_map(ns, &r.name) {
                Some(d) => d,
                None if r.optional.unwrap_or(false) => continue,
                None => return Err(ConfigError(format!("configmap {:?} not found", r.name))),
            }
        } else if let Some(r) = &from.secret_ref {
            match src.secret(ns, &r.name) {
                Some(d) => d,
                None if r.optional.unwrap_or(false) => continue,
                None => return Err(ConfigError(format!("secret {:?} not found", r.name))),
            }
        } else {
            continue;
        };
        for (k, v) in data {
            set(
                format!("{prefix}{k}"),
                String::from_utf8_lossy(&v).into_owned(),
                &mut vars,
            );
        }
    }
    for e in c.env.iter().flatten() {
        let mut visible = service_env.clone().into_iter().collect::<HashMap<_, _>>();
        visible.extend(vars.iter().map(|(k, v)| (k.clone(), v.clone())));
        if let Some(v) = env_value(e, pod_obj, c, ns, pod, src, &visible)? {
            set(e.name.clone(), v, &mut vars);
        }
    }
    for (k, v) in service_env {
        if !vars.contains_key(&k) {
            set(k, v, &mut vars);
        }
    }
    Ok(order
        .into_iter()
        .map(|k| {
            let v = vars[&k].clone();
            (k, v)
        })
        .collect())
}

/// One container's CRI config. `mounts` maps volume names to host paths.
#[allow(clippy::too_many_arguments)]
pub fn container_config(
    pod: &Pod,
    c: &Container,
    attempt: u32,
    ns: &str,
    fields: &PodFields<'_>,
    src: &dyn Sources,
    volumes: &HashMap<String, PathBuf>,
) -> Result<v1::ContainerConfig, ConfigError> {
    let env = container_env(pod, c, ns, fields, src)?;
    let vars: HashMap<String, String> = env.iter().cloned().collect();
    let mut mounts = mounts(c, volumes)?;
    // A claim mounted `readOnly` is read-only in every container (the kubelet's mounter).
    let read_only_claims: Vec<&str> = pod
        .spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter(|v| {
            v.persistent_volume_claim
                .as_ref()
                .is_some_and(|c| c.read_only == Some(true))
        })
        .map(|v| v.name.as_str())
        .collect();
    for (m, vm) in mounts.iter_mut().zip(c.volume_mounts.iter().flatten()) {
        m.readonly |= read_only_claims.contains(&vm.name.as_str());
    }
    Ok(v1::ContainerConfig {
        metadata: Some(v1::ContainerMetadata {
            name: c.name.clone(),
            attempt,
        }),
        image: Some(v1::ImageSpec {
            image: c.image.clone().unwrap_or_default(),
            ..Default::default()
        }),
        command: c
            .command
            .iter()
            .flatten()
            .map(|a| expand(a, &vars))
            .collect(),
        args: c.args.iter().flatten().map(|a| expand(a, &vars)).collect(),
        working_dir: c.working_dir.clone().unwrap_or_default(),
        envs: env
            .into_iter()
            .map(|(key, value)| v1::KeyValue {
                key,
                value: value.into_bytes(),
            })
            .collect(),
        mounts,
        labels: [
            (LABEL_CONTAINER_NAME.to_string(), c.name.clone()),
            (LABEL_POD_NAME.to_string(), fields.name.to_string()),
            (LABEL_POD_NAMESPACE.to_string(), ns.to_string()),
            (LABEL_POD_UID.to_string(), fields.uid.to_string()),
        ]
        .into_iter()
        .collect(),
        log_path: format!("{}/{attempt}.log", c.name),
        linux: Some(linux_config(pod, c)),
        // For `kubectl attach` / `run -i`: a stdin kept for attach clients (closed after the
        // first one with stdinOnce), and a terminal.
        stdin: c.stdin.unwrap_or(false),
        stdin_once: c.stdin_once.unwrap_or(false),
        tty: c.tty.unwrap_or(false),
        ..Default::default()
    })
}

/// A container's volume mounts: each volume's host path (with its subPath).
fn mounts(
    c: &Container,
    volumes: &HashMap<String, PathBuf>,
) -> Result<Vec<v1::Mount>, ConfigError> {
    let mut mounts = Vec::new();
    for m in c.volume_mounts.iter().flatten() {
        let Some(host) = volumes.get(&m.name) else {
            return Err(ConfigError(format!(
                "volume {:?} not found in the pod's volumes",
                m.name
            )));
        };
        let mut host = host.clone();
        if let Some(sub) = m.sub_path.as_deref().filter(|s| !s.is_empty()) {
            if sub.starts_with('/') || sub.split('/').any(|c| c == "..") {
                return Err(ConfigError(format!(
                    "subPath {sub:?} must be a relative path without '..'"
                )));
            }
            host = host.join(sub);
        }
        mounts.push(v1::Mount {
            container_path: m.mount_path.clone(),
            host_path: host.display().to_string(),
            readonly: m.read_only.unwrap_or(false),
            ..Default::default()
        });
    }
    Ok(mounts)
}

/// A container's resources and security context, from its spec and the pod's.
fn linux_config(pod: &Pod, c: &Container) -> v1::LinuxContainerConfig {
    let sc = c.security_context.clone().unwrap_or_default();
    let psc = pod
        .spec
        .as_ref()
        .and_then(|s| s.security_context.clone())
        .unwrap_or_default();
    let limits = c
        .resources
        .as_ref()
        .and_then(|r| r.limits.clone())
        .unwrap_or_default();
    let memory = limits
        .get("memory")
        .and_then(|q| parse_quantity(&q.0))
        .unwrap_or(0.0) as i64;
    let cpu = limits
        .get("cpu")
        .and_then(|q| parse_quantity(&q.0))
        .unwrap_or(0.0);
    // A missing CPU request defaults to the limit, as the API server defaults it.
    let cpu_request = c
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("cpu"))
        .and_then(|q| parse_quantity(&q.0))
        .unwrap_or(cpu);
    let seccomp = sc
        .seccomp_profile
        .as_ref()
        .or(psc.seccomp_profile.as_ref())
        .map(|p| v1::SecurityProfile {
            profile_type: match p.type_.as_str() {
                "RuntimeDefault" => v1::security_profile::ProfileType::RuntimeDefault as i32,
                "Localhost" => v1::security_profile::ProfileType::Localhost as i32,
                _ => v1::security_profile::ProfileType::Unconfined as i32,
            },
            localhost_ref: p.localhost_profile.clone().unwrap_or_default(),
        });
    v1::LinuxContainerConfig {
        resources: Some(v1::LinuxContainerResources {
            memory_limit_in_bytes: memory,
            cpu_period: if cpu > 0.0 { 100_000 } else { 0 },
            cpu_quota: (cpu * 100_000.0) as i64,
            cpu_shares: cpu_shares(cpu_request),
            ..Default::default()
        }),
        security_context: Some(v1::LinuxContainerSecurityContext {
            privileged: sc.privileged.unwrap_or(false),
            readonly_rootfs: sc.read_only_root_filesystem.unwrap_or(false),
            run_as_user: sc
                .run_as_user
                .or(psc.run_as_user)
                .map(|value| v1::Int64Value { value }),
            run_as_group: sc
                .run_as_group
                .or(psc.run_as_group)
                .map(|value| v1::Int64Value { value }),
            // The kubelet's order: fsGroup first, then the pod's supplementalGroups.
            supplemental_groups: psc
                .fs_group
                .into_iter()
                .chain(psc.supplemental_groups.clone().unwrap_or_default())
                .collect(),
            supplemental_groups_policy: match psc.supplemental_groups_policy.as_deref() {
                Some("Strict") => v1::SupplementalGroupsPolicy::Strict,
                _ => v1::SupplementalGroupsPolicy::Merge,
            } as i32,
            no_new_privs: sc.allow_privilege_escalation == Some(false),
            capabilities: sc.capabilities.as_ref().map(|c| v1::Capability {
                add_capabilities: c.add.clone().unwrap_or_default(),
                drop_capabilities: c.drop.clone().unwrap_or_default(),
                ..Default::default()
            }),
            seccomp,
            namespace_options: Some(v1::NamespaceOption {
                pid: if pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.share_process_namespace)
                    .unwrap_or(false)
                {
                    v1::NamespaceMode::Pod as i32
                } else {
                    v1::NamespaceMode::Container as i32
                },
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

/// The kubelet's CPU shares for a CPU request (in cores): 1024 per core, at least 2, at most
/// 262144; 0 (no setting) without a request. The runtime turns shares into cgroup v2
/// `cpu.weight` with runc's conversion.
fn cpu_shares(cores: f64) -> i64 {
    if cores <= 0.0 {
        return 0;
    }
    let millis = (cores * 1000.0).round() as i64;
    (millis * 1024 / 1000).clamp(2, 262_144)
}

/// A Kubernetes quantity (`64Mi`, `1G`, `500m`, `0.5`) as a number of base units.
pub fn parse_quantity(q: &str) -> Option<f64> {
    let q = q.trim();
    let split = q.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    let n: f64 = num.parse().ok()?;
    // A decimal exponent (`1e3`, `2E6`), not the exa suffix `E`.
    if let Some(exp) = suffix
        .strip_prefix(['e', 'E'])
        .filter(|e| !e.is_empty())
        .and_then(|e| e.parse::<i32>().ok())
    {
        return Some(n * 10f64.powi(exp));
    }
    let mul = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0f64.powi(4),
        "Pi" => 1024.0f64.powi(5),
        "Ei" => 1024.0f64.powi(6),
        _ => return None,
    };
    Some(n * mul)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Src;
    impl Sources for Src {
        fn config_map(&self, _ns: &str, name: &str) -> Option<BTreeMap<String, Vec<u8>>> {
            (name == "cm").then(|| {
                [("color".to_string(), b"blue".to_vec())]
                    .into_iter()
                    .collect()
            })
        }
        fn secret(&self, _ns: &str, name: &str) -> Option<BTreeMap<String, Vec<u8>>> {
            (name == "s").then(|| {
                [("pw".to_string(), b"hunter2".to_vec())]
                    .into_iter()
                    .collect()
            })
        }
    }

    fn pod(yaml: &str) -> Pod {
        match kinglet_manifest::parse("t", yaml).unwrap().remove(0) {
            kinglet_manifest::Object::Pod(p) => *p,
            _ => panic!(),
        }
    }

    const FIELDS: PodFields<'static> = PodFields {
        name: "web",
        namespace: "default",
        uid: "u1",
        pod_ip: "10.85.0.2",
        node_name: "node",
        host_ip: "192.168.1.5",
        allocatable: crate::downward::Allocatable {
            cpu: 2.0,
            memory: 1e9,
            ephemeral_storage: 1e10,
        },
    };

    #[test]
    fn env_sources_and_expansion_follow_kubernetes() {
        let p = pod(r#"
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - name: c
    image: busybox
    command: ["echo", "$(COLOR) $$(COLOR) $(MISSING)"]
    envFrom:
    - configMapRef: {name: cm}
      prefix: CM_
    env:
    - {name: COLOR, valueFrom: {configMapKeyRef: {name: cm, key: color}}}
    - {name: PW, valueFrom: {secretKeyRef: {name: s, key: pw}}}
    - {name: POD, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
    - {name: GREETING, value: "hi $(COLOR)"}
    - {name: OPT, valueFrom: {secretKeyRef: {name: nope, key: x, optional: true}}}
"#);
        let c = &p.spec.as_ref().unwrap().containers[0];
        let cfg = container_config(&p, c, 0, "default", &FIELDS, &Src, &HashMap::new()).unwrap();
        let env: Vec<(String, String)> = cfg
            .envs
            .iter()
            .map(|kv| (kv.key.clone(), String::from_utf8(kv.value.clone()).unwrap()))
            .collect();
        assert_eq!(
            env,
            [
                ("CM_color".into(), "blue".into()),
                ("COLOR".into(), "blue".into()),
                ("PW".into(), "hunter2".into()),
                ("POD".into(), "web".into()),
                ("GREETING".to_string(), "hi blue".to_string()),
            ]
        );
        assert_eq!(cfg.command, ["echo", "blue $(COLOR) $(MISSING)"]);
    }

    #[test]
    fn a_missing_key_is_a_config_error_naming_it() {
        let p = pod("apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec:\n  containers:\n  - name: c\n    image: b\n    env:\n    - {name: X, valueFrom: {configMapKeyRef: {name: cm, key: nokey}}}\n");
        let c = &p.spec.as_ref().unwrap().containers[0];
        let e = container_config(&p, c, 0, "default", &FIELDS, &Src, &HashMap::new()).unwrap_err();
        assert!(e.0.contains("nokey") && e.0.contains("cm"), "{e:?}");
    }

    #[test]
    fn a_missing_source_object_is_the_kubelets_not_found() {
        let env = |from: &str| {
            let p = pod(&format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: web}}\nspec:\n  containers:\n  - name: c\n    image: b\n    {from}\n"));
            let c = p.spec.as_ref().unwrap().containers[0].clone();
            container_config(&p, &c, 0, "default", &FIELDS, &Src, &HashMap::new()).map(|_| ())
        };
        let e = env("env: [{name: U, valueFrom: {secretKeyRef: {name: backend-user, key: backend-username}}}]");
        assert_eq!(e.unwrap_err().0, "secret \"backend-user\" not found");
        let e =
            env("env: [{name: U, valueFrom: {configMapKeyRef: {name: special-config, key: k}}}]");
        assert_eq!(e.unwrap_err().0, "configmap \"special-config\" not found");
        let e = env("envFrom: [{configMapRef: {name: nocm}}]");
        assert_eq!(e.unwrap_err().0, "configmap \"nocm\" not found");
        let e = env("env: [{name: U, valueFrom: {secretKeyRef: {name: s, key: nokey}}}]");
        assert_eq!(
            e.unwrap_err().0,
            "couldn't find key nokey in Secret default/s"
        );
        env("env: [{name: U, valueFrom: {secretKeyRef: {name: gone, key: k, optional: true}}}]")
            .unwrap();
    }

    #[test]
    fn a_read_only_claim_is_mounted_read_only() {
        let p = pod("apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec:\n  containers:\n  - name: c\n    image: b\n    volumeMounts: [{name: ro, mountPath: /ro}, {name: rw, mountPath: /rw}]\n  volumes:\n  - {name: ro, persistentVolumeClaim: {claimName: a, readOnly: true}}\n  - {name: rw, persistentVolumeClaim: {claimName: b}}\n");
        let c = &p.spec.as_ref().unwrap().containers[0];
        let vols: HashMap<String, PathBuf> = [("ro", "/x/a"), ("rw", "/x/b")]
            .map(|(k, v)| (k.to_string(), PathBuf::from(v)))
            .into();
        let cfg = container_config(&p, c, 0, "default", &FIELDS, &Src, &vols).unwrap();
        let ro: Vec<(&str, bool)> = cfg
            .mounts
            .iter()
            .map(|m| (m.container_path.as_str(), m.readonly))
            .collect();
        assert_eq!(ro, [("/ro", true), ("/rw", false)]);
    }

    #[test]
    fn fs_group_joins_the_groups_and_sysctls_reach_the_sandbox() {
        let p = pod("apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec:\n  securityContext:\n    fsGroup: 2000\n    supplementalGroups: [3000]\n    sysctls: [{name: kernel.shm_rmid_forced, value: '1'}, {name: net/ipv4/ip_local_port_range, value: '1024 65000'}]\n  containers:\n  - name: c\n    image: b\n");
        let c = &p.spec.as_ref().unwrap().containers[0];
        let cfg = container_config(&p, c, 0, "default", &FIELDS, &Src, &HashMap::new()).unwrap();
        let sc = cfg.linux.unwrap().security_context.unwrap();
        assert_eq!(sc.supplemental_groups, [2000, 3000]);
        assert_eq!(
            sc.supplemental_groups_policy,
            v1::SupplementalGroupsPolicy::Merge as i32
        );
        let strict = pod("apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec:\n  securityContext:\n    supplementalGroupsPolicy: Strict\n  containers:\n  - name: c\n    image: b\n");
        let c = &strict.spec.as_ref().unwrap().containers[0];
        let cfg =
            container_config(&strict, c, 0, "default", &FIELDS, &Src, &HashMap::new()).unwrap();
        assert_eq!(
            cfg.linux
                .unwrap()
                .security_context
                .unwrap()
                .supplemental_groups_policy,
            v1::SupplementalGroupsPolicy::Strict as i32
        );
        let sb = sandbox_config(&p, "u1", "/logs", "h");
        let sysctls = sb.linux.unwrap().sysctls;
        assert_eq!(sysctls.len(), 2);
        assert_eq!(sysctls["kernel.shm_rmid_forced"], "1");
        assert_eq!(sysctls["net.ipv4.ip_local_port_range"], "1024 65000");
    }

    #[test]
    fn cpu_requests_become_shares() {
        assert_eq!(cpu_shares(0.0), 0);
        assert_eq!(cpu_shares(0.001), 2);
        assert_eq!(cpu_shares(0.25), 256);
        assert_eq!(cpu_shares(1.0), 1024);
        assert_eq!(cpu_shares(1000.0), 262_144);
        let p = pod("apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec:\n  containers:\n  - name: c\n    image: b\n    resources: {limits: {cpu: '1'}, requests: {cpu: 100m}}\n");
        let c = &p.spec.as_ref().unwrap().containers[0];
        let cfg = container_config(&p, c, 0, "default", &FIELDS, &Src, &HashMap::new()).unwrap();
        let r = cfg.linux.unwrap().resources.unwrap();
        assert_eq!((r.cpu_shares, r.cpu_quota), (102, 100_000));
        let p = pod("apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec:\n  containers:\n  - name: c\n    image: b\n");
        let c = &p.spec.as_ref().unwrap().containers[0];
        let cfg = container_config(&p, c, 0, "default", &FIELDS, &Src, &HashMap::new()).unwrap();
        assert_eq!(cfg.linux.unwrap().resources.unwrap().cpu_shares, 0);
    }

    #[test]
    fn quantities_and_resources() {
        assert_eq!(parse_quantity("64Mi"), Some(64.0 * 1024.0 * 1024.0));
        assert_eq!(parse_quantity("500m"), Some(0.5));
        assert_eq!(parse_quantity("1G"), Some(1e9));
        assert_eq!(parse_quantity("bogus"), None);
        let p = pod("apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec:\n  containers:\n  - name: c\n    image: b\n    resources: {limits: {memory: 32Mi, cpu: 250m}}\n    ports: [{containerPort: 80, hostPort: 8080}]\n");
        let c = &p.spec.as_ref().unwrap().containers[0];
        let cfg = container_config(&p, c, 2, "default", &FIELDS, &Src, &HashMap::new()).unwrap();
        let r = cfg.linux.unwrap().resources.unwrap();
        assert_eq!(
            (r.memory_limit_in_bytes, r.cpu_quota, r.cpu_period),
            (32 << 20, 25_000, 100_000)
        );
        // No CPU request: the limit's 250m is the request, 256 shares.
        assert_eq!(r.cpu_shares, 256);
        assert_eq!(cfg.log_path, "c/2.log");
        let sb = sandbox_config(&p, "u1", "/logs", "h");
        assert_eq!(sb.port_mappings[0].host_port, 8080);
        assert_eq!(sb.labels[LABEL_POD_UID], "u1");
        assert_eq!(sb.hostname, "web");
    }

    #[test]
    fn hostname_like_the_kubelet() {
        assert_eq!(pod_hostname(None, "web"), "web");
        assert_eq!(pod_hostname(Some("db-0"), "web"), "db-0");
        assert_eq!(pod_hostname(Some(""), "web"), "web");
        let long = "a".repeat(70);
        assert_eq!(pod_hostname(None, &long), "a".repeat(63));
        // Cut at 63, then trailing '-' and '.' go.
        let name = format!("{}-.-{}", "b".repeat(60), "c".repeat(10));
        assert_eq!(pod_hostname(None, &name), "b".repeat(60));
        let p = pod(&format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {long}}}\nspec:\n  containers:\n  - {{name: c, image: b}}\n"
        ));
        assert_eq!(
            sandbox_config(&p, "u1", "/logs", "h").hostname,
            "a".repeat(63)
        );
    }

    #[test]
    fn the_spec_hash_is_that_of_the_spec_without_its_node_name() {
        let plain = pod("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{name: c, image: i}]\n");
        let mut bound = plain.clone();
        bound.spec.as_mut().unwrap().node_name = Some("node".into());
        assert_eq!(spec_hash(&bound), spec_hash(&plain));
        // Unchanged for pods without one (sandboxes keep their hash label across upgrades).
        let json = serde_json::to_string(&plain.spec).unwrap();
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        json.hash(&mut h);
        assert_eq!(spec_hash(&plain), format!("{:016x}", h.finish()));
        let mut other = plain.clone();
        other.spec.as_mut().unwrap().containers[0].image = Some("j".into());
        assert_ne!(spec_hash(&other), spec_hash(&plain));
    }
}
