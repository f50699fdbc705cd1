//! CNI mode: pod networks made by standard CNI plugins from a network configuration list.
//!
//! Owns `<state_dir>/cni/<pod>.json`, the cache of what ADD was given and returned for a pod.
//! Plugins are run as the CNI spec says: the binary `<bin_dir>/<type>`, the network config on
//! stdin, `CNI_COMMAND`/`CNI_CONTAINERID`/`CNI_NETNS`/`CNI_IFNAME`/`CNI_PATH` in the
//! environment, the result (or an error object) on stdout.
//!
//! Invariants:
//! - ADD runs the list's plugins in order, each given the previous one's result as
//!   `prevResult`; DEL runs them in reverse with the cached ADD result as `prevResult`; CHECK
//!   runs them in order with the cached result.
//! - The cache file is written before the first plugin runs (without a result) and completed
//!   after the last, so a crash mid-ADD leaves a record that [`Cni::del`] (and start-up
//!   reconciliation) can undo; DEL removes it last and tolerates a missing one.
//! - Every plugin run is bounded by the configured timeout; a plugin that hangs is killed and
//!   the call fails naming the plugin. A failed ADD is undone by a DEL before returning.
//! - hostPorts are passed as the `portMappings` capability (`runtimeConfig`) to plugins that
//!   declare it (e.g. `portmap`).

use std::fs;
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{json, Value};
use tracing::{debug, warn};

use crate::error::NetnsError;
use crate::nft::PortMapping;
use crate::ErrorChain;

/// Where CNI configuration and plugins are, and where results are cached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniConfig {
    /// Directory holding `*.conflist` files; the first by name is used.
    pub conf_dir: PathBuf,
    /// Directory of plugin binaries (`CNI_PATH`).
    pub bin_dir: PathBuf,
    /// Directory for the result cache (e.g. `<run-root>/network`).
    pub state_dir: PathBuf,
    /// Upper bound on one plugin run.
    pub timeout: Duration,
}

/// A loaded CNI network configuration list.
#[derive(Debug)]
pub struct Cni {
    cfg: CniConfig,
    /// The conflist file.
    path: PathBuf,
    list: Value,
}

/// The interface name CNI plugins create in the pod.
const IFNAME: &str = "eth0";

