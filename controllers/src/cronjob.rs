//! The CronJob controller, as upstream's `cronjob_controllerv2`: at each scheduled time (in
//! `spec.timeZone`, else the host's zone) a Job `<cronjob>-<scheduled time in minutes since
//! the epoch>` from the jobTemplate, owned by the CronJob and annotated with
//! `batch.kubernetes.io/cronjob-scheduled-timestamp`. Missed times (a daemon that was down)
//! give at most one catch-up run, the most recent one, unless it is older than
//! startingDeadlineSeconds ("MissSchedule"); over 100 missed gives "TooManyMissedTimes".
//! concurrencyPolicy Allow / Forbid (skip while a Job is active) / Replace (delete the active
//! ones first); `suspend` starts nothing. Finished Jobs leave `status.active`
//! (lastSuccessfulTime) and are deleted beyond successfulJobsHistoryLimit (3) and
//! failedJobsHistoryLimit (1), oldest first. The worker sleeps until the next scheduled time.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::batch::v1::{CronJob, CronJobStatus, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kinglet_kubelet::harness::{Action, Reconciler, Wake};
use kinglet_manifest::cron::{self, Schedule};
use kinglet_manifest::{Object, ObjectKey};

use crate::common;
use crate::{ControllerError, Store};

pub const SCHEDULED_ANNOTATION: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
/// Over this many missed start times, the "TooManyMissedTimes" warning.
pub const MAX_MISSED: i64 = 100;

pub fn to_chrono(t: Timestamp) -> DateTime<Utc> {
    DateTime::from_timestamp(t.as_second(), t.subsec_nanosecond().max(0) as u32).unwrap_or_default()
}

pub fn to_jiff(t: DateTime<Utc>) -> Timestamp {
    Timestamp::from_second(t.timestamp()).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// A schedule in its time zone (None: the host's).
#[derive(Debug, Clone)]
pub struct Cron {
    pub schedule: Schedule,
    pub tz: Option<chrono_tz::Tz>,
}

impl Cron {
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match &self.tz {
            Some(tz) => self.schedule.next_after(t, tz),
            None => self.schedule.next_after(t, &chrono::Local),
        }
    }
}

/// Upstream's `mostRecentScheduleTime`: the latest scheduled time in (earliest, now], and
/// roughly how many were missed (the interval between the first two, fitted into the span).
pub fn most_recent(
    c: &Cron,
    earliest: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(Option<DateTime<Utc>>, i64), String> {
    let Some(t1) = c.next_after(earliest) else {
        return Ok((None, 0));
    };
    if now < t1 {
        return Ok((None, 0));
    }
    let Some(t2) = c.next_after(t1) else {
        return Ok((Some(t1), 1));
    };
    if now < t2 {
        return Ok((Some(t1), 1));
    }
    let between = (t2 - t1).num_seconds();
    if between < 1 {
        return Err("time difference between two schedules is less than 1 second".into());
    }
    let missed = (now - t1).num_seconds() / between + 1;
    // Start a little before the estimate and walk forward (schedules are not regular).
    let back = chrono::Duration::seconds((missed - 2).max(0) * between);
    let walk = |from: DateTime<Utc>| {
        let mut t = c.next_after(from);
        let mut latest = None;
        while let Some(x) = t.filter(|x| *x <= now) {
            latest = Some(x);
            t = c.next_after(x);
        }
        latest
    };
    // An irregular schedule (`30 6-16/4 * * 1-5`) can put the estimate past `now`: then walk
    // from the first missed time.
    let latest = walk(t1 + back - chrono::Duration::seconds(1).min(back)).or_else(|| walk(t1));
    Ok((Some(latest.unwrap_or(t1)), missed))
}

/// `<cronjob>-<scheduled time in minutes since the epoch>`.
pub fn job_name(cronjob: &str, scheduled: DateTime<Utc>) -> String {
    format!("{cronjob}-{}", scheduled.timestamp() / 60)
}

fn job_finished(j: &Job) -> Option<&'static str> {
    let conds = j.status.as_ref().and_then(|s| s.conditions.as_ref())?;
    for c in conds.iter().filter(|c| c.status == "True") {
        match c.type_.as_str() {
            "Complete" => return Some("Complete"),
            "Failed" => return Some("Failed"),
            _ => {}
        }
    }
    None
}

pub struct CronJobReconciler<S: Store> {
    store: Arc<S>,
}

impl<S: Store> CronJobReconciler<S> {
    pub fn new(store: Arc<S>) -> Self {
        CronJobReconciler { store }
    }
}

/// A CronJob worker's memory: the scheduled time it last warned about (one event each).
#[derive(Debug, Default)]
pub struct CjState {
    warned: Option<DateTime<Utc>>,
}

#[async_trait::async_trait]
impl<S: Store> Reconciler for CronJobReconciler<S> {
    type Key = ObjectKey;
    type State = CjState;
    type Handle = ();
    type Error = ControllerError;

    fn init(&self, _key: &ObjectKey, _wake: Wake) -> (CjState, ()) {
        (CjState::default(), ())
    }

