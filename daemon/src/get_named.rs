//! `kinglet get` of several named objects, as kubectl reads and prints them: `get KIND NAME
//! NAME...` (one table), `get KIND,KIND NAME...` and `get KIND/NAME KIND/NAME...` (a table per
//! kind, in the order given). A name that is not there is kubectl's NotFound error on stderr
//! that does not stop the others; the command then exits non-zero.

use tonic::transport::Channel;

use crate::delete_cli::{not_found, selection, Selection};
use crate::kubectl::{fetch, render, status_err, Printing};

/// Whether a command line names several objects (so [`get_named`] lists them), rather than
/// one kind (optionally one name) for the plain `get`.
pub fn names_several(kind: &str, names: &[String]) -> bool {
    names.len() > 1 || (kind.contains('/') && !names.is_empty())
}

/// The (kind, names) groups of a command line, kinds in the order first given.
pub fn groups(kind: &str, names: &[String]) -> anyhow::Result<Vec<(String, Vec<String>)>> {
    let objects: Vec<String> = std::iter::once(kind.to_owned())
        .chain(names.iter().cloned())
        .collect();
    let Selection::Named(pairs) = selection(&objects, false)? else {
        anyhow::bail!("give KIND NAME... or KIND/NAME...")
    };
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for (k, n) in pairs {
        match out.iter_mut().find(|(kind, _)| *kind == k) {
            Some((_, ns)) => ns.push(n),
            None => out.push((k, vec![n])),
        }
    }
    Ok(out)
}

/// List the named objects: a table per kind (blank line between), or every object found in one
/// List for yaml/json/name/jsonpath.
pub async fn get_named(
    ch: Channel,
    kind: &str,
    names: &[String],
    ns: &str,
    p: Printing<'_>,
) -> anyhow::Result<()> {
    let table = p.table();
    let (mut failed, mut printed, mut everything) = (false, false, Vec::new());
    for (kind, names) in groups(kind, names)? {
        let mut objs = Vec::new();
        for name in &names {
            match fetch(ch.clone(), &kind, Some(name), None, ns, false).await {
                Ok(found) => objs.extend(found),
                Err(s) if s.code() == tonic::Code::NotFound => {
                    eprintln!("{}", not_found(&kind, name));
                    failed = true;
                }
                Err(s) => return Err(status_err("get")(s)),
            }
        }
        if objs.is_empty() {
            continue;
        }
        if !table {
            everything.extend(objs);
            continue;
        }
        if printed {
            println!();
        }
        render(objs, &kind, false, Printing { all: false, ..p })?;
        printed = true;
    }
    if !table {
        render(everything, kind, false, Printing { all: false, ..p })?;
    }
    if failed {
        return Err(crate::podref::Reported.into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn one_name_is_the_plain_get() {
        assert!(!names_several("pods", &s(&["a"])));
        assert!(!names_several("pod/a", &[]));
        assert!(names_several("pods", &s(&["a", "b"])));
        assert!(names_several("pod/a", &s(&["svc/b"])));
    }

    #[test]
    fn names_group_by_kind_in_order() {
        assert_eq!(
            groups("pods", &s(&["a", "b"])).unwrap(),
            vec![("pods".to_owned(), s(&["a", "b"]))]
        );
        assert_eq!(
            groups("pod/a", &s(&["svc/b", "pod/c"])).unwrap(),
            vec![
                ("pod".to_owned(), s(&["a", "c"])),
                ("svc".to_owned(), s(&["b"]))
            ]
        );
        assert_eq!(
            groups("pods,svc", &s(&["a", "b"])).unwrap(),
            vec![
                ("pods".to_owned(), s(&["a", "b"])),
                ("svc".to_owned(), s(&["a", "b"]))
            ]
        );
    }

    #[test]
    fn empty_tables_say_where_nothing_was_found() {
        use crate::kubectl::no_resources;
        assert_eq!(
            no_resources("pods", "qos-example", false),
            "No resources found in qos-example namespace."
        );
        assert_eq!(no_resources("pods", "default", true), "No resources found");
        assert_eq!(no_resources("ns", "default", false), "No resources found");
    }

    #[test]
    fn mixed_forms_are_refused_with_a_hint() {
        let e = groups("pod/a", &s(&["b"])).unwrap_err().to_string();
        assert!(e.contains("KIND/NAME"), "{e}");
        let e = groups("pods", &s(&["a", "svc/b"])).unwrap_err().to_string();
        assert!(e.contains("not both"), "{e}");
    }
}
