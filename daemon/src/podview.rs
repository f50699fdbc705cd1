//! How kubectl shows a Pod: the READY, STATUS and RESTARTS columns of `get pods` (kubectl's
//! `printPod`: `Init:1/2`, `Init:CrashLoopBackOff`, `Init:Error`, `PodInitializing`, native
//! sidecars counted in READY, `Terminating`), and the container sections of `describe pod`
//! (`Init Containers:` and `Containers:`).

use k8s_openapi::api::core::v1::{Container, ContainerState, ContainerStatus, Pod};
use k8s_openapi::jiff::Timestamp;

/// The READY, STATUS and RESTARTS cells of a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodColumns {
    pub ready: String,
    pub status: String,
    pub restarts: i32,
    /// When a container last ended before a restart (its `lastState.terminated.finishedAt`,
    /// the latest of those counted in `restarts`).
    pub last_restart: Option<String>,
}

impl PodColumns {
    /// kubectl's RESTARTS cell: `4 (38s ago)` once a container has restarted, else `0`.
    pub fn restarts_cell(&self) -> String {
        match (self.restarts, &self.last_restart) {
            (0, _) | (_, None) => self.restarts.to_string(),
            (n, Some(t)) => match crate::fields::since(Some(t)) {
                Some(ago) => format!("{n} ({ago} ago)"),
                None => n.to_string(),
            },
        }
    }
}

/// The later of `last` and the time `c` last ended before a restart.
fn later_restart(last: Option<Timestamp>, c: &ContainerStatus) -> Option<Timestamp> {
    let t = c
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .and_then(|t| t.finished_at.as_ref())
        .map(|t| t.0);
    match (last, t) {
        (Some(l), Some(t)) => Some(l.max(t)),
        (l, t) => l.or(t),
    }
}

fn sidecar(c: Option<&Container>) -> bool {
    c.and_then(|c| c.restart_policy.as_deref()) == Some("Always")
}

fn terminated_reason(prefix: &str, s: &ContainerState) -> Option<String> {
    let t = s.terminated.as_ref()?;
    Some(match t.reason.as_deref().filter(|r| !r.is_empty()) {
        Some(r) => format!("{prefix}{r}"),
        None if t.signal.unwrap_or(0) != 0 => {
            format!("{prefix}Signal:{}", t.signal.unwrap_or(0))
        }
        None => format!("{prefix}ExitCode:{}", t.exit_code),
    })
}

