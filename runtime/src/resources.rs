//! UpdateContainerResources: new CPU, memory and cpuset limits written into a created or
//! running container's cgroup (the kubelet's in-place pod resize), and reported back in
//! ContainerStatus `resources`.
//!
//! The container's cgroup is the one its init is in (`/proc/<pid>/cgroup`), so this works the
//! same for the cgroupfs and systemd drivers. Which files get which values is decided by the
//! pure [`cgroup_writes`]; zero and empty fields mean "unchanged", as in the CRI. Like runc,
//! a memory limit that grows is written after the memory+swap limit, one that shrinks before.

use std::path::{Path, PathBuf};

use kinglet_cri::CriError;
use kinglet_proto::v1;

use super::store::ContainerState;
use super::{blocking, encode_hex, Runtime};

/// One cgroup file write: controller (v1; empty on v2), file, value.
pub type Write = (&'static str, String, String);

/// Refuse negative values (but a quota of -1, "no limit") and memory+swap below memory.
fn check(r: &v1::LinuxContainerResources) -> Result<(), CriError> {
    for (field, v) in [
        ("cpu_period", r.cpu_period),
        ("cpu_quota", r.cpu_quota),
        ("cpu_shares", r.cpu_shares),
        ("memory_limit_in_bytes", r.memory_limit_in_bytes),
        ("memory_swap_limit_in_bytes", r.memory_swap_limit_in_bytes),
    ] {
        if v < 0 && !(field == "cpu_quota" && v == -1) {
            return Err(CriError::invalid(
                format!("linux.{field}"),
                format!("{v} is negative"),
            ));
        }
    }
    let (mem, swap) = (r.memory_limit_in_bytes, r.memory_swap_limit_in_bytes);
    if swap > 0 && mem > 0 && swap < mem {
        return Err(CriError::invalid(
            "linux.memory_swap_limit_in_bytes",
            "is memory plus swap: it must not be below memory_limit_in_bytes",
        ));
    }
    Ok(())
}

/// cgroup v2: cpu.weight, cpu.max, memory.max, memory.swap.max and the `unified` files.
fn v2_writes(r: &v1::LinuxContainerResources, out: &mut Vec<Write>) -> Result<(), CriError> {
    let mut w = |f: &str, v: String| out.push(("", f.to_owned(), v));
    let (mem, swap) = (r.memory_limit_in_bytes, r.memory_swap_limit_in_bytes);
    if r.cpu_shares > 0 {
        // The kubelet's shares → weight conversion.
        let weight = 1 + ((r.cpu_shares.clamp(2, 262_144) - 2) * 9999) / 262_142;
        w("cpu.weight", weight.to_string());
    }
    if r.cpu_quota != 0 || r.cpu_period > 0 {
        let quota = if r.cpu_quota > 0 {
            r.cpu_quota.to_string()
        } else {
            "max".into()
        };
        let period = if r.cpu_period > 0 {
            r.cpu_period
        } else {
            100_000
        };
        w("cpu.max", format!("{quota} {period}"));
    }
    if mem > 0 {
        w("memory.max", mem.to_string());
    }
    if swap > 0 {
        // v2 limits swap alone; the CRI gives memory + swap.
        w("memory.swap.max", (swap - mem.max(0)).to_string());
    }
    let mut unified: Vec<(&String, &String)> = r.unified.iter().collect();
    unified.sort();
    for (k, v) in unified {
        if k.contains('/') || k.starts_with('.') {
            return Err(CriError::invalid(
                format!("linux.unified[{k:?}]"),
                "is not a cgroup file name",
            ));
        }
        w(k, v.clone());
    }
    Ok(())
}

/// cgroup v1: cpu shares, CFS period and quota, memory and memory+swap limits (in the order a
/// growing or shrinking limit needs).
fn v1_writes(
    r: &v1::LinuxContainerResources,
    grows: bool,
    out: &mut Vec<Write>,
) -> Result<(), CriError> {
    let mut w = |c: &'static str, f: &str, v: String| out.push((c, f.to_owned(), v));
    let (mem, swap) = (r.memory_limit_in_bytes, r.memory_swap_limit_in_bytes);
    if r.cpu_shares > 0 {
        w("cpu", "cpu.shares", r.cpu_shares.to_string());
    }
    if r.cpu_period > 0 {
        w("cpu", "cpu.cfs_period_us", r.cpu_period.to_string());
    }
    if r.cpu_quota != 0 {
        w("cpu", "cpu.cfs_quota_us", r.cpu_quota.to_string());
    }
    let memory = (mem > 0).then(|| ("memory", "memory.limit_in_bytes", mem.to_string()));
    let memsw = (swap > 0).then(|| ("memory", "memory.memsw.limit_in_bytes", swap.to_string()));
    let order = if grows {
        [memsw, memory]
    } else {
        [memory, memsw]
    };
    for (c, f, v) in order.into_iter().flatten() {
        w(c, f, v);
    }
    if !r.unified.is_empty() {
        return Err(CriError::invalid(
            "linux.unified",
            "is for cgroup v2; this host runs cgroup v1",
        ));
    }
    Ok(())
}

/// The writes that apply `r`. `grows`: whether the new memory limit is above the current one.
pub fn cgroup_writes(
    v2: bool,
    r: &v1::LinuxContainerResources,
    grows: bool,
) -> Result<Vec<Write>, CriError> {
    check(r)?;
    let mut out: Vec<Write> = Vec::new();
    if v2 {
        v2_writes(r, &mut out)?;
    } else {
        v1_writes(r, grows, &mut out)?;
    }
    let cpuset = if v2 { "" } else { "cpuset" };
    if !r.cpuset_cpus.is_empty() {
        out.push((cpuset, "cpuset.cpus".to_owned(), r.cpuset_cpus.clone()));
    }
    if !r.cpuset_mems.is_empty() {
        out.push((cpuset, "cpuset.mems".to_owned(), r.cpuset_mems.clone()));
    }
    Ok(out)
}

/// The cgroup directory of `controller` (v1; "" on v2) that `pid` is in, from the text of
/// `/proc/<pid>/cgroup`.
pub fn cgroup_dir(root: &Path, proc_cgroup: &str, controller: &str) -> Option<PathBuf> {
    proc_cgroup.lines().find_map(|l| {
        let mut it = l.splitn(3, ':');
        let (_, ctrls, path) = (it.next()?, it.next()?, it.next()?);
        let hit = if controller.is_empty() {
            ctrls.is_empty()
        } else {
            ctrls.split(',').any(|c| c == controller)
        };
        hit.then(|| {
            let sub = if controller.is_empty() {
                ""
            } else {
                controller
            };
            root.join(sub).join(path.trim_start_matches('/'))
        })
    })
}

/// Write `r` into the cgroups of the process `pid` (a container's init), in runc's order.
pub(super) fn write_resources(pid: i32, r: &v1::LinuxContainerResources) -> Result<(), CriError> {
    let root = Path::new("/sys/fs/cgroup");
    let v2 = super::stats::is_v2(root);
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .map_err(|e| CriError::internal(format!("read /proc/{pid}/cgroup"), e))?;
    let mem_dir = cgroup_dir(root, &text, if v2 { "" } else { "memory" });
    let current = mem_dir
        .as_ref()
        .and_then(|d| {
            let f = if v2 {
                "memory.max"
            } else {
                "memory.limit_in_bytes"
            };
            std::fs::read_to_string(d.join(f)).ok()
        })
        .and_then(|t| t.trim().parse::<i64>().ok());
    // "max" (no limit) does not parse: any new limit shrinks it.
    let grows = current.is_some_and(|c| r.memory_limit_in_bytes > c);
    for (controller, file, value) in cgroup_writes(v2, r, grows)? {
        let dir = cgroup_dir(root, &text, controller).ok_or_else(|| {
            CriError::invalid(
                "linux",
                format!("the container has no {controller} cgroup to set {file} in"),
            )
        })?;
        let path = dir.join(&file);
        std::fs::write(&path, &value).map_err(|e| {
            CriError::invalid(
                "linux",
                format!("cannot set {} to {value:?}: {e}", path.display()),
            )
        })?;
    }
    Ok(())
}

impl Runtime {
    pub async fn update_container_resources(
        &self,
        req: v1::UpdateContainerResourcesRequest,
    ) -> Result<(), CriError> {
        let linux = req
            .linux
            .ok_or_else(|| CriError::invalid("linux", "is required on Linux"))?;
        let e = self
            .store
            .find_container(&req.container_id)
            .await
            .ok_or_else(|| CriError::not_found("container", &req.container_id))?;
        // A start in progress reads the recorded resources once it has a cgroup: wait for it.
        let _start = e.start.lock().await;
        let (id, pid, state) = {
            let r = e.record.lock().await;
            (r.id.clone(), r.init_pid, r.state)
        };
        if !matches!(state, ContainerState::Created | ContainerState::Running) {
            return Err(CriError::FailedPrecondition {
                kind: "container",
                id,
                state: format!("{state:?}").to_lowercase(),
                action: "UpdateContainerResources",
                needed: "created or running",
            });
        }
        // Not started yet (no shim, no cgroup): checked and recorded here, written into the
        // cgroup by StartContainer.
        if pid <= 0 {
            cgroup_writes(
                super::stats::is_v2(Path::new("/sys/fs/cgroup")),
                &linux,
                false,
            )?;
        } else {
            let r = linux.clone();
            blocking("update container resources", move || {
                write_resources(pid, &r)
            })
            .await?;
        }
        self.store
            .update_container(&e, |r| r.resources = encode_hex(&linux))
            .await?;
        tracing::info!(container = %id, "container resources updated");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(f: impl FnOnce(&mut v1::LinuxContainerResources)) -> v1::LinuxContainerResources {
        let mut r = v1::LinuxContainerResources::default();
        f(&mut r);
        r
    }

    fn files(w: &[Write]) -> Vec<(&str, &str)> {
        w.iter().map(|(_, f, v)| (f.as_str(), v.as_str())).collect()
    }

    #[test]
    fn v1_writes_cpu_and_memory_with_swap_ordered_like_runc() {
        let r = res(|r| {
            r.cpu_shares = 512;
            r.cpu_quota = 50_000;
            r.cpu_period = 100_000;
            r.memory_limit_in_bytes = 128 << 20;
            r.memory_swap_limit_in_bytes = 256 << 20;
        });
        let grow = cgroup_writes(false, &r, true).unwrap();
        assert_eq!(
            files(&grow),
            [
                ("cpu.shares", "512"),
                ("cpu.cfs_period_us", "100000"),
                ("cpu.cfs_quota_us", "50000"),
                ("memory.memsw.limit_in_bytes", "268435456"),
                ("memory.limit_in_bytes", "134217728"),
            ]
        );
        let shrink = cgroup_writes(false, &r, false).unwrap();
        assert_eq!(shrink[3].1, "memory.limit_in_bytes");
        assert_eq!(shrink[4].1, "memory.memsw.limit_in_bytes");
        // Nothing asked, nothing written.
        assert!(cgroup_writes(false, &res(|_| {}), false)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn v2_writes_weight_max_and_unified() {
        let r = res(|r| {
            r.cpu_shares = 1024;
            r.cpu_quota = -1;
            r.memory_limit_in_bytes = 64 << 20;
            r.cpuset_cpus = "0".into();
            r.unified.insert("pids.max".into(), "100".into());
        });
        let w = cgroup_writes(true, &r, false).unwrap();
        let f = files(&w);
        assert!(f.contains(&("cpu.weight", "39")), "{f:?}");
        assert!(f.contains(&("cpu.max", "max 100000")), "{f:?}");
        assert!(f.contains(&("memory.max", "67108864")), "{f:?}");
        assert!(
            f.contains(&("cpuset.cpus", "0")) && f.contains(&("pids.max", "100")),
            "{f:?}"
        );
    }

    #[test]
    fn bad_values_are_refused_by_field() {
        let e = cgroup_writes(false, &res(|r| r.memory_limit_in_bytes = -5), false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("memory_limit_in_bytes"), "{e}");
        let e = cgroup_writes(
            false,
            &res(|r| {
                r.memory_limit_in_bytes = 100;
                r.memory_swap_limit_in_bytes = 50;
            }),
            false,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("memory_swap_limit_in_bytes"), "{e}");
        let e = cgroup_writes(
            true,
            &res(|r| {
                r.unified.insert("../escape".into(), "1".into());
            }),
            false,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("unified"), "{e}");
    }

    #[test]
    fn cgroup_dirs_come_from_proc_pid_cgroup() {
        let v1 = "12:cpu,cpuacct:/kinglet/p/c\n4:memory:/kinglet/p/c\n0::/\n";
        let root = Path::new("/sys/fs/cgroup");
        assert_eq!(
            cgroup_dir(root, v1, "cpu").unwrap(),
            Path::new("/sys/fs/cgroup/cpu/kinglet/p/c")
        );
        assert_eq!(
            cgroup_dir(root, v1, "memory").unwrap(),
            Path::new("/sys/fs/cgroup/memory/kinglet/p/c")
        );
        assert_eq!(cgroup_dir(root, v1, "cpuset"), None);
        let v2 = "0::/kinglet.slice/c.scope\n";
        assert_eq!(
            cgroup_dir(root, v2, "").unwrap(),
            Path::new("/sys/fs/cgroup/kinglet.slice/c.scope")
        );
    }
}
