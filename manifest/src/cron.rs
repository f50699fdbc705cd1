//! CronJob schedules as Kubernetes reads them (the `robfig/cron` standard parser): five fields
//! `minute hour day-of-month month day-of-week` (numbers, `*`, `?`, ranges `a-b`, steps `/n`,
//! lists `,`, month and weekday names), the descriptors `@yearly`/`@annually`, `@monthly`,
//! `@weekly`, `@daily`/`@midnight`, `@hourly`, and `@every <duration>`. When both day fields
//! are restricted a day matches either; when one is `*` (or `?`) both must match. Next
//! activation times are computed in a time zone (`spec.timeZone`): a local time that does not
//! exist that day (a DST gap) does not fire, one that occurs twice fires at each.

use std::time::Duration;

use chrono::{DateTime, Datelike, TimeZone, Timelike, Utc};

/// A parsed schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    Fields(Fields),
    /// `@every <duration>`: a fixed period (whole seconds, at least one).
    Every(Duration),
}

/// The five fields as bit sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fields {
    minute: u64,
    hour: u64,
    dom: u64,
    month: u64,
    dow: u64,
    dom_star: bool,
    dow_star: bool,
}

const MONTHS: &[&str] = &[
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAYS: &[&str] = &["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

struct Bounds {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
    /// The value of the first name (1 for months, 0 for weekdays).
    names_from: u32,
}

const MINUTE: Bounds = Bounds {
    name: "minute",
    min: 0,
    max: 59,
    names: &[],
    names_from: 0,
};
const HOUR: Bounds = Bounds {
    name: "hour",
    min: 0,
    max: 23,
    names: &[],
    names_from: 0,
};
const DOM: Bounds = Bounds {
    name: "day of month",
    min: 1,
    max: 31,
    names: &[],
    names_from: 0,
};
const MONTH: Bounds = Bounds {
    name: "month",
    min: 1,
    max: 12,
    names: MONTHS,
    names_from: 1,
};
const DOW: Bounds = Bounds {
    name: "day of week",
    min: 0,
    max: 6,
    names: DAYS,
    names_from: 0,
};

fn value(s: &str, b: &Bounds) -> Result<u32, String> {
    let lower = s.to_ascii_lowercase();
    if let Some(i) = b.names.iter().position(|n| *n == lower) {
        return Ok(i as u32 + b.names_from);
    }
    s.parse::<u32>().map_err(|_| {
        format!(
            "{} {s:?}: not a number{}",
            b.name,
            if b.names.is_empty() { "" } else { " or a name" }
        )
    })
}

/// One comma-separated part of a field: its bits, and whether it is a bare `*`/`?`.
fn range(expr: &str, b: &Bounds) -> Result<(u64, bool), String> {
    let (r, step) = match expr.split_once('/') {
        Some((r, s)) => {
            let step: u32 = s.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                format!("{} {expr:?}: the step must be a positive number", b.name)
            })?;
            (r, Some(step))
        }
        None => (expr, None),
    };
    let (start, end, star) = if r == "*" || r == "?" {
        (b.min, b.max, true)
    } else if let Some((lo, hi)) = r.split_once('-') {
        (value(lo, b)?, value(hi, b)?, false)
    } else {
        let v = value(r, b)?;
        // `a/n` means `a-max/n`.
        (v, if step.is_some() { b.max } else { v }, false)
    };
    if start < b.min {
        return Err(format!(
            "{} {expr:?}: {start} is below the minimum {}",
            b.name, b.min
        ));
    }
    if end > b.max {
        return Err(format!(
            "{} {expr:?}: {end} is beyond the maximum {}",
            b.name, b.max
        ));
    }
    if start > end {
        return Err(format!(
            "{} {expr:?}: the range starts after it ends",
            b.name
        ));
    }
    let step = step.unwrap_or(1);
    let mut bits = 0u64;
    let mut v = start;
    while v <= end {
        bits |= 1 << v;
        v += step;
    }
    Ok((bits, star && step == 1))
}

fn field(f: &str, b: &Bounds) -> Result<(u64, bool), String> {
    let mut bits = 0;
    let mut star = false;
    for part in f.split(',') {
        let (x, s) = range(part, b)?;
        bits |= x;
        star |= s;
    }
    Ok((bits, star))
}

/// Go's duration syntax for `@every`: `1h30m`, `90s`, `1.5h` (units h, m, s, ms, us, ns).
fn go_duration(s: &str) -> Result<Duration, String> {
    let err = || format!("@every {s:?}: not a duration (e.g. 1h30m, 90s)");
    let mut total = 0f64;
    let mut rest = s;
    if rest.is_empty() {
        return Err(err());
    }
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(err)?;
        let num: f64 = rest[..n].parse().map_err(|_| err())?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..u] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return Err(err()),
        };
        total += num * unit;
        rest = &rest[u..];
    }
    // Whole seconds, at least one (as robfig/cron's `Every`).
    Ok(Duration::from_secs((total.floor() as u64).max(1)))
}

