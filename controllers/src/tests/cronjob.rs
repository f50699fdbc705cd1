use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::batch::v1::{JobCondition, JobStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kinglet_kubelet::harness::Action;
use kinglet_manifest::{Object, ObjectKey};

use super::apply;
use crate::common::controller_of;
use crate::cronjob::{job_name, most_recent, sync, CjState, Cron, SCHEDULED_ANNOTATION};
use crate::fake::FakeStore;

/// The fake clock's start: 2027-01-15T08:00:00Z, on the hour.
const T0: i64 = 1_800_000_000;

fn cj_yaml(schedule: &str, extra: &str) -> String {
    format!(
        r#"
apiVersion: batch/v1
kind: CronJob
metadata: {{name: hello}}
spec:
  schedule: "{schedule}"
  timeZone: Etc/UTC
{extra}
  jobTemplate:
    metadata: {{labels: {{team: a}}}}
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers: [{{name: c, image: busybox, command: [date]}}]
"#
    )
}

fn key() -> ObjectKey {
    ObjectKey {
        kind: "CronJob",
        namespace: "default".into(),
        name: "hello".into(),
    }
}

async fn pass(store: &FakeStore, st: &mut CjState) -> Action {
    let Some(Object::CronJob(cj)) = store.obj("CronJob", "hello") else {
        panic!("no cronjob")
    };
    sync(store, &key(), &cj, st).await.unwrap()
}

fn jobs(store: &FakeStore) -> Vec<String> {
    store.names("Job")
}

fn name_at(secs: i64) -> String {
    format!("hello-{}", secs / 60)
}

fn status(store: &FakeStore) -> k8s_openapi::api::batch::v1::CronJobStatus {
    let Some(Object::CronJob(cj)) = store.obj("CronJob", "hello") else {
        panic!()
    };
    cj.status.unwrap_or_default()
}

fn finish(store: &FakeStore, job: &str, kind: &str) {
    let now = Time(Timestamp::from_second(*store.clock.lock().unwrap()).unwrap());
    let k = ObjectKey {
        kind: "Job",
        namespace: "default".into(),
        name: job.into(),
    };
    let mut objs = store.objects.lock().unwrap();
    let Some(Object::Job(j)) = objs.get_mut(&k) else {
        panic!("no job {job}")
    };
    j.status = Some(JobStatus {
        conditions: Some(vec![JobCondition {
            type_: kind.into(),
            status: "True".into(),
            ..Default::default()
        }]),
        start_time: j.metadata.creation_timestamp.clone(),
        completion_time: (kind == "Complete").then_some(now),
        ..Default::default()
    });
}

fn events(store: &FakeStore, reason: &str) -> usize {
    store
        .events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.2 == reason)
        .count()
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

#[test]
fn most_recent_counts_missed_times_and_finds_the_latest() {
    let c = |s: &str| Cron {
        schedule: kinglet_manifest::cron::parse(s).unwrap(),
        tz: Some(chrono_tz::UTC),
    };
    let hourly = c("0 * * * *");
    let from = at("2026-01-05T00:30:00Z");
    assert_eq!(
        most_recent(&hourly, from, at("2026-01-05T00:59:00Z")).unwrap(),
        (None, 0)
    );
    assert_eq!(
        most_recent(&hourly, from, at("2026-01-05T01:10:00Z")).unwrap(),
        (Some(at("2026-01-05T01:00:00Z")), 1)
    );
    assert_eq!(
        most_recent(&hourly, from, at("2026-01-05T05:10:00Z")).unwrap(),
        (Some(at("2026-01-05T05:00:00Z")), 5)
    );
    // Irregular: the first interval (1 h) says 24 missed, but the day's last time was 01:00.
    let (latest, missed) = most_recent(
        &c("0 0,1 * * *"),
        at("2026-01-04T23:30:00Z"),
        at("2026-01-05T23:30:00Z"),
    )
    .unwrap();
    assert_eq!((latest, missed), (Some(at("2026-01-05T01:00:00Z")), 24));
    // Weekdays at 06:30, 10:30, 14:30: from Friday afternoon to Monday noon.
    let irregular = c("30 6-16/4 * * 1-5");
    let (latest, _) = most_recent(
        &irregular,
        at("2026-01-02T15:00:00Z"),
        at("2026-01-05T12:00:00Z"),
    )
    .unwrap();
    assert_eq!(latest, Some(at("2026-01-05T10:30:00Z")));
    assert_eq!(
        job_name("hello", at("2026-01-05T10:30:00Z")),
        "hello-29460150"
    );
}

#[tokio::test]
async fn a_job_at_each_scheduled_time_named_by_its_minute() {
    let store = FakeStore::new();
    apply(&store, &cj_yaml("*/5 * * * *", ""));
    let mut st = CjState::default();
    let a = pass(&store, &mut st).await;
    assert!(jobs(&store).is_empty());
    assert!(
        matches!(a, Action::Requeue(d) if d > Duration::from_secs(299) && d < Duration::from_secs(301)),
        "{a:?}"
    );
    store.advance(300);
    pass(&store, &mut st).await;
    assert_eq!(jobs(&store), vec![name_at(T0 + 300)]);
    let Some(Object::Job(j)) = store.obj("Job", &name_at(T0 + 300)) else {
        panic!()
    };
    assert_eq!(
        j.metadata.annotations.as_ref().unwrap()[SCHEDULED_ANNOTATION],
        "2027-01-15T08:05:00+00:00"
    );
    assert_eq!(j.metadata.labels.as_ref().unwrap()["team"], "a");
    assert_eq!(controller_of(&j.metadata).unwrap().kind, "CronJob");
    let s = status(&store);
    assert_eq!(s.active.as_ref().map(Vec::len), Some(1));
    assert_eq!(
        s.last_schedule_time.unwrap().0,
        Timestamp::from_second(T0 + 300).unwrap()
    );
    // Later in the same minute: nothing more.
    store.advance(20);
    pass(&store, &mut st).await;
    assert_eq!(jobs(&store).len(), 1);
    assert_eq!(events(&store, "SuccessfulCreate"), 1);
    // Finished: out of active, lastSuccessfulTime set.
    finish(&store, &name_at(T0 + 300), "Complete");
    pass(&store, &mut st).await;
    let s = status(&store);
    assert!(s.active.is_none());
    assert!(s.last_successful_time.is_some());
}

#[tokio::test]
async fn concurrency_policies() {
    for (policy, want) in [("Allow", 2), ("Forbid", 1), ("Replace", 1)] {
        let store = FakeStore::new();
        apply(
            &store,
            &cj_yaml("* * * * *", &format!("  concurrencyPolicy: {policy}")),
        );
        let mut st = CjState::default();
        store.advance(60);
        pass(&store, &mut st).await;
        store.advance(60);
        pass(&store, &mut st).await;
        let names = jobs(&store);
        assert_eq!(names.len(), want, "{policy}: {names:?}");
        match policy {
            "Forbid" => {
                assert_eq!(names, vec![name_at(T0 + 60)]);
                assert_eq!(events(&store, "JobAlreadyActive"), 1);
                // Once the running one finishes, the skipped time starts (late).
                finish(&store, &name_at(T0 + 60), "Complete");
                pass(&store, &mut st).await;
                assert!(jobs(&store).contains(&name_at(T0 + 120)));
            }
            "Replace" => assert_eq!(names, vec![name_at(T0 + 120)]),
            _ => {}
        }
    }
}

#[tokio::test]
async fn after_downtime_one_catch_up_run_unless_past_the_deadline() {
    // Down for 5 h 10 min: one job, for the most recent hour.
    let store = FakeStore::new();
    apply(&store, &cj_yaml("0 * * * *", ""));
    let mut st = CjState::default();
    store.advance(5 * 3600 + 600);
    pass(&store, &mut st).await;
    assert_eq!(jobs(&store), vec![name_at(T0 + 5 * 3600)]);
    assert_eq!(events(&store, "TooManyMissedTimes"), 0);

    // With startingDeadlineSeconds 300 the last hour is too old: nothing until the next.
    let store = FakeStore::new();
    apply(
        &store,
        &cj_yaml("0 * * * *", "  startingDeadlineSeconds: 300"),
    );
    let mut st = CjState::default();
    store.advance(5 * 3600 + 600);
    let a = pass(&store, &mut st).await;
    assert!(jobs(&store).is_empty());
    assert!(
        matches!(a, Action::Requeue(d) if d.as_secs() == 3000),
        "{a:?}"
    );
    store.advance(3000);
    pass(&store, &mut st).await;
    assert_eq!(jobs(&store), vec![name_at(T0 + 6 * 3600)]);

    // Over 100 missed: the warning, once, and still one run.
    let store = FakeStore::new();
    apply(&store, &cj_yaml("* * * * *", ""));
    let mut st = CjState::default();
    store.advance(200 * 60 + 30);
    pass(&store, &mut st).await;
    pass(&store, &mut st).await;
    assert_eq!(jobs(&store), vec![name_at(T0 + 200 * 60)]);
    assert_eq!(events(&store, "TooManyMissedTimes"), 1);
    let msg = store.events.lock().unwrap()[0].3.clone();
    assert!(
        msg.starts_with("too many missed start times: 200."),
        "{msg}"
    );
}

#[tokio::test]
async fn suspend_starts_nothing() {
    let store = FakeStore::new();
    apply(&store, &cj_yaml("* * * * *", "  suspend: true"));
    let mut st = CjState::default();
    store.advance(120);
    assert!(matches!(pass(&store, &mut st).await, Action::AwaitChange));
    assert!(jobs(&store).is_empty());
    apply(&store, &cj_yaml("* * * * *", "  suspend: false"));
    pass(&store, &mut st).await;
    assert_eq!(
        jobs(&store),
        vec![name_at(T0 + 120)],
        "one catch-up run on resume"
    );
}

#[tokio::test]
async fn history_limits_keep_the_newest_finished_jobs() {
    let store = FakeStore::new();
    apply(&store, &cj_yaml("* * * * *", ""));
    let mut st = CjState::default();
    for i in 1..=7 {
        store.advance(60);
        pass(&store, &mut st).await;
        let kind = if i <= 2 { "Failed" } else { "Complete" };
        finish(&store, &name_at(T0 + i * 60), kind);
    }
    pass(&store, &mut st).await;
    let names = jobs(&store);
    let want: Vec<String> = [2, 5, 6, 7].iter().map(|i| name_at(T0 + i * 60)).collect();
    assert_eq!(names, want, "3 successful and 1 failed kept");

    let store = FakeStore::new();
    apply(
        &store,
        &cj_yaml(
            "* * * * *",
            "  successfulJobsHistoryLimit: 0\n  failedJobsHistoryLimit: 0",
        ),
    );
    let mut st = CjState::default();
    store.advance(60);
    pass(&store, &mut st).await;
    finish(&store, &name_at(T0 + 60), "Complete");
    pass(&store, &mut st).await;
    assert!(jobs(&store).is_empty());
}

#[tokio::test]
async fn time_zone_sets_the_wall_clock() {
    let store = FakeStore::new();
    let yaml = cj_yaml("0 9 * * *", "").replace("Etc/UTC", "America/New_York");
    apply(&store, &yaml);
    let mut st = CjState::default();
    // 08:00 UTC is 03:00 in New York: 09:00 there is in 6 hours.
    let a = pass(&store, &mut st).await;
    assert!(
        matches!(a, Action::Requeue(d) if d.as_secs() == 6 * 3600),
        "{a:?}"
    );
    store.advance(6 * 3600);
    pass(&store, &mut st).await;
    let name = name_at(T0 + 6 * 3600);
    assert_eq!(jobs(&store), vec![name.clone()]);
    let Some(Object::Job(j)) = store.obj("Job", &name) else {
        panic!()
    };
    assert_eq!(
        j.metadata.annotations.unwrap()[SCHEDULED_ANNOTATION],
        "2027-01-15T09:00:00-05:00"
    );
}
