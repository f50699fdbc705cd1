//! One container's step of a pass: keep it running, start it, or restart it after an exit by
//! its policy with CrashLoopBackOff; pull its image by imagePullPolicy (in the background, with
//! ImagePullBackOff); run its postStart hook; start its prober.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, LifecycleHandler};
use kinglet_proto::v1;
use tokio::time::Instant;

use super::{
    attempts, handler_host, restarts, status_of, Pass, PodEnv, PodMsg, PodState, Progress,
    ReconcileError, Step,
};
use crate::podspec::{self, ConfigError};
use crate::{hooks, probe, security};

/// How long a postStart hook may run (the kubelet waits without a limit).
const POST_START_LIMIT: Duration = Duration::from_secs(30);

/// Bring container `c` towards running by `policy`.
pub(super) async fn ensure(
    pass: &Pass<'_>,
    state: &mut PodState,
    env: &PodEnv,
    c: &Container,
    policy: &str,
) -> Result<Progress, ReconcileError> {
    let attempt = match next_attempt(pass, state, env, c, policy).await? {
        Next::Create(attempt) => attempt,
        Next::Done(progress) => return Ok(progress),
    };
    let cfg = podspec::container_config(
        pass.pod,
        c,
        attempt,
        pass.fields.namespace,
        &pass.fields,
        &*pass.world.snap,
        &pass.vols,
    );
    let mut cfg = match cfg {
        Ok(cfg) => cfg,
        Err(ConfigError(msg)) => return Ok(config_error(state, c, msg)),
    };
    // A container shares its pod's user namespace (the kubelet gives it the same options).
    let userns = pass
        .sandbox_cfg
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.as_ref())
        .and_then(|n| n.userns_options.clone());
    podspec::set_container_userns(&mut cfg, userns);
    // The kubelet-managed /etc/hosts, unless the container mounts its own there.
    if let Some(h) = &pass.hosts {
        if !cfg.mounts.iter().any(|m| m.container_path == "/etc/hosts") {
            cfg.mounts.push(v1::Mount {
                container_path: "/etc/hosts".into(),
                host_path: h.display().to_string(),
                ..Default::default()
            });
        }
    }
    let Some(image_status) = image_ready(pass, state, env, c).await else {
        return Ok(Progress::Waiting);
    };
    if let Err(ConfigError(msg)) =
        security::verify_run_as_non_root(pass.pod, c, image_status.as_ref())
    {
        return Ok(config_error(state, c, msg));
    }
    security::complete_user(&mut cfg, image_status.as_ref());
    let req = v1::CreateContainerRequest {
        pod_sandbox_id: pass.sandbox.clone(),
        config: Some(cfg),
        sandbox_config: Some(pass.sandbox_cfg.clone()),
    };
    let id = match env.rt.create_container(req).await {
        Ok(r) => r.container_id,
        Err(e) => {
            state.set_waiting(&c.name, "CreateContainerError", e.message);
            return Ok(Progress::Waiting);
        }
    };
    let post_start = c.lifecycle.as_ref().and_then(|l| l.post_start.as_ref());
    // Marked before the start: a status computed between the start and the hook must not
    // report the container running before its postStart hook is done.
    state.shared.set_post_starting(&id, post_start.is_some());
    if let Err(e) = env.rt.start_container(&id).await {
        state.shared.set_post_starting(&id, false);
        state.set_waiting(&c.name, "RunContainerError", e.message);
        return Ok(Progress::Waiting);
    }
    if let Some(h) = post_start {
        if !run_post_start(pass, state, env, c, h, &id).await {
            return Ok(Progress::Waiting);
        }
    }
    state.clear_waiting(&c.name);
    ensure_prober(pass, state, env, c, &id);
    state.event(false, "Started", format!("Started container {}", c.name));
    tracing::info!(pod = %pass.fields.name, container = %c.name, attempt, "container started");
    Ok(Progress::Running)
}

/// What to do with a container given its runtime attempts.
enum Next {
    /// Nothing more this pass.
    Done(Progress),
    /// Create attempt number n.
    Create(u32),
}

