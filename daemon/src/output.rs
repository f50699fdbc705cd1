//! `get -o name`, `get -o jsonpath=TEMPLATE` and `get -o custom-columns=SPEC`: kubectl's
//! output forms. The template is
//! kubectl's subset of JSONPath templates — literal text, `{.path}` (also `{$.path}`,
//! `{@.path}`), quoted literals such as `{"\n"}`, and `{range .path}…{end}` — with each path
//! evaluated by `serde_json_path` (RFC 9535); kubectl's filter form `[?(@.a=="b")]` is
//! accepted as RFC 9535's `[?@.a=="b"]`.

use anyhow::{anyhow, bail};
use serde_json::Value;
use serde_json_path::JsonPath;

/// `kind.group/name`, as `kubectl get -o name` prints an object (`pod/web`,
/// `deployment.apps/web`).
pub fn name_of(o: &Value) -> String {
    let kind = o["kind"].as_str().unwrap_or_default().to_ascii_lowercase();
    let group = o["apiVersion"]
        .as_str()
        .and_then(|v| v.split_once('/'))
        .map(|(g, _)| g)
        .unwrap_or("");
    let name = o
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    if group.is_empty() {
        format!("{kind}/{name}")
    } else {
        format!("{kind}.{group}/{name}")
    }
}

#[derive(Debug)]
enum Node {
    Text(String),
    Path(JsonPath),
    Range(JsonPath, Vec<Node>),
}

/// A kubectl path (`.a.b[*]`, `$.a`, `@.a`, `.`) as RFC 9535 JSONPath.
fn compile(expr: &str, template: &str) -> anyhow::Result<JsonPath> {
    let e = expr.trim();
    let body = e
        .strip_prefix('$')
        .or_else(|| e.strip_prefix('@'))
        .unwrap_or(e);
    let body = if body == "." { "" } else { body };
    let rfc = format!("${body}").replace("[?(", "[?").replace(")]", "]");
    JsonPath::parse(&rfc).map_err(|err| {
        anyhow!("jsonpath template {template:?}: {{{expr}}} is not a path ({err}); e.g. {{.metadata.name}} or {{range .items[*]}}{{.metadata.name}}{{\"\\n\"}}{{end}}")
    })
}

type Frame = (Option<JsonPath>, Vec<Node>);

/// The nodes being collected: the innermost open `{range}`, else the template's.
fn top(stack: &mut Vec<Frame>) -> &mut Vec<Node> {
    if stack.is_empty() {
        stack.push((None, Vec::new()));
    }
    let last = stack.len() - 1;
    &mut stack[last].1
}

fn parse(template: &str) -> anyhow::Result<Vec<Node>> {
    let mut stack: Vec<Frame> = vec![(None, Vec::new())];
    let mut rest = template;
    while !rest.is_empty() {
        let Some(open) = rest.find('{') else {
            top(&mut stack).push(Node::Text(rest.to_owned()));
            break;
        };
        if open > 0 {
            top(&mut stack).push(Node::Text(rest[..open].to_owned()));
        }
        let close = rest[open..]
            .find('}')
            .map(|i| open + i)
            .ok_or_else(|| anyhow!("jsonpath template {template:?}: unclosed {{"))?;
        let inner = rest[open + 1..close].trim();
        rest = &rest[close + 1..];
        if let Some(q) = inner.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
            let text = q
                .replace("\\n", "\n")
                .replace("\\t", "\t")
                .replace("\\\"", "\"");
            top(&mut stack).push(Node::Text(text));
        } else if let Some(p) = inner.strip_prefix("range ") {
            stack.push((Some(compile(p, template)?), Vec::new()));
        } else if inner == "end" {
            let (Some(p), body) = stack.pop().unwrap_or((None, Vec::new())) else {
                bail!("jsonpath template {template:?}: {{end}} without {{range}}");
            };
            top(&mut stack).push(Node::Range(p, body));
        } else {
            let p = compile(inner, template)?;
            top(&mut stack).push(Node::Path(p));
        }
    }
    if stack.len() != 1 {
        bail!("jsonpath template {template:?}: {{range}} without {{end}}");
    }
    Ok(stack.pop().map(|s| s.1).unwrap_or_default())
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn eval(nodes: &[Node], v: &Value, out: &mut String) {
    for n in nodes {
        match n {
            Node::Text(t) => out.push_str(t),
            Node::Path(p) => {
                let found: Vec<String> = p.query(v).all().into_iter().map(text).collect();
                out.push_str(&found.join(" "));
            }
            Node::Range(p, body) => {
                for item in p.query(v).all() {
                    eval(body, item, out);
                }
            }
        }
    }
}