    async fn reconcile(
        &self,
        key: &ObjectKey,
        st: &mut CjState,
    ) -> Result<Action, ControllerError> {
        let Some(Object::CronJob(cj)) = self.store.get(key).await else {
            return Ok(Action::Done);
        };
        if crate::foreground::being_deleted(&cj.metadata) {
            return Ok(Action::AwaitChange);
        }
        sync(&*self.store, key, &cj, st).await
    }
}

fn job_key(ns: &str, name: &str) -> ObjectKey {
    ObjectKey {
        kind: "Job",
        namespace: ns.to_owned(),
        name: name.to_owned(),
    }
}

fn job_ref(j: &ObjectMeta) -> ObjectReference {
    ObjectReference {
        api_version: Some("batch/v1".into()),
        kind: Some("Job".into()),
        name: j.name.clone(),
        namespace: j.namespace.clone(),
        uid: j.uid.clone(),
        ..Default::default()
    }
}

/// Jobs of the CronJob: finished ones leave `active` (a success sets lastSuccessfulTime), and
/// those beyond the history limits are deleted, oldest first. Returns the unfinished ones.
async fn track_jobs<S: Store + ?Sized>(
    store: &S,
    key: &ObjectKey,
    cj: &CronJob,
    status: &mut CronJobStatus,
) -> Result<Vec<Job>, ControllerError> {
    let uid = cj.metadata.uid.clone().unwrap_or_default();
    let spec = cj.spec.clone().unwrap_or_default();
    let mut active = Vec::new();
    let (mut ok, mut failed) = (Vec::new(), Vec::new());
    for o in store.list("Job").await {
        let Object::Job(j) = o else { continue };
        if j.metadata.namespace.as_deref() != Some(&key.namespace)
            || !common::owned_by(&j.metadata, &uid)
        {
            continue;
        }
        match job_finished(&j) {
            None => active.push(*j),
            Some(kind) => {
                if kind == "Complete" {
                    let done = j.status.as_ref().and_then(|s| s.completion_time.clone());
                    if done.as_ref().map(|t| t.0)
                        > status.last_successful_time.as_ref().map(|t| t.0)
                    {
                        status.last_successful_time = done;
                    }
                    ok.push(*j);
                } else {
                    failed.push(*j);
                }
            }
        }
    }
    let start = |j: &Job| {
        j.status
            .as_ref()
            .and_then(|s| s.start_time.as_ref())
            .or(j.metadata.creation_timestamp.as_ref())
            .map(|t| t.0)
    };
    for (mut list, limit) in [
        (ok, spec.successful_jobs_history_limit.unwrap_or(3)),
        (failed, spec.failed_jobs_history_limit.unwrap_or(1)),
    ] {
        list.sort_by_key(start);
        let extra = list.len().saturating_sub(limit.max(0) as usize);
        for j in &list[..extra] {
            let name = j.metadata.name.clone().unwrap_or_default();
            tracing::info!(cronjob = %key, job = %name, "deleting finished job beyond the history limit");
            store.delete(&job_key(&key.namespace, &name)).await?;
        }
    }
    active.sort_by_key(start);
    status.active =
        (!active.is_empty()).then(|| active.iter().map(|j| job_ref(&j.metadata)).collect());
    Ok(active)
}

/// One pass over CronJob `cj`.
pub async fn sync<S: Store + ?Sized>(
    store: &S,
    key: &ObjectKey,
    cj: &CronJob,
    st: &mut CjState,
) -> Result<Action, ControllerError> {
    let invalid = |reason: String| ControllerError::Invalid {
        object: key.to_string(),
        reason,
    };
    let spec = cj.spec.clone().ok_or_else(|| invalid("no spec".into()))?;
    let now = to_chrono(store.now());
    let mut status = cj.status.clone().unwrap_or_default();
    let mut active = track_jobs(store, key, cj, &mut status).await?;
    let tz = spec
        .time_zone
        .as_deref()
        .map(kinglet_manifest::time_zone)
        .transpose()
        .map_err(invalid)?;
    let schedule = cron::parse(&spec.schedule).map_err(invalid)?;
    let c = Cron { schedule, tz };
    let wait_next = |now: DateTime<Utc>| {
        c.next_after(now).map(|n| {
            let ms = (n - now).num_milliseconds().max(0) as u64;
            Action::Requeue(Duration::from_millis(ms) + Duration::from_millis(10))
        })
    };
    if spec.suspend == Some(true) {
        write_status(store, key, status).await?;
        return Ok(Action::AwaitChange);
    }
    let mut earliest = status
        .last_schedule_time
        .as_ref()
        .or(cj.metadata.creation_timestamp.as_ref())
        .map(|t| to_chrono(t.0))
        .unwrap_or(now);
    if let Some(d) = spec.starting_deadline_seconds {
        earliest = earliest.max(now - chrono::Duration::seconds(d));
    }
    let (scheduled, missed) = most_recent(&c, earliest, now).map_err(invalid)?;
    let Some(scheduled) = scheduled else {
        write_status(store, key, status).await?;
        return Ok(wait_next(now).unwrap_or(Action::AwaitChange));
    };
    let warn_once = st.warned != Some(scheduled);
    if missed > MAX_MISSED && warn_once {
        store.event(key, "Warning", "TooManyMissedTimes", format!("too many missed start times: {missed}. Set or decrease .spec.startingDeadlineSeconds or check clock skew"));
    }
    let too_late = spec
        .starting_deadline_seconds
        .is_some_and(|d| scheduled + chrono::Duration::seconds(d) < now);
    let name = job_name(&key.name, scheduled);
    let done = status.last_schedule_time.as_ref().map(|t| to_chrono(t.0)) == Some(scheduled)
        || active
            .iter()
            .any(|j| j.metadata.name.as_deref() == Some(&name))
        || store.get(&job_key(&key.namespace, &name)).await.is_some();
    let policy = spec.concurrency_policy.as_deref().unwrap_or("Allow");
    if too_late {
        if warn_once {
            store.event(
                key,
                "Warning",
                "MissSchedule",
                format!(
                    "Missed scheduled time to start a job: {}",
                    scheduled.to_rfc3339()
                ),
            );
        }
    } else if done {
    } else if policy == "Forbid" && !active.is_empty() {
        if warn_once {
            store.event(key, "Normal", "JobAlreadyActive", "Not starting job because prior execution is running and concurrency policy is Forbid".into());
        }
    } else {
        let run = Run {
            c: &c,
            name: &name,
            scheduled,
            now,
            replace: policy == "Replace",
        };
        start_job(store, key, cj, &run, &mut active, &mut status).await?;
    }
    if warn_once && (too_late || missed > MAX_MISSED || policy == "Forbid") {
        st.warned = Some(scheduled);
    }
    write_status(store, key, status).await?;
    Ok(wait_next(now).unwrap_or(Action::AwaitChange))
}