/// Parse a schedule as Kubernetes accepts it in `spec.schedule`.
pub fn parse(spec: &str) -> Result<Schedule, String> {
    let s = spec.trim();
    if s.starts_with("TZ=") || s.starts_with("CRON_TZ=") {
        return Err("cannot use TZ or CRON_TZ in schedule, use timeZone field instead".into());
    }
    if let Some(d) = s.strip_prefix("@every ") {
        return go_duration(d.trim()).map(Schedule::Every);
    }
    let expanded = match s {
        "@yearly" | "@annually" => "0 0 1 1 *",
        "@monthly" => "0 0 1 * *",
        "@weekly" => "0 0 * * 0",
        "@daily" | "@midnight" => "0 0 * * *",
        "@hourly" => "0 * * * *",
        d if d.starts_with('@') => return Err(format!("unrecognized descriptor {d:?}")),
        other => other,
    };
    let f: Vec<&str> = expanded.split_whitespace().collect();
    if f.len() != 5 {
        return Err(format!(
            "expected exactly 5 fields (minute hour day-of-month month day-of-week), found {}: {spec:?}",
            f.len()
        ));
    }
    let (minute, _) = field(f[0], &MINUTE)?;
    let (hour, _) = field(f[1], &HOUR)?;
    let (dom, dom_star) = field(f[2], &DOM)?;
    let (month, _) = field(f[3], &MONTH)?;
    let (dow, dow_star) = field(f[4], &DOW)?;
    Ok(Schedule::Fields(Fields {
        minute,
        hour,
        dom,
        month,
        dow,
        dom_star,
        dow_star,
    }))
}

impl Fields {
    fn day_matches<T: Datelike>(&self, t: &T) -> bool {
        let dom = self.dom & (1 << t.day()) != 0;
        let dow = self.dow & (1 << t.weekday().num_days_from_sunday()) != 0;
        if self.dom_star || self.dow_star {
            dom && dow
        } else {
            dom || dow
        }
    }
}

/// Search bound: beyond it there is no activation (`0 0 30 2 *`).
const MAX_STEPS: usize = 200_000;