/// kubectl's `printPod`, for the columns Kinglet shows.
pub fn columns(p: &Pod) -> PodColumns {
    let st = p.status.clone().unwrap_or_default();
    let spec = p.spec.clone().unwrap_or_default();
    let inits = spec.init_containers.clone().unwrap_or_default();
    let init_of = |name: &str| inits.iter().find(|c| c.name == name);
    let mut total = spec.containers.len() + inits.iter().filter(|c| sidecar(Some(c))).count();
    let mut ready = 0;
    let mut restarts = 0;
    let mut sidecar_restarts = 0;
    let (mut last_restart, mut sidecar_last_restart) = (None, None);
    let phase = st.phase.clone().unwrap_or_else(|| "Unknown".into());
    let mut reason = st
        .reason
        .clone()
        .filter(|r| !r.is_empty())
        .unwrap_or(phase.clone());
    let mut initializing = false;
    let init_statuses = st.init_container_statuses.clone().unwrap_or_default();
    for (i, c) in init_statuses.iter().enumerate() {
        restarts += c.restart_count;
        last_restart = later_restart(last_restart, c);
        let is_sidecar = sidecar(init_of(&c.name));
        if is_sidecar {
            sidecar_restarts += c.restart_count;
            sidecar_last_restart = later_restart(sidecar_last_restart, c);
        }
        let state = c.state.clone().unwrap_or_default();
        if state.terminated.as_ref().is_some_and(|t| t.exit_code == 0) {
            continue;
        }
        if is_sidecar && c.started == Some(true) {
            if c.ready {
                ready += 1;
            }
            continue;
        }
        if let Some(r) = terminated_reason("Init:", &state) {
            reason = r;
        } else if let Some(w) = state
            .waiting
            .as_ref()
            .and_then(|w| w.reason.as_deref())
            .filter(|r| !r.is_empty() && *r != "PodInitializing")
        {
            reason = format!("Init:{w}");
        } else {
            reason = format!("Init:{i}/{}", inits.len());
        }
        initializing = true;
        break;
    }
    let initialized = st
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Initialized" && c.status == "True");
    if !initializing || initialized {
        restarts = sidecar_restarts;
        last_restart = sidecar_last_restart;
        let mut has_running = false;
        for c in st.container_statuses.iter().flatten().rev() {
            restarts += c.restart_count;
            last_restart = later_restart(last_restart, c);
            let state = c.state.clone().unwrap_or_default();
            if let Some(w) = state
                .waiting
                .as_ref()
                .and_then(|w| w.reason.clone())
                .filter(|r| !r.is_empty())
            {
                reason = w;
            } else if let Some(r) = terminated_reason("", &state) {
                reason = r;
            } else if c.ready && state.running.is_some() {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            let pod_ready = st
                .conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            reason = if pod_ready { "Running" } else { "NotReady" }.into();
        }
    }
    if p.metadata.deletion_timestamp.is_some() && !matches!(phase.as_str(), "Succeeded" | "Failed")
    {
        reason = "Terminating".into();
    }
    // A spec without containers (never valid) still shows a sane READY cell.
    total = total.max(ready);
    PodColumns {
        ready: format!("{ready}/{total}"),
        status: reason,
        restarts,
        last_restart: last_restart.map(|t| t.to_string()),
    }
}

fn state_lines(label: &str, s: Option<&ContainerState>, out: &mut String) {
    let Some(s) = s else { return };
    let t = |t: &Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>| {
        t.as_ref().map(|t| t.0.to_string()).unwrap_or_default()
    };
    if let Some(r) = &s.running {
        out.push_str(&format!(
            "    {label:<16}Running\n      Started:      {}\n",
            t(&r.started_at)
        ));
    } else if let Some(w) = &s.waiting {
        out.push_str(&format!(
            "    {label:<16}Waiting\n      Reason:       {}\n",
            w.reason.clone().unwrap_or_default()
        ));
        if let Some(m) = w.message.as_ref().filter(|m| !m.is_empty()) {
            out.push_str(&format!("      Message:      {m}\n"));
        }
    } else if let Some(x) = &s.terminated {
        out.push_str(&format!(
            "    {label:<16}Terminated\n      Reason:       {}\n      Exit Code:    {}\n      Started:      {}\n      Finished:     {}\n",
            x.reason.clone().unwrap_or_default(),
            x.exit_code,
            t(&x.started_at),
            t(&x.finished_at),
        ));
    }
}

/// One `describe pod` container section (`Init Containers:` or `Containers:`), every
/// container of `containers` with its status from `statuses` (matched by name).
pub fn containers_section(
    title: &str,
    containers: &[Container],
    statuses: &[ContainerStatus],
    out: &mut String,
) {
    out.push_str(&format!("{title}:\n"));
    for c in containers {
        let cs = statuses.iter().find(|s| s.name == c.name);
        out.push_str(&format!("  {}:\n", c.name));
        out.push_str(&format!(
            "    Container ID:   {}\n",
            cs.and_then(|s| s.container_id.clone()).unwrap_or_default()
        ));
        out.push_str(&format!(
            "    Image:          {}\n",
            c.image.clone().unwrap_or_default()
        ));
        if let Some(p) = c.restart_policy.as_deref() {
            out.push_str(&format!("    Restart Policy: {p}\n"));
        }
        state_lines("State:", cs.and_then(|s| s.state.as_ref()), out);
        state_lines("Last State:", cs.and_then(|s| s.last_state.as_ref()), out);
        out.push_str(&format!(
            "    Ready:          {}\n",
            cs.map(|s| s.ready).unwrap_or(false)
        ));
        out.push_str(&format!(
            "    Restart Count:  {}\n",
            cs.map(|s| s.restart_count).unwrap_or(0)
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    fn waiting(name: &str, reason: &str, restarts: i32) -> serde_json::Value {
        serde_json::json!({"name": name, "image": "b", "imageID": "", "ready": false, "restartCount": restarts,
            "state": {"waiting": {"reason": reason}}})
    }
    fn running(name: &str, ready: bool) -> serde_json::Value {
        serde_json::json!({"name": name, "image": "b", "imageID": "", "ready": ready, "restartCount": 0, "started": true,
            "state": {"running": {}}})
    }
    fn done(name: &str, code: i32, reason: &str) -> serde_json::Value {
        serde_json::json!({"name": name, "image": "b", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": code, "reason": reason}}})
    }

    fn with_inits(inits: serde_json::Value, apps: serde_json::Value, initialized: bool) -> Pod {
        pod(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {
                "initContainers": [{"name": "i1", "image": "b"}, {"name": "side", "image": "b", "restartPolicy": "Always"}, {"name": "i2", "image": "b"}],
                "containers": [{"name": "app", "image": "b"}],
            },
            "status": {"phase": "Pending",
                "conditions": [{"type": "Initialized", "status": if initialized {"True"} else {"False"}}],
                "initContainerStatuses": inits, "containerStatuses": apps},
        }))
    }

    #[test]
    fn init_progress_failures_and_back_off_as_kubectl_prints_them() {
        let apps = serde_json::json!([waiting("app", "PodInitializing", 0)]);
        // The first done, the sidecar running, the third running: Init:2/3.
        let p = with_inits(
            serde_json::json!([
                done("i1", 0, "Completed"),
                running("side", true),
                running("i2", false)
            ]),
            apps.clone(),
            false,
        );
        let c = columns(&p);
        assert_eq!((c.ready.as_str(), c.status.as_str()), ("1/2", "Init:2/3"));
        let p = with_inits(
            serde_json::json!([
                waiting("i1", "PodInitializing", 0),
                waiting("side", "PodInitializing", 0),
                waiting("i2", "PodInitializing", 0)
            ]),
            apps.clone(),
            false,
        );
        assert_eq!(columns(&p).status, "Init:0/3");
        let p = with_inits(
            serde_json::json!([
                waiting("i1", "CrashLoopBackOff", 3),
                waiting("side", "PodInitializing", 0),
                waiting("i2", "PodInitializing", 0)
            ]),
            apps.clone(),
            false,
        );
        let c = columns(&p);
        assert_eq!(
            (c.status.as_str(), c.restarts),
            ("Init:CrashLoopBackOff", 3)
        );
        let p = with_inits(
            serde_json::json!([
                done("i1", 1, "Error"),
                waiting("side", "PodInitializing", 0),
                waiting("i2", "PodInitializing", 0)
            ]),
            apps.clone(),
            false,
        );
        assert_eq!(columns(&p).status, "Init:Error");
        let p = with_inits(
            serde_json::json!([
                done("i1", 2, ""),
                waiting("side", "PodInitializing", 0),
                waiting("i2", "PodInitializing", 0)
            ]),
            apps,
            false,
        );
        assert_eq!(columns(&p).status, "Init:ExitCode:2");
        // Initialized, the app not created yet: PodInitializing; then running with the sidecar.
        let done_inits = serde_json::json!([
            done("i1", 0, "Completed"),
            running("side", true),
            done("i2", 0, "Completed")
        ]);
        let p = with_inits(
            done_inits.clone(),
            serde_json::json!([waiting("app", "PodInitializing", 0)]),
            true,
        );
        assert_eq!(columns(&p).status, "PodInitializing");
        let mut p = with_inits(done_inits, serde_json::json!([running("app", true)]), true);
        p.status.as_mut().unwrap().phase = Some("Running".into());
        let c = columns(&p);
        assert_eq!((c.ready.as_str(), c.status.as_str()), ("2/2", "Running"));
        p.metadata.deletion_timestamp = Some(now());
        assert_eq!(columns(&p).status, "Terminating");
    }

    fn now() -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Time {
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
        )
    }

    #[test]
    fn describe_lists_every_container_with_its_state() {
        let p = pod(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {"initContainers": [{"name": "setup", "image": "b"}],
                     "containers": [{"name": "web", "image": "b"}, {"name": "log", "image": "b"}]},
            "status": {"initContainerStatuses": [done("setup", 0, "Completed")],
                       "containerStatuses": [running("web", true), running("log", true)]},
        }));
        let spec = p.spec.clone().unwrap();
        let st = p.status.clone().unwrap();
        let mut out = String::new();
        containers_section(
            "Init Containers",
            spec.init_containers.as_deref().unwrap_or_default(),
            st.init_container_statuses.as_deref().unwrap_or_default(),
            &mut out,
        );
        containers_section(
            "Containers",
            &spec.containers,
            st.container_statuses.as_deref().unwrap_or_default(),
            &mut out,
        );
        assert!(out.starts_with("Init Containers:\n  setup:\n"), "{out}");
        assert!(
            out.contains("Terminated\n      Reason:       Completed"),
            "{out}"
        );
        let apps = out.split("Containers:\n").nth(2).unwrap();
        assert!(
            apps.contains("  web:\n") && apps.contains("  log:\n"),
            "{out}"
        );
        assert_eq!(apps.matches("Running").count(), 2, "{out}");
    }

    #[test]
    fn restarts_say_how_long_ago_the_last_one_was() {
        let ended = |mins: i64| {
            (chrono::Utc::now() - chrono::Duration::minutes(mins))
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        };
        let restarted = |name: &str, n: i32, mins: i64| {
            serde_json::json!({"name": name, "image": "b", "imageID": "", "ready": true,
                "restartCount": n, "started": true, "state": {"running": {}},
                "lastState": {"terminated": {"exitCode": 137, "finishedAt": ended(mins)}}})
        };
        let p = pod(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "a", "image": "b"}, {"name": "b", "image": "b"}]},
            "status": {"phase": "Running",
                "containerStatuses": [restarted("a", 3, 30), restarted("b", 1, 10)]},
        }));
        let c = columns(&p);
        assert_eq!(c.restarts_cell(), "4 (10m ago)");
        let p = pod(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "a", "image": "b"}]},
            "status": {"phase": "Running", "containerStatuses": [running("a", true)]},
        }));
        assert_eq!(columns(&p).restarts_cell(), "0");
    }
}