impl Cni {
    /// Load the first `*.conflist` of `cfg.conf_dir`; `None` when there is none.
    pub fn load(cfg: CniConfig) -> Result<Option<Cni>, NetnsError> {
        let mut lists: Vec<PathBuf> = match fs::read_dir(&cfg.conf_dir) {
            Ok(rd) => rd
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "conflist"))
                .collect(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(NetnsError::CniConfig {
                    path: cfg.conf_dir.clone(),
                    reason: source.to_string(),
                })
            }
        };
        lists.sort();
        let Some(path) = lists.into_iter().next() else {
            return Ok(None);
        };
        let bad = |reason: String| NetnsError::CniConfig {
            path: path.clone(),
            reason,
        };
        let text = fs::read_to_string(&path).map_err(|e| bad(e.to_string()))?;
        let list: Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        parse_list(&list).map_err(|r| bad(r.to_owned()))?;
        Ok(Some(Cni { cfg, path, list }))
    }

    /// The conflist file in use.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The network's name.
    pub fn name(&self) -> &str {
        self.list["name"].as_str().unwrap_or_default()
    }

    /// Whether every plugin binary of the list exists.
    pub fn ready(&self) -> Result<(), String> {
        let (_, _, plugins) = parse_list(&self.list).map_err(str::to_owned)?;
        for p in plugins {
            let ty = p["type"].as_str().unwrap_or_default();
            if !self.cfg.bin_dir.join(ty).is_file() {
                return Err(format!(
                    "CNI plugin {ty} of {} not found in {}",
                    self.path.display(),
                    self.cfg.bin_dir.display()
                ));
            }
        }
        Ok(())
    }

    fn cache_file(&self, pod: &str) -> PathBuf {
        self.cfg.state_dir.join("cni").join(format!("{pod}.json"))
    }

    /// Pods with a cached ADD (complete or not).
    pub fn cached_pods(&self) -> Vec<String> {
        fs::read_dir(self.cfg.state_dir.join("cni"))
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| {
                        e.file_name()
                            .to_str()
                            .and_then(|n| n.strip_suffix(".json"))
                            .map(str::to_owned)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// ADD: attach `pod` (namespace pinned at `netns`). Returns its IPv4 address.
    pub fn add(
        &self,
        pod: &str,
        netns: &Path,
        ports: &[PortMapping],
    ) -> Result<Ipv4Addr, NetnsError> {
        let mut cache = json!({
            "pod": pod,
            "netns": netns,
            "portMappings": port_mappings_json(ports),
            "result": null,
        });
        self.write_cache(pod, &cache)?;
        let result = self.run_list("ADD", pod, netns, &cache["portMappings"], None);
        let result = match result {
            Ok(r) => r,
            Err(err) => {
                if let Err(undo) = self.del(pod) {
                    warn!(%pod, err = %ErrorChain(&undo), "CNI DEL after a failed ADD failed");
                }
                return Err(err);
            }
        };
        let ip = first_ipv4(&result).ok_or_else(|| NetnsError::CniPlugin {
            plugin: self.name().to_owned(),
            command: "ADD",
            pod: pod.to_owned(),
            message: "the result holds no IPv4 address".to_owned(),
        });
        cache["result"] = result;
        let written = self.write_cache(pod, &cache);
        match (ip, written) {
            (Ok(ip), Ok(())) => {
                debug!(%pod, %ip, network = %self.name(), "CNI ADD done");
                Ok(ip)
            }
            (Err(e), _) | (_, Err(e)) => {
                let _ = self.del(pod);
                Err(e)
            }
        }
    }

    /// CHECK: ask the plugins whether `pod`'s network is still as ADD made it.
    pub fn check(&self, pod: &str) -> Result<(), NetnsError> {
        let cache = self.read_cache(pod)?;
        let netns = PathBuf::from(cache["netns"].as_str().unwrap_or_default());
        self.run_list(
            "CHECK",
            pod,
            &netns,
            &cache["portMappings"],
            Some(cache["result"].clone()),
        )
        .map(drop)
    }

    /// DEL: detach `pod`, with the cached result. Idempotent (no cache: nothing to do).
    pub fn del(&self, pod: &str) -> Result<(), NetnsError> {
        let path = self.cache_file(pod);
        let cache = match fs::read(&path) {
            Ok(b) => serde_json::from_slice::<Value>(&b).unwrap_or(Value::Null),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(source) => return Err(NetnsError::PodState { path, source }),
        };
        let netns = PathBuf::from(cache["netns"].as_str().unwrap_or_default());
        let prev = cache.get("result").filter(|r| !r.is_null()).cloned();
        self.run_list("DEL", pod, &netns, &cache["portMappings"], prev)?;
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(NetnsError::PodState { path, source }),
        }
    }

    fn read_cache(&self, pod: &str) -> Result<Value, NetnsError> {
        let path = self.cache_file(pod);
        let b = fs::read(&path).map_err(|source| NetnsError::PodState {
            path: path.clone(),
            source,
        })?;
        serde_json::from_slice(&b).map_err(|e| NetnsError::PodState {
            path,
            source: io::Error::new(io::ErrorKind::InvalidData, e),
        })
    }

    fn write_cache(&self, pod: &str, v: &Value) -> Result<(), NetnsError> {
        let path = self.cache_file(pod);
        let io_err = |source| NetnsError::PodState {
            path: path.clone(),
            source,
        };
        let dir = path.parent().expect("cache file has a parent");
        fs::create_dir_all(dir).map_err(io_err)?;
        let tmp = dir.join(format!(".{pod}.tmp"));
        let mut f = fs::File::create(&tmp).map_err(io_err)?;
        f.write_all(v.to_string().as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(io_err)?;
        fs::rename(&tmp, &path).map_err(io_err)
    }

    /// Run every plugin for `command` (in reverse for DEL), chaining results.
    fn run_list(
        &self,
        command: &'static str,
        pod: &str,
        netns: &Path,
        ports: &Value,
        prev: Option<Value>,
    ) -> Result<Value, NetnsError> {
        let (name, version, plugins) =
            parse_list(&self.list).map_err(|r| NetnsError::CniConfig {
                path: self.path.clone(),
                reason: r.to_owned(),
            })?;
        let mut order: Vec<&Value> = plugins.iter().collect();
        if command == "DEL" {
            order.reverse();
        }
        let mut prev = prev;
        for plugin in order {
            let conf = plugin_conf(plugin, name, version, prev.as_ref(), ports);
            let out = self.exec(plugin, command, pod, netns, &conf)?;
            if command == "ADD" {
                prev = Some(out);
            }
        }
        Ok(prev.unwrap_or(Value::Null))
    }

    fn exec(
        &self,
        plugin: &Value,
        command: &'static str,
        pod: &str,
        netns: &Path,
        conf: &Value,
    ) -> Result<Value, NetnsError> {
        let ty = plugin["type"].as_str().unwrap_or_default().to_owned();
        let fail = |message: String| NetnsError::CniPlugin {
            plugin: ty.clone(),
            command,
            pod: pod.to_owned(),
            message,
        };
        let mut child = Command::new(self.cfg.bin_dir.join(&ty))
            .env_clear()
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", pod)
            .env("CNI_NETNS", netns)
            .env("CNI_IFNAME", IFNAME)
            .env("CNI_PATH", &self.cfg.bin_dir)
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| fail(format!("cannot run: {e}")))?;
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(conf.to_string().as_bytes());
        }
        let pid = child.id();
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("kinglet-cni-wait".into())
            .spawn(move || {
                let _ = tx.send(child.wait_with_output());
            })
            .map_err(|e| fail(format!("cannot wait: {e}")))?;
        let out = match rx.recv_timeout(self.cfg.timeout) {
            Ok(r) => r.map_err(|e| fail(format!("wait: {e}")))?,
            Err(_) => {
                // Not reaped yet (the waiting thread is blocked on it), so the pid is still ours.
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
                let _ = rx.recv_timeout(Duration::from_secs(5));
                return Err(fail(format!(
                    "did not finish within {:?} and was killed",
                    self.cfg.timeout
                )));
            }
        };
        read_reply(&out.stdout, &out.stderr, out.status.success())
            .map_err(|msg| fail(format!("{msg} ({})", out.status)))
    }
}

