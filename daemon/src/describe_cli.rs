//! `kinglet describe configmap|secret NAME` in kubectl's layout. A Secret's values are never
//! printed: only each key's size in bytes, as kubectl shows them.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::anyhow;
use base64::Engine as _;
use kinglet_proto::admin;
use kinglet_proto::admin::objects_client::ObjectsClient;
use serde_json::Value;
use tonic::transport::Channel;

/// Whether `kind` names ConfigMaps or Secrets.
pub fn handles(kind: &str) -> bool {
    matches!(
        kind,
        "cm" | "configmap" | "configmaps" | "secret" | "secrets"
    )
}

pub async fn describe(ch: Channel, kind: &str, name: &str, ns: &str) -> anyhow::Result<()> {
    let secret = kind.starts_with("secret");
    let r = ObjectsClient::new(ch)
        .get(admin::GetRequest {
            kind: kind.into(),
            namespace: ns.into(),
            all_namespaces: false,
            name: name.into(),
            label_selector: String::new(),
        })
        .await
        .map_err(|s| match s.code() {
            tonic::Code::NotFound => crate::podref::NotFound {
                resource: if secret { "secrets" } else { "configmaps" },
                name: name.to_owned(),
            }
            .into(),
            _ => anyhow!("describe {kind} {name}: {}", s.message()),
        })?
        .into_inner();
    let raw = r
        .objects
        .first()
        .ok_or_else(|| anyhow!("{kind} {ns}/{name} not found"))?;
    let v: Value = serde_json::from_str(raw)?;
    print!(
        "{}",
        if secret {
            secret_text(&v)
        } else {
            config_map_text(&v)
        }
    );
    Ok(())
}

fn map_line(v: &Value, ptr: &str) -> String {
    let m: BTreeMap<String, String> = v
        .pointer(ptr)
        .and_then(Value::as_object)
        .map(|o| {
            o.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect()
        })
        .unwrap_or_default();
    if m.is_empty() {
        return "<none>".into();
    }
    m.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("\n              ")
}

fn header(v: &Value, out: &mut String) {
    let s = |p: &str| {
        v.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let _ = writeln!(out, "Name:         {}", s("/metadata/name"));
    let _ = writeln!(out, "Namespace:    {}", s("/metadata/namespace"));
    let _ = writeln!(out, "Labels:       {}", map_line(v, "/metadata/labels"));
    let _ = writeln!(
        out,
        "Annotations:  {}",
        map_line(v, "/metadata/annotations")
    );
}

fn entries(v: &Value, key: &str) -> BTreeMap<String, String> {
    v.get(key)
        .and_then(Value::as_object)
        .map(|o| {
            o.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// kubectl's ConfigMap description: each key, a `----` rule, its value; binary keys by size.
pub fn config_map_text(v: &Value) -> String {
    let mut out = String::new();
    header(v, &mut out);
    out.push_str("\nData\n====\n");
    for (k, val) in entries(v, "data") {
        let _ = write!(out, "{k}:\n----\n{val}\n\n");
    }
    out.push_str("\nBinaryData\n====\n");
    for (k, val) in entries(v, "binaryData") {
        let n = base64::engine::general_purpose::STANDARD
            .decode(val.as_bytes())
            .map_or(0, |b| b.len());
        let _ = writeln!(out, "{k}: {n} bytes");
    }
    out.push_str("\nEvents:  <none>\n");
    out
}

/// kubectl's Secret description: the type, then each key with its decoded size only.
pub fn secret_text(v: &Value) -> String {
    let mut out = String::new();
    header(v, &mut out);
    let ty = v.get("type").and_then(Value::as_str).unwrap_or("Opaque");
    let _ = write!(out, "\nType:  {ty}\n\nData\n====\n");
    let data = entries(v, "data");
    let width = data.keys().map(|k| k.len() + 1).max().unwrap_or(0);
    for (k, val) in data {
        let n = base64::engine::general_purpose::STANDARD
            .decode(val.as_bytes())
            .map_or(val.len(), |b| b.len());
        let _ = writeln!(out, "{:<width$}  {n} bytes", format!("{k}:"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_secret_shows_sizes_never_values() {
        let s = json!({"kind": "Secret", "type": "Opaque",
            "metadata": {"name": "creds", "namespace": "default", "labels": {"app": "web"}},
            "data": {"password": "aHVudGVyMg==", "user": "YWRtaW4="}});
        let text = secret_text(&s);
        assert_eq!(
            text,
            "Name:         creds\nNamespace:    default\nLabels:       app=web\nAnnotations:  <none>\n\nType:  Opaque\n\nData\n====\npassword:  7 bytes\nuser:      5 bytes\n"
        );
        assert!(!text.contains("hunter2") && !text.contains("aHVudGVyMg"));
    }

    #[test]
    fn a_config_map_shows_its_values() {
        let c = json!({"kind": "ConfigMap",
            "metadata": {"name": "web", "namespace": "default"},
            "data": {"index.html": "hello"}, "binaryData": {"logo": "AAEC"}});
        let text = config_map_text(&c);
        assert!(
            text.contains("\nData\n====\nindex.html:\n----\nhello\n"),
            "{text}"
        );
        assert!(
            text.contains("\nBinaryData\n====\nlogo: 3 bytes\n"),
            "{text}"
        );
        assert!(
            text.starts_with("Name:         web\nNamespace:    default\nLabels:       <none>\n")
        );
    }
}
