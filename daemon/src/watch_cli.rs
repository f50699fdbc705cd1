//! `kinglet get -w` / `--watch` / `--watch-only`, as kubectl prints them: the table once (not
//! with `--watch-only`), then one row for each change of an object — added, changed, or
//! deleted (its last state) — under the first table's columns. With `-o json|yaml|name|
//! jsonpath=`, each object as it changes. One kind at a time, as kubectl. The changes come
//! from the daemon's `Objects/Watch` stream (see [`crate::watch_api`]), not from polling.

use std::io::Write;

use anyhow::{bail, Context};
use kinglet_proto::admin;
use kinglet_proto::admin::objects_client::ObjectsClient;
use serde_json::Value;
use tonic::transport::Channel;

use crate::kubectl::{
    column_widths, status_err, table_header, table_line, table_row, GetQuery, Printing,
};

/// How a watch prints.
pub struct WatchOptions<'a> {
    /// `-o`, `-A`, `--reveal`, `--show-labels`.
    pub print: Printing<'a>,
    /// `--watch-only`: no table of the objects as they are first.
    pub watch_only: bool,
}

/// Watch the objects of `q` in `ns` until interrupted (or the daemon ends the watch).
pub async fn watch(
    ch: Channel,
    q: GetQuery<'_>,
    ns: &str,
    opts: &WatchOptions<'_>,
) -> anyhow::Result<()> {
    let (kind, name) = match q.kinds.split_once('/') {
        Some((k, n)) if q.name.is_none() => (k, Some(n)),
        _ => (q.kinds, q.name),
    };
    if opts
        .print
        .output
        .is_some_and(|o| o.starts_with("custom-columns="))
    {
        bail!("-w takes -o wide, yaml, json, name or jsonpath=TEMPLATE, not custom-columns");
    }
    if kind.contains(',') || kind == "all" {
        bail!("watch is only supported on one kind at a time (e.g. `get pods -w`), not {kind:?}");
    }
    let mut stream = ObjectsClient::new(ch)
        .watch(admin::GetRequest {
            kind: kind.into(),
            namespace: ns.into(),
            all_namespaces: opts.print.all,
            name: name.unwrap_or_default().into(),
            label_selector: q.selector.unwrap_or_default().into(),
        })
        .await
        .map_err(status_err("get"))?
        .into_inner();
    let mut printer = Printer {
        opts,
        ns,
        widths: None,
    };
    let mut first = Some(Vec::new());
    while let Some(ev) = stream.message().await.map_err(status_err("watch"))? {
        if ev.r#type == "SYNCED" {
            printer.first(first.take().unwrap_or_default())?;
            continue;
        }
        let mut obj: Value = serde_json::from_str(&ev.object)
            .with_context(|| format!("the daemon sent a {} event that is not JSON", ev.r#type))?;
        if obj["kind"] == "Secret" && !opts.print.reveal {
            crate::kubectl::redact(&mut obj);
        }
        match first.as_mut() {
            Some(objs) => objs.push(obj),
            None => printer.change(&obj)?,
        }
    }
    bail!("the daemon ended the watch (stopped or restarted?)")
}

struct Printer<'a> {
    opts: &'a WatchOptions<'a>,
    ns: &'a str,
    /// The table's column widths, once its header is printed.
    widths: Option<Vec<usize>>,
}

impl Printer<'_> {
    fn table(&self) -> bool {
        matches!(self.opts.print.output, None | Some("wide"))
    }

    /// The objects as they were when the watch began.
    fn first(&mut self, objs: Vec<Value>) -> anyhow::Result<()> {
        if self.opts.watch_only {
            return Ok(());
        }
        if objs.is_empty() {
            if self.opts.print.all {
                eprintln!("No resources found");
            } else {
                eprintln!("No resources found in {} namespace.", self.ns);
            }
            return Ok(());
        }
        if !self.table() {
            return objs.iter().try_for_each(|o| self.object(o));
        }
        let kind = objs[0]["kind"].as_str().unwrap_or("");
        let header = table_header(kind, &self.opts.print);
        let rows = objs
            .iter()
            .map(|o| table_row(o, kind, &self.opts.print))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let widths = column_widths(&header, &rows);
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", table_line(&widths, &header))?;
        for r in &rows {
            writeln!(out, "{}", table_line(&widths, r))?;
        }
        out.flush()?;
        self.widths = Some(widths);
        Ok(())
    }

    /// One change: a row (the header first if none was printed), or the object.
    fn change(&mut self, o: &Value) -> anyhow::Result<()> {
        if !self.table() {
            return self.object(o);
        }
        let kind = o["kind"].as_str().unwrap_or("");
        let row = table_row(o, kind, &self.opts.print)?;
        let mut out = std::io::stdout().lock();
        let widths = match &self.widths {
            Some(w) => w.clone(),
            None => {
                let header = table_header(kind, &self.opts.print);
                let w = column_widths(&header, std::slice::from_ref(&row));
                writeln!(out, "{}", table_line(&w, &header))?;
                self.widths = Some(w.clone());
                w
            }
        };
        writeln!(out, "{}", table_line(&widths, &row))?;
        out.flush()?;
        Ok(())
    }

    /// One object in a `-o` format other than a table.
    fn object(&self, o: &Value) -> anyhow::Result<()> {
        let mut out = std::io::stdout().lock();
        match self.opts.print.output {
            Some("json") => writeln!(out, "{}", serde_json::to_string_pretty(o)?)?,
            Some("yaml") => write!(out, "---\n{}", serde_yaml_ng::to_string(o)?)?,
            Some("name") => writeln!(out, "{}", crate::output::name_of(o))?,
            Some(t) if t.starts_with("jsonpath=") => write!(
                out,
                "{}",
                crate::output::jsonpath(&t["jsonpath=".len()..], o)?
            )?,
            Some(t) => bail!("unknown output format {t:?} ({})", crate::kubectl::FORMATS),
            None => {}
        }
        out.flush()?;
        Ok(())
    }
}