/// `doc` rendered through a kubectl jsonpath template.
pub fn jsonpath(template: &str, doc: &Value) -> anyhow::Result<String> {
    let nodes = parse(template)?;
    let mut out = String::new();
    eval(&nodes, doc, &mut out);
    Ok(out)
}

/// The columns of `-o custom-columns=SPEC`: `HEADER:PATH` pairs, comma-separated, each path
/// in kubectl's relaxed form (`.metadata.name`, `{.metadata.name}` or `metadata.name`).
pub fn custom_columns(spec: &str) -> anyhow::Result<Vec<(String, JsonPath)>> {
    if spec.is_empty() {
        bail!("custom-columns format specified but no custom columns given (e.g. -o custom-columns=NAME:.metadata.name)");
    }
    spec.split(',')
        .map(|part| {
            let (header, path) = part.split_once(':').ok_or_else(|| {
                anyhow!(
                    "unexpected custom-columns spec: {part}, expected <header>:<json-path-expr>"
                )
            })?;
            let path = path.trim();
            let path = path
                .strip_prefix('{')
                .and_then(|p| p.strip_suffix('}'))
                .unwrap_or(path);
            let path = if path.starts_with(['.', '$', '@']) {
                path.to_owned()
            } else {
                format!(".{path}")
            };
            Ok((header.to_owned(), compile(&path, spec)?))
        })
        .collect()
}

/// One object's cells under [`custom_columns`]: several results joined by commas, none
/// `<none>`, as kubectl prints them.
pub fn custom_row(columns: &[(String, JsonPath)], o: &Value) -> Vec<String> {
    columns
        .iter()
        .map(|(_, path)| {
            let found: Vec<String> = path.query(o).all().into_iter().map(text).collect();
            if found.is_empty() {
                "<none>".to_owned()
            } else {
                found.join(",")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn list() -> Value {
        json!({"apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a", "labels": {"app": "x"}},
             "status": {"podIP": "10.85.0.2"}},
            {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "b", "labels": {"app": "y"}},
             "status": {"podIP": "10.85.0.3"}}
        ]})
    }

    #[test]
    fn names_as_kubectl_prints_them() {
        assert_eq!(name_of(&list()["items"][0]), "pod/a");
        let d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}});
        assert_eq!(name_of(&d), "deployment.apps/web");
    }

    #[test]
    fn paths_ranges_literals_and_filters() {
        let l = list();
        assert_eq!(jsonpath("{.items[*].metadata.name}", &l).unwrap(), "a b");
        assert_eq!(
            jsonpath(
                r#"{range .items[*]}{.metadata.name}{"\t"}{.status.podIP}{"\n"}{end}"#,
                &l
            )
            .unwrap(),
            "a\t10.85.0.2\nb\t10.85.0.3\n"
        );
        assert_eq!(
            jsonpath(
                r#"{.items[?(@.metadata.labels.app=="y")].metadata.name}"#,
                &l
            )
            .unwrap(),
            "b"
        );
        assert_eq!(
            jsonpath("ip={.items[0].status.podIP}", &l).unwrap(),
            "ip=10.85.0.2"
        );
        assert_eq!(
            jsonpath("{.items[0].metadata.labels}", &l).unwrap(),
            r#"{"app":"x"}"#
        );
        assert_eq!(jsonpath("{.nothing}", &l).unwrap(), "");
    }

    #[test]
    fn bad_templates_say_what_is_wrong() {
        let l = list();
        for (t, want) in [
            ("{.items[}", "is not a path"),
            ("{.a", "unclosed {"),
            ("{range .items[*]}{.x}", "{range} without {end}"),
            ("{end}", "{end} without {range}"),
        ] {
            let e = jsonpath(t, &l).unwrap_err().to_string();
            assert!(e.contains(want), "{t}: {e}");
        }
    }

    #[test]
    fn custom_columns_as_kubectl() {
        let cols = custom_columns(
            "NAME:.metadata.name,IMAGES:{.spec.containers[*].image},NODE:spec.nodeName",
        )
        .unwrap();
        let headers: Vec<&str> = cols.iter().map(|(h, _)| h.as_str()).collect();
        assert_eq!(headers, ["NAME", "IMAGES", "NODE"]);
        let pod = json!({"metadata": {"name": "web"},
            "spec": {"containers": [{"image": "nginx"}, {"image": "busybox"}]}});
        assert_eq!(custom_row(&cols, &pod), ["web", "nginx,busybox", "<none>"]);
        let e = custom_columns("NAME").unwrap_err().to_string();
        assert!(e.contains("expected <header>:<json-path-expr>"), "{e}");
        assert!(custom_columns("").is_err());
    }
}
