//! The kubelet-managed `/etc/hosts` of a pod (kubelet `managedHostsFileContent`): the
//! localhost lines, the pod's IP with its hostname (and its FQDN first when `subdomain` is
//! set), then `hostAliases` under `# Entries added by HostAliases.`. A host-network pod gets
//! the node's own hosts file with the aliases appended. The file is written into the pod's
//! volume directory and bind-mounted at `/etc/hosts` in every container that does not mount
//! something there itself.

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{HostAlias, Pod};

/// The cluster domain of service and pod FQDNs.
pub const CLUSTER_DOMAIN: &str = "cluster.local";

const MANAGED_HEADER: &str = "# Kubernetes-managed hosts file.\n";
const HOST_NETWORK_HEADER: &str = "# Kubernetes-managed hosts file (host network).\n";

fn aliases(list: Option<&Vec<HostAlias>>) -> String {
    let list = list.map(Vec::as_slice).unwrap_or_default();
    if list.is_empty() {
        return String::new();
    }
    let mut out = String::from("\n# Entries added by HostAliases.\n");
    for a in list {
        let names = a.hostnames.clone().unwrap_or_default().join("\t");
        out.push_str(&format!("{}\t{names}\n", a.ip));
    }
    out
}

/// The hosts file of `pod` with address `pod_ip` and hostname `hostname`; `node_hosts` is
/// the node's `/etc/hosts` (read for host-network pods only).
pub fn content(pod: &Pod, pod_ip: &str, hostname: &str, node_hosts: Option<&str>) -> String {
    let spec = pod.spec.clone().unwrap_or_default();
    if spec.host_network.unwrap_or(false) {
        let mut out = HOST_NETWORK_HEADER.to_owned();
        out.push_str(node_hosts.unwrap_or_default());
        out.push_str(&aliases(spec.host_aliases.as_ref()));
        return out;
    }
    let mut out = MANAGED_HEADER.to_owned();
    out.push_str("127.0.0.1\tlocalhost\n");
    out.push_str("::1\tlocalhost ip6-localhost ip6-loopback\n");
    out.push_str("fe00::0\tip6-localnet\n");
    out.push_str("fe00::0\tip6-mcastprefix\n");
    out.push_str("fe00::1\tip6-allnodes\n");
    out.push_str("fe00::2\tip6-allrouters\n");
    if !pod_ip.is_empty() {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        match spec.subdomain.as_deref().filter(|s| !s.is_empty()) {
            Some(sub) => out.push_str(&format!(
                "{pod_ip}\t{hostname}.{sub}.{ns}.svc.{CLUSTER_DOMAIN}\t{hostname}\n"
            )),
            None => out.push_str(&format!("{pod_ip}\t{hostname}\n")),
        }
    }
    out.push_str(&aliases(spec.host_aliases.as_ref()));
    out
}

/// Write the pod's hosts file under `dir` when it differs (in place: containers bind-mount
/// this inode); returns its path.
pub fn write(dir: &Path, content: &str) -> std::io::Result<PathBuf> {
    // Not a DNS label, so never the name of a volume of the pod.
    let path = dir.join(".etc-hosts");
    if std::fs::read_to_string(&path).ok().as_deref() != Some(content) {
        std::fs::create_dir_all(dir)?;
        std::fs::write(&path, content)?;
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(yaml: &str) -> Pod {
        match kinglet_manifest::parse("t", yaml).unwrap().remove(0) {
            kinglet_manifest::Object::Pod(p) => *p,
            _ => panic!(),
        }
    }

    #[test]
    fn the_kubelets_managed_file_with_host_aliases() {
        let p = pod("apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec:\n  hostAliases:\n  - {ip: 127.0.0.1, hostnames: [foo.local, bar.local]}\n  - {ip: 10.1.2.3, hostnames: [foo.remote]}\n  containers: [{name: c, image: b}]\n");
        assert_eq!(
            content(&p, "10.85.0.7", "web", None),
            "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n10.85.0.7\tweb\n\n# Entries added by HostAliases.\n127.0.0.1\tfoo.local\tbar.local\n10.1.2.3\tfoo.remote\n"
        );
    }

    #[test]
    fn subdomain_fqdn_and_host_network() {
        let p = pod("apiVersion: v1\nkind: Pod\nmetadata: {name: web-0, namespace: team}\nspec:\n  hostname: web-0\n  subdomain: web\n  containers: [{name: c, image: b}]\n");
        let c = content(&p, "10.85.0.7", "web-0", None);
        assert!(
            c.ends_with(
                "fe00::2\tip6-allrouters\n10.85.0.7\tweb-0.web.team.svc.cluster.local\tweb-0\n"
            ),
            "{c}"
        );
        let h = pod("apiVersion: v1\nkind: Pod\nmetadata: {name: h}\nspec:\n  hostNetwork: true\n  hostAliases: [{ip: 1.2.3.4, hostnames: [x]}]\n  containers: [{name: c, image: b}]\n");
        assert_eq!(
            content(&h, "", "h", Some("127.0.0.1 localhost\n")),
            "# Kubernetes-managed hosts file (host network).\n127.0.0.1 localhost\n\n# Entries added by HostAliases.\n1.2.3.4\tx\n"
        );
    }

    #[test]
    fn written_in_place_only_when_changed() {
        let d = tempfile::tempdir().unwrap();
        let p = write(d.path(), "a\n").unwrap();
        let ino = |p: &Path| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).unwrap());
        let first = ino(&p);
        write(d.path(), "b\n").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "b\n");
        assert_eq!(ino(&p), first);
    }
}