/// One scheduled run to start.
struct Run<'a> {
    c: &'a Cron,
    name: &'a str,
    scheduled: DateTime<Utc>,
    now: DateTime<Utc>,
    /// concurrencyPolicy Replace: the active Jobs are deleted first.
    replace: bool,
}

/// Start the Job of `run` (after deleting the active ones with Replace), recorded in `status`.
async fn start_job<S: Store + ?Sized>(
    store: &S,
    key: &ObjectKey,
    cj: &CronJob,
    run: &Run<'_>,
    active: &mut Vec<Job>,
    status: &mut CronJobStatus,
) -> Result<(), ControllerError> {
    let (name, scheduled) = (run.name, run.scheduled);
    if run.replace {
        for j in active.drain(..) {
            let n = j.metadata.name.clone().unwrap_or_default();
            tracing::info!(cronjob = %key, job = %n, "deleting active job (concurrencyPolicy Replace)");
            store.delete(&job_key(&key.namespace, &n)).await?;
            store.event(
                key,
                "Normal",
                "SuccessfulDelete",
                format!("Deleted job {n}"),
            );
        }
    }
    let job = create_job(store, key, cj, name, scheduled, run.c).await?;
    let late_ms = (run.now - scheduled).num_milliseconds();
    tracing::info!(cronjob = %key, job = %name, scheduled = %scheduled.to_rfc3339(), late_ms, "created job");
    store.event(
        key,
        "Normal",
        "SuccessfulCreate",
        format!("Created job {name}"),
    );
    active.push(job);
    status.active = Some(active.iter().map(|j| job_ref(&j.metadata)).collect());
    status.last_schedule_time = Some(Time(to_jiff(scheduled)));
    Ok(())
}

async fn create_job<S: Store + ?Sized>(
    store: &S,
    key: &ObjectKey,
    cj: &CronJob,
    name: &str,
    scheduled: DateTime<Utc>,
    c: &Cron,
) -> Result<Job, ControllerError> {
    let t = cj
        .spec
        .as_ref()
        .map(|s| s.job_template.clone())
        .unwrap_or_default();
    let tm = t.metadata.unwrap_or_default();
    let stamp = match &c.tz {
        Some(tz) => scheduled.with_timezone(tz).to_rfc3339(),
        None => scheduled.with_timezone(&chrono::Local).to_rfc3339(),
    };
    let mut annotations = tm.annotations.unwrap_or_default();
    annotations.insert(SCHEDULED_ANNOTATION.into(), stamp);
    let job = Job {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(key.namespace.clone()),
            labels: tm.labels,
            annotations: Some(annotations),
            owner_references: Some(vec![common::controller_ref(
                "batch/v1",
                "CronJob",
                &cj.metadata,
            )]),
            ..Default::default()
        },
        spec: t.spec,
        status: None,
    };
    match store.create(Object::Job(Box::new(job))).await? {
        Object::Job(j) => Ok(*j),
        other => Err(ControllerError::Invalid {
            object: key.to_string(),
            reason: format!("the store returned a {} for a created Job", other.kind()),
        }),
    }
}

async fn write_status<S: Store + ?Sized>(
    store: &S,
    key: &ObjectKey,
    status: CronJobStatus,
) -> Result<(), ControllerError> {
    crate::common::store_status(store, key, status, |o| match o {
        Object::CronJob(c) => Some(&mut c.status),
        _ => None,
    })
    .await
}
