//! batch/v1 CronJob validated as the API server validates it: the schedule (parsed by
//! [`crate::cron`]), timeZone (an IANA name, not `Local`), concurrencyPolicy,
//! startingDeadlineSeconds, the history limits, and the jobTemplate as a Job's spec.

use k8s_openapi::api::batch::v1::{CronJob, Job};

use super::{check_job, invalid, non_negative};
use crate::ManifestError;

/// The IANA time zone `name` (`spec.timeZone`).
pub fn time_zone(name: &str) -> Result<chrono_tz::Tz, String> {
    if name.eq_ignore_ascii_case("local") {
        return Err(
            "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones"
                .into(),
        );
    }
    name.parse::<chrono_tz::Tz>()
        .map_err(|_| format!("unknown time zone {name:?} (an IANA name such as Europe/Berlin)"))
}

pub(crate) fn check_cron_job(
    source: &str,
    label: &str,
    c: &mut CronJob,
) -> Result<(), ManifestError> {
    let Some(spec) = &mut c.spec else {
        return Err(invalid(source, label, "spec", "is required"));
    };
    crate::cron::parse(&spec.schedule).map_err(|e| {
        invalid(
            source,
            label,
            "spec.schedule",
            format!("{:?}: {e}", spec.schedule),
        )
    })?;
    if let Some(tz) = &spec.time_zone {
        time_zone(tz).map_err(|e| invalid(source, label, "spec.timeZone", e))?;
    }
    match spec.concurrency_policy.as_deref().unwrap_or("Allow") {
        "Allow" | "Forbid" | "Replace" => {}
        other => {
            return Err(invalid(
                source,
                label,
                "spec.concurrencyPolicy",
                format!(
                "Unsupported value {other:?}: supported values: \"Allow\", \"Forbid\", \"Replace\""
            ),
            ))
        }
    }
    if let Some(n) = spec.starting_deadline_seconds {
        if n < 0 {
            return Err(invalid(
                source,
                label,
                "spec.startingDeadlineSeconds",
                format!("{n}: must be greater than or equal to 0"),
            ));
        }
    }
    non_negative(
        source,
        label,
        "spec.successfulJobsHistoryLimit",
        spec.successful_jobs_history_limit,
    )?;
    non_negative(
        source,
        label,
        "spec.failedJobsHistoryLimit",
        spec.failed_jobs_history_limit,
    )?;
    let Some(jspec) = &spec.job_template.spec else {
        return Err(invalid(
            source,
            label,
            "spec.jobTemplate.spec",
            "is required",
        ));
    };
    let mut job = Job {
        metadata: spec.job_template.metadata.clone().unwrap_or_default(),
        spec: Some(jspec.clone()),
        status: None,
    };
    check_job(source, label, &mut job).map_err(|e| match e {
        ManifestError::Invalid {
            source_name,
            object,
            path,
            reason,
        } => ManifestError::Invalid {
            source_name,
            object,
            path: format!("spec.jobTemplate.{path}"),
            reason,
        },
        e => e,
    })?;
    spec.job_template.spec = job.spec;
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::{parse, Object};

    fn cj(schedule: &str, extra: &str) -> String {
        format!(
            r#"
apiVersion: batch/v1
kind: CronJob
metadata: {{name: hello}}
spec:
  schedule: "{schedule}"
{extra}
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers: [{{name: c, image: busybox, command: [date]}}]
"#
        )
    }

    fn err(yaml: &str) -> String {
        parse("f", yaml).unwrap_err().to_string()
    }

    #[test]
    fn the_docs_example_parses() {
        let o = parse("f", &cj("* * * * *", "")).unwrap().remove(0);
        assert!(matches!(o, Object::CronJob(_)));
        assert_eq!(o.api_version(), "batch/v1");
    }

    #[test]
    fn bad_fields_are_named() {
        let e = err(&cj("* * * *", ""));
        assert!(
            e.contains("spec.schedule") && e.contains("exactly 5 fields"),
            "{e}"
        );
        let e = err(&cj("TZ=UTC * * * * *", ""));
        assert!(e.contains("use timeZone field"), "{e}");
        let e = err(&cj("@daily", "  timeZone: Mars/Olympus"));
        assert!(
            e.contains("spec.timeZone") && e.contains("Mars/Olympus"),
            "{e}"
        );
        let e = err(&cj("@daily", "  timeZone: Local"));
        assert!(e.contains("explicit time zone"), "{e}");
        parse("f", &cj("@daily", "  timeZone: Europe/Berlin")).unwrap();
        let e = err(&cj("@daily", "  concurrencyPolicy: Sometimes"));
        assert!(e.contains("spec.concurrencyPolicy"), "{e}");
        let e = err(&cj("@daily", "  startingDeadlineSeconds: -1"));
        assert!(e.contains("spec.startingDeadlineSeconds"), "{e}");
        let e = err(&cj("@daily", "  successfulJobsHistoryLimit: -1"));
        assert!(e.contains("spec.successfulJobsHistoryLimit"), "{e}");
        let e = err(&cj("@daily", "").replace("restartPolicy: OnFailure", "restartPolicy: Always"));
        assert!(
            e.contains("spec.jobTemplate.spec.template.spec.restartPolicy"),
            "{e}"
        );
    }
}