impl Schedule {
    /// The first activation strictly after `t`, at a whole minute (`@every`: `t` plus the
    /// period, to the second). None when the schedule never fires (`0 0 31 2 *`).
    pub fn next_after<Z: TimeZone>(&self, t: DateTime<Utc>, tz: &Z) -> Option<DateTime<Utc>> {
        let f = match self {
            Schedule::Every(d) => {
                let t = t.with_nanosecond(0)?;
                return t.checked_add_signed(chrono::Duration::from_std(*d).ok()?);
            }
            Schedule::Fields(f) => f,
        };
        let mut u = t.with_nanosecond(0)?.with_second(0)? + chrono::Duration::minutes(1);
        for _ in 0..MAX_STEPS {
            let l = u.with_timezone(tz);
            let into_day = (l.hour() * 60 + l.minute()) as i64;
            let skip = if f.month & (1 << l.month()) == 0 || !f.day_matches(&l) {
                // To the next local day; an hour short, in case the day is 23 hours long.
                let left = 24 * 60 - into_day;
                if left > 60 {
                    left - 60
                } else {
                    left
                }
            } else if f.hour & (1 << l.hour()) == 0 {
                60 - l.minute() as i64
            } else if f.minute & (1 << l.minute()) == 0 {
                1
            } else {
                return Some(u);
            };
            u += chrono::Duration::minutes(skip);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::Tz;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn next(spec: &str, from: &str) -> String {
        parse(spec)
            .unwrap()
            .next_after(at(from), &Utc)
            .unwrap()
            .to_rfc3339()
    }

    #[test]
    fn fields_ranges_steps_lists_and_names() {
        assert_eq!(
            next("* * * * *", "2026-01-01T00:00:00Z"),
            "2026-01-01T00:01:00+00:00"
        );
        assert_eq!(
            next("* * * * *", "2026-01-01T00:00:59Z"),
            "2026-01-01T00:01:00+00:00"
        );
        assert_eq!(
            next("*/15 * * * *", "2026-01-01T00:16:00Z"),
            "2026-01-01T00:30:00+00:00"
        );
        assert_eq!(
            next("5/20 * * * *", "2026-01-01T00:06:00Z"),
            "2026-01-01T00:25:00+00:00"
        );
        assert_eq!(
            next("0 9-17/4 * * *", "2026-01-01T10:00:00Z"),
            "2026-01-01T13:00:00+00:00"
        );
        assert_eq!(
            next("0,30 * * * *", "2026-01-01T00:00:00Z"),
            "2026-01-01T00:30:00+00:00"
        );
        assert_eq!(
            next("0 0 1 JAN,jul *", "2026-02-01T00:00:00Z"),
            "2026-07-01T00:00:00+00:00"
        );
        // 2026-01-01 is a Thursday.
        assert_eq!(
            next("0 0 * * MON-FRI", "2026-01-02T00:00:00Z"),
            "2026-01-05T00:00:00+00:00"
        );
        assert_eq!(
            next("0 0 * * 0", "2026-01-01T00:00:00Z"),
            "2026-01-04T00:00:00+00:00"
        );
        assert_eq!(
            next("0 0 ? * sat", "2026-01-01T00:00:00Z"),
            "2026-01-03T00:00:00+00:00"
        );
        // Leap day.
        assert_eq!(
            next("0 0 29 2 *", "2026-01-01T00:00:00Z"),
            "2028-02-29T00:00:00+00:00"
        );
        assert!(parse("0 0 30 2 *")
            .unwrap()
            .next_after(at("2026-01-01T00:00:00Z"), &Utc)
            .is_none());
    }

    #[test]
    fn day_of_month_and_week_are_ored_when_both_restricted() {
        // The 13th, or any Friday.
        assert_eq!(
            next("0 0 13 * 5", "2026-01-01T00:00:00Z"),
            "2026-01-02T00:00:00+00:00"
        );
        assert_eq!(
            next("0 0 13 * 5", "2026-01-10T00:00:00Z"),
            "2026-01-13T00:00:00+00:00"
        );
        // A star on one side: both must hold (Friday the 13th only... with *: every 13th).
        assert_eq!(
            next("0 0 13 * *", "2026-01-01T00:00:00Z"),
            "2026-01-13T00:00:00+00:00"
        );
        assert_eq!(
            next("0 0 * * 5", "2026-01-03T00:00:00Z"),
            "2026-01-09T00:00:00+00:00"
        );
        // `*/2` on day of month is not a star: ORed with Friday.
        assert_eq!(
            next("0 0 */2 * 5", "2026-01-01T00:00:00Z"),
            "2026-01-02T00:00:00+00:00"
        );
    }

    #[test]
    fn descriptors() {
        let from = "2026-03-15T10:20:00Z";
        assert_eq!(next("@yearly", from), "2027-01-01T00:00:00+00:00");
        assert_eq!(next("@annually", from), "2027-01-01T00:00:00+00:00");
        assert_eq!(next("@monthly", from), "2026-04-01T00:00:00+00:00");
        // 2026-03-15 is a Sunday: the next Sunday midnight.
        assert_eq!(next("@weekly", from), "2026-03-22T00:00:00+00:00");
        assert_eq!(next("@daily", from), "2026-03-16T00:00:00+00:00");
        assert_eq!(next("@midnight", from), "2026-03-16T00:00:00+00:00");
        assert_eq!(next("@hourly", from), "2026-03-15T11:00:00+00:00");
        assert_eq!(
            next("@every 1h30m", "2026-03-15T10:20:30.5Z"),
            "2026-03-15T11:50:30+00:00"
        );
        assert_eq!(
            parse("@every 90s").unwrap(),
            Schedule::Every(Duration::from_secs(90))
        );
    }

    #[test]
    fn errors_name_the_field() {
        let e = |s: &str| parse(s).unwrap_err();
        assert!(e("* * * *").contains("exactly 5 fields"));
        assert!(e("0 0 0 0 0 0").contains("exactly 5 fields"));
        assert!(e("60 * * * *").contains("minute") && e("60 * * * *").contains("maximum 59"));
        assert!(e("* 24 * * *").contains("hour"));
        assert!(e("* * 0 * *").contains("day of month") && e("* * 0 * *").contains("minimum 1"));
        assert!(e("* * * 13 *").contains("month"));
        assert!(e("* * * * 7").contains("day of week"));
        assert!(e("* * * foo *").contains("not a number or a name"));
        assert!(e("*/0 * * * *").contains("positive"));
        assert!(e("5-1 * * * *").contains("starts after it ends"));
        assert!(e("@fortnightly").contains("unrecognized descriptor"));
        assert!(e("@every soon").contains("not a duration"));
        assert!(e("TZ=UTC 0 * * * *").contains("use timeZone field"));
        assert!(e("CRON_TZ=UTC 0 * * * *").contains("use timeZone field"));
    }

    #[test]
    fn time_zones_and_daylight_saving() {
        let ny: Tz = "America/New_York".parse().unwrap();
        // 09:00 in New York in January is 14:00 UTC, in July 13:00 UTC.
        let s = parse("0 9 * * *").unwrap();
        let n = s.next_after(at("2026-01-10T00:00:00Z"), &ny).unwrap();
        assert_eq!(n.to_rfc3339(), "2026-01-10T14:00:00+00:00");
        let n = s.next_after(at("2026-07-10T00:00:00Z"), &ny).unwrap();
        assert_eq!(n.to_rfc3339(), "2026-07-10T13:00:00+00:00");
        // 2026-03-08 02:30 does not exist in New York: the next 02:30 is the day after.
        let s = parse("30 2 * * *").unwrap();
        let n = s.next_after(at("2026-03-08T05:00:00Z"), &ny).unwrap();
        assert_eq!(n.to_rfc3339(), "2026-03-09T06:30:00+00:00");
        // Half-hour offsets: 00:00 in Kolkata is 18:30 UTC the day before.
        let kol: Tz = "Asia/Kolkata".parse().unwrap();
        let n = parse("@daily")
            .unwrap()
            .next_after(at("2026-01-10T00:00:00Z"), &kol)
            .unwrap();
        assert_eq!(n.to_rfc3339(), "2026-01-10T18:30:00+00:00");
    }
}