/// Running: keep it; created: start it; exited: done by its policy, held back by
/// CrashLoopBackOff, or restarted (the previous run is kept for `logs --previous`).
async fn next_attempt(
    pass: &Pass<'_>,
    state: &mut PodState,
    env: &PodEnv,
    c: &Container,
    policy: &str,
) -> Result<Next, ReconcileError> {
    let mine = attempts(&pass.existing, &c.name);
    let Some(last) = mine.last() else {
        return Ok(Next::Create(0));
    };
    if last.state == v1::ContainerState::ContainerRunning as i32 {
        state.clear_waiting(&c.name);
        ensure_prober(pass, state, env, c, &last.id);
        return Ok(Next::Done(Progress::Running));
    }
    if last.state == v1::ContainerState::ContainerCreated as i32 {
        env.rt
            .start_container(&last.id)
            .await
            .step(|| format!("start container {}", c.name))?;
        return Ok(Next::Done(Progress::Running));
    }
    let st = status_of(&*env.rt, &last.id)
        .await
        .step(|| format!("status of container {}", c.name))?;
    if !restarts(policy, st.exit_code) {
        return Ok(Next::Done(Progress::Exited(st.exit_code)));
    }
    let now = Instant::now();
    let ran = Duration::from_nanos((st.finished_at - st.started_at).max(0) as u64);
    let memo = state.memo(&c.name);
    let before = memo.backoff;
    let ready = memo.backoff.ready(now, ran, &env.policy);
    if memo.backoff != before {
        state.backoff_changed = true;
    }
    if !ready {
        let next = state.memo(&c.name).backoff.next;
        let f = &pass.fields;
        state.event(
            true,
            "BackOff",
            format!("Back-off restarting failed container {}", c.name),
        );
        state.set_waiting(
            &c.name,
            "CrashLoopBackOff",
            format!(
                "back-off {}s restarting failed container={} pod={}_{}({})",
                next.as_secs(),
                c.name,
                f.name,
                f.namespace,
                f.uid
            ),
        );
        return Ok(Next::Done(Progress::Waiting));
    }
    state.memo(&c.name).backoff.restarted(now, &env.policy);
    state.backoff_changed = true;
    // Written ahead of the restart it allows: a daemon killed right after the restart finds
    // this back-off, not the one of the run before (which may have run out).
    if let Some(b) = state.take_backoff() {
        env.book.put(&state.uid, b).await;
    }
    // Keep the last run (for `logs --previous`), drop older ones.
    for old in &mine[..mine.len() - 1] {
        let _ = env.rt.remove_container(&old.id).await;
        state.shared.forget_probe(&old.id);
    }
    Ok(Next::Create(
        last.metadata.as_ref().map(|m| m.attempt).unwrap_or(0) + 1,
    ))
}

/// A container whose configuration cannot be made: an event, and waiting
/// CreateContainerConfigError.
fn config_error(state: &mut PodState, c: &Container, msg: String) -> Progress {
    state.event(true, "Failed", format!("Error: {msg}"));
    state.set_waiting(&c.name, "CreateContainerConfigError", msg);
    Progress::Waiting
}

/// imagePullPolicy, with Kubernetes' default: Always for `:latest` or no tag, else
/// IfNotPresent.
pub(crate) fn pull_policy(c: &Container) -> String {
    if let Some(p) = &c.image_pull_policy {
        return p.clone();
    }
    let image = c.image.as_deref().unwrap_or_default();
    let last = image.rsplit('/').next().unwrap_or("");
    if image.contains('@') || (last.contains(':') && !last.ends_with(":latest")) {
        "IfNotPresent".into()
    } else {
        "Always".into()
    }
}

/// What a failed pull of an image that is in the store adds: imagePullPolicy defaults to
/// Always for `:latest` or no tag (as in Kubernetes), so the local copy is not used.
pub(crate) fn local_image_hint(image: &str) -> String {
    format!(
        " (image {image:?} is present locally, but imagePullPolicy defaults to Always for \
         \":latest\" or no tag: set imagePullPolicy: IfNotPresent or Never on the container to \
         use the local image, or give the image another tag)"
    )
}

/// Whether `c`'s image may be used now (Some, with its status when present), else why not
/// (the waiting reason is set, a pull may have started).
async fn image_ready(
    pass: &Pass<'_>,
    state: &mut PodState,
    env: &PodEnv,
    c: &Container,
) -> Option<Option<v1::Image>> {
    let image = c.image.clone().unwrap_or_default();
    let req = v1::ImageStatusRequest {
        image: Some(v1::ImageSpec {
            image: image.clone(),
            ..Default::default()
        }),
        verbose: false,
    };
    let status = env.rt.image_status(req).await.ok().and_then(|r| r.image);
    let present = status.is_some();
    let pulled = state.memo(&c.name).pull.pulled.contains(&image);
    let must_pull = match pull_policy(c).as_str() {
        "Never" if !present => {
            let msg = format!("Container image {image:?} is not present with pull policy of Never");
            state.set_waiting(&c.name, "ErrImageNeverPull", msg);
            return None;
        }
        "Never" => false,
        "Always" => !pulled,
        _ => !present,
    };
    if must_pull {
        state.memo(&c.name).pull.present_locally = present && c.image_pull_policy.is_none();
        start_pull(pass, state, env, c, &image);
        return None;
    }
    Some(status)
}