/// What a plugin printed, read as [`Cni`] reads it: its result (JSON; `null` when stdout is not
/// JSON) when it succeeded, else its error message (`msg: details` of the error object on
/// stdout, else stderr).
pub fn read_reply(stdout: &[u8], stderr: &[u8], success: bool) -> Result<Value, String> {
    let stdout: Value = serde_json::from_slice(stdout).unwrap_or(Value::Null);
    if !success {
        return Err(match (stdout["msg"].as_str(), stdout["details"].as_str()) {
            (Some(m), Some(d)) if !d.is_empty() => format!("{m}: {d}"),
            (Some(m), _) => m.to_owned(),
            _ => String::from_utf8_lossy(stderr).trim().to_owned(),
        });
    }
    Ok(stdout)
}

/// (name, cniVersion, plugins) of a conflist, or what is wrong with it.
fn parse_list(list: &Value) -> Result<(&str, &str, &Vec<Value>), &'static str> {
    let name = list["name"].as_str().ok_or("\"name\" is missing")?;
    let version = list["cniVersion"]
        .as_str()
        .ok_or("\"cniVersion\" is missing")?;
    let plugins = list["plugins"]
        .as_array()
        .filter(|p| !p.is_empty())
        .ok_or("\"plugins\" must be a non-empty list")?;
    if plugins.iter().any(|p| p["type"].as_str().is_none()) {
        return Err("every plugin needs a \"type\"");
    }
    Ok((name, version, plugins))
}

/// The config one plugin gets on stdin.
fn plugin_conf(
    plugin: &Value,
    name: &str,
    version: &str,
    prev: Option<&Value>,
    ports: &Value,
) -> Value {
    let mut conf = plugin.clone();
    conf["name"] = json!(name);
    conf["cniVersion"] = json!(version);
    if let Some(prev) = prev {
        conf["prevResult"] = prev.clone();
    }
    if plugin["capabilities"]["portMappings"].as_bool() == Some(true) {
        conf["runtimeConfig"]["portMappings"] = ports.clone();
    }
    conf
}

fn port_mappings_json(ports: &[PortMapping]) -> Value {
    Value::Array(
        ports
            .iter()
            .map(|m| {
                json!({
                    "hostPort": m.host_port,
                    "containerPort": m.container_port,
                    "protocol": m.protocol.to_string(),
                    "hostIP": m.host_ip.map(|ip| ip.to_string()).unwrap_or_default(),
                })
            })
            .collect(),
    )
}

