//! Fields of Kubernetes JSON as kubectl prints them in table columns and `describe` lines,
//! shared by the client verbs: numbers, `k=v` maps, optional values, and kubectl's short
//! durations (`45s`, `12m`, `3h`, `2d`).

use serde_json::Value;

/// The integer at `ptr`, 0 when absent.
pub fn num(v: &Value, ptr: &str) -> i64 {
    v.pointer(ptr).and_then(Value::as_i64).unwrap_or(0)
}

/// `k=v,...` of a JSON map, or `<none>`.
pub fn pairs(v: Option<&Value>) -> String {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(",")
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "<none>".into())
}

/// The value at `ptr` as text (strings unquoted), `<unset>` when absent.
pub fn opt(v: &Value, ptr: &str) -> String {
    v.pointer(ptr)
        .map(|x| {
            x.as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| x.to_string())
        })
        .unwrap_or_else(|| "<unset>".into())
}

/// kubectl's short form of a number of seconds.
pub fn short_duration(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

/// The time since an RFC 3339 timestamp, short; None without a valid one.
pub fn since(ts: Option<&str>) -> Option<String> {
    let t = chrono::DateTime::parse_from_rfc3339(ts?).ok()?;
    Some(short_duration(
        (chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_seconds(),
    ))
}

/// An object's AGE column (`<unknown>` without a creation time).
pub fn age(v: &Value) -> String {
    since(
        v.pointer("/metadata/creationTimestamp")
            .and_then(Value::as_str),
    )
    .unwrap_or_else(|| "<unknown>".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_durations_as_kubectl() {
        assert_eq!(short_duration(-3), "0s");
        assert_eq!(short_duration(119), "119s");
        assert_eq!(short_duration(120), "2m");
        assert_eq!(short_duration(7199), "119m");
        assert_eq!(short_duration(7200), "2h");
        assert_eq!(short_duration(172_800), "2d");
    }

    #[test]
    fn maps_and_optional_values() {
        let v = serde_json::json!({"m": {"a": "1", "b": "2"}, "e": {}, "n": 3, "s": "x"});
        assert_eq!(pairs(v.get("m")), "a=1,b=2");
        assert_eq!(pairs(v.get("e")), "<none>");
        assert_eq!(pairs(None), "<none>");
        assert_eq!(opt(&v, "/n"), "3");
        assert_eq!(opt(&v, "/s"), "x");
        assert_eq!(opt(&v, "/missing"), "<unset>");
        assert_eq!(num(&v, "/n"), 3);
        assert_eq!(num(&v, "/s"), 0);
        assert_eq!(since(Some("not a time")), None);
        assert_eq!(age(&v), "<unknown>");
    }
}