/// Pull `image` for container `c` in the background (one pull at a time per container), with
/// the pod's imagePullSecrets; the result comes back to the worker as [`PodMsg::Pulled`].
fn start_pull(pass: &Pass<'_>, state: &mut PodState, env: &PodEnv, c: &Container, image: &str) {
    let pull = &state.memo(&c.name).pull;
    if pull
        .backoff
        .not_before
        .is_some_and(|nb| Instant::now() < nb)
    {
        let msg = format!("Back-off pulling image {image:?}: {}", pull.last_error);
        state.set_waiting(&c.name, "ImagePullBackOff", msg);
        return;
    }
    if pull.in_flight {
        return;
    }
    state.memo(&c.name).pull.in_flight = true;
    // Credentials from the pod's imagePullSecrets (kubernetes.io/dockerconfigjson).
    let ns = pass.fields.namespace;
    let secrets: Vec<(String, Vec<u8>)> = pass
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.image_pull_secrets.clone())
        .unwrap_or_default()
        .iter()
        .filter_map(|r| {
            let d = podspec::Sources::secret(&*pass.world.snap, ns, &r.name)?;
            Some((r.name.clone(), d.get(".dockerconfigjson")?.clone()))
        })
        .collect();
    let msg = format!("Pulling image {image:?}");
    state.set_waiting(&c.name, "ContainerCreating", msg.clone());
    state.event(false, "Pulling", msg);
    let (rt, inbox, wake) = (env.rt.clone(), state.inbox.clone(), env.wake.clone());
    let (container, image) = (c.name.clone(), image.to_owned());
    tokio::spawn(async move {
        let result = rt.pull_image(&image, secrets).await;
        let _ = inbox.send(PodMsg::Pulled {
            container,
            image,
            result,
        });
        wake.wake();
    });
}

/// Start the prober of a running container that has probes, once.
fn ensure_prober(pass: &Pass<'_>, state: &mut PodState, env: &PodEnv, c: &Container, id: &str) {
    if c.liveness_probe.is_none() && c.readiness_probe.is_none() && c.startup_probe.is_none() {
        return;
    }
    if !state.probers.insert(id.to_owned()) {
        return;
    }
    // Not started / not ready until the probes say so, from the first status on.
    if state.shared.probe(id).is_none() {
        state.shared.update_probe(id, |s| {
            s.started = c.startup_probe.is_none();
            s.ready = c.readiness_probe.is_none();
        });
    }
    let p = probe::Prober {
        rt: env.rt.clone(),
        pod: state.shared.clone(),
        container_id: id.to_owned(),
        c: c.clone(),
        host: handler_host(pass.fields.pod_ip).to_owned(),
        grace: pass.grace,
        restarts: pass
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.as_deref())
            != Some("Never"),
        wake: env.wake.clone(),
    };
    let (inbox, wake) = (state.inbox.clone(), env.wake.clone());
    tokio::spawn(async move {
        let container_id = p.container_id.clone();
        p.run_all().await;
        let _ = inbox.send(PodMsg::ProberDone { container_id });
        wake.wake();
    });
}

/// Run container `id`'s postStart hook (bounded by [`POST_START_LIMIT`]); until it is done the
/// container is reported waiting (the caller marks it before the start). On failure: an event, and the container is killed (its
/// policy then decides). True when the hook succeeded.
async fn run_post_start(
    pass: &Pass<'_>,
    state: &mut PodState,
    env: &PodEnv,
    c: &Container,
    h: &LifecycleHandler,
    id: &str,
) -> bool {
    let host = handler_host(pass.fields.pod_ip);
    let hook = hooks::run_handler(&*env.rt, id, c, h, host, POST_START_LIMIT).await;
    state.shared.set_post_starting(id, false);
    let Err(msg) = hook else {
        return true;
    };
    state.event(
        true,
        "FailedPostStartHook",
        format!("PostStart hook of {} failed: {msg}", c.name),
    );
    let kill = hooks::kill_container(&*env.rt, &state.shared, id, c, host, pass.grace).await;
    if let Err(e) = kill {
        tracing::warn!(pod = %pass.fields.name, container = %c.name, err = %e, "killing after a failed postStart hook");
    }
    false
}