/// The first IPv4 address of a CNI result (`ips[].address`, CIDR notation).
pub fn first_ipv4(result: &Value) -> Option<Ipv4Addr> {
    result["ips"].as_array()?.iter().find_map(|ip| {
        ip["address"]
            .as_str()?
            .split('/')
            .next()?
            .parse::<Ipv4Addr>()
            .ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nft::Protocol;

    fn list() -> Value {
        json!({
            "cniVersion": "1.0.0",
            "name": "pods",
            "plugins": [
                {"type": "bridge", "bridge": "cni0", "ipam": {"type": "host-local"}},
                {"type": "portmap", "capabilities": {"portMappings": true}}
            ]
        })
    }

    #[test]
    fn plugin_replies_are_read_as_the_spec_says() {
        let ok = br#"{"ips": [{"address": "fd00::2/64"}, {"address": "10.88.0.5/16"}]}"#;
        let r = read_reply(ok, b"", true).unwrap();
        assert_eq!(first_ipv4(&r), Some(Ipv4Addr::new(10, 88, 0, 5)));
        assert_eq!(read_reply(b"not json", b"", true).unwrap(), Value::Null);
        let err = br#"{"code": 11, "msg": "no IP", "details": "range full"}"#;
        assert_eq!(
            read_reply(err, b"ignored", false).unwrap_err(),
            "no IP: range full"
        );
        assert_eq!(read_reply(b"", b" boom\n", false).unwrap_err(), "boom");
    }

    #[test]
    fn conflists_are_validated() {
        assert!(parse_list(&list()).is_ok());
        assert!(parse_list(&json!({"cniVersion": "1.0.0", "plugins": []})).is_err());
        assert!(parse_list(&json!({"name": "x", "cniVersion": "1.0.0", "plugins": []})).is_err());
        assert!(parse_list(&json!({"name": "x", "cniVersion": "1.0.0", "plugins": [{}]})).is_err());
    }

    #[test]
    fn plugin_conf_chains_prev_result_and_port_capability() {
        let l = list();
        let ports = port_mappings_json(&[PortMapping {
            protocol: Protocol::Udp,
            host_ip: Some(Ipv4Addr::LOCALHOST),
            host_port: 53,
            container_port: 5353,
        }]);
        let prev = json!({"ips": [{"address": "10.1.0.5/24"}]});
        let bridge = plugin_conf(&l["plugins"][0], "pods", "1.0.0", None, &ports);
        assert_eq!(bridge["name"], "pods");
        assert!(bridge.get("prevResult").is_none() && bridge.get("runtimeConfig").is_none());
        let portmap = plugin_conf(&l["plugins"][1], "pods", "1.0.0", Some(&prev), &ports);
        assert_eq!(portmap["prevResult"], prev);
        assert_eq!(
            portmap["runtimeConfig"]["portMappings"][0],
            json!({"hostPort": 53, "containerPort": 5353, "protocol": "udp", "hostIP": "127.0.0.1"})
        );
        assert_eq!(first_ipv4(&prev), Some(Ipv4Addr::new(10, 1, 0, 5)));
        assert_eq!(
            first_ipv4(&json!({"ips": [{"address": "fd00::1/64"}]})),
            None
        );
    }

    #[test]
    fn a_hanging_plugin_is_killed_and_named() {
        let tmp = tempfile::tempdir().unwrap();
        let bin = tmp.path().join("bin");
        fs::create_dir_all(&bin).unwrap();
        let plugin = bin.join("hang");
        fs::write(&plugin, "#!/bin/sh\nexec sleep 30\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&plugin, fs::Permissions::from_mode(0o755)).unwrap();
        let conf = tmp.path().join("conf");
        fs::create_dir_all(&conf).unwrap();
        fs::write(
            conf.join("10-x.conflist"),
            r#"{"cniVersion":"1.0.0","name":"x","plugins":[{"type":"hang"}]}"#,
        )
        .unwrap();
        let cni = Cni::load(CniConfig {
            conf_dir: conf,
            bin_dir: bin,
            state_dir: tmp.path().join("state"),
            timeout: Duration::from_millis(300),
        })
        .unwrap()
        .expect("conflist found");
        assert!(cni.ready().is_ok());
        let started = std::time::Instant::now();
        let e = cni.add("pod1", Path::new("/nonexistent"), &[]).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(10));
        let msg = e.to_string();
        assert!(
            msg.contains("hang") && msg.contains("ADD") && msg.contains("killed"),
            "{msg}"
        );
        // The failed ADD was undone (its DEL hung too, but the cache is what reconciliation uses).
        assert!(cni.cached_pods().len() <= 1);
    }
}
