//! Matching registry credentials to an image the way the kubelet does for
//! `kubernetes.io/dockerconfigjson` secrets and docker `config.json` `auths`.
//!
//! Rules (behaviour of the kubelet's docker keyring):
//! - a key is `[scheme://]host[:port][/path]`; the scheme is dropped, and a path starting with
//!   `/v1/` or `/v2/` counts as no path (docker's old index URLs);
//! - a key matches an image `host[:port]/repository` when the hosts have the same number of
//!   dot-separated labels and each image label matches the key's label as a glob (`*`, `?`,
//!   `[...]`), the ports are equal (both absent, or the same number), and the image's path
//!   starts with the key's path (a plain string prefix, as the kubelet does);
//! - keys are tried most specific first: in reverse lexicographic order, so
//!   `quay.io/team/app` comes before `quay.io/team` before `quay.io`; every matching key's
//!   credentials are returned, in that order, and the caller tries each until one works;
//! - an image on Docker Hub (`docker.io`) also matches keys for `index.docker.io` and
//!   `registry-1.docker.io`, which is what `docker login` writes.
//!
//! Pure functions: no I/O, no secrets logged.

use std::collections::BTreeMap;

/// A `(key, value)` set of credentials ordered for lookup.
#[derive(Clone, Default)]
pub struct Keyring<T> {
    /// (normalized key, credentials), most specific first.
    entries: Vec<(String, T)>,
}

impl<T: Clone> Keyring<T> {
    /// Build a keyring from `(key as written, credentials)` pairs. Keys that cannot be parsed
    /// are skipped (the kubelet does the same).
    pub fn new(items: impl IntoIterator<Item = (String, T)>) -> Keyring<T> {
        // A BTreeMap of key → list keeps insertion order per key and sorted keys.
        let mut by_key: BTreeMap<String, Vec<T>> = BTreeMap::new();
        for (raw, v) in items {
            if let Some(k) = normalize_key(&raw) {
                by_key.entry(k).or_default().push(v);
            }
        }
        let mut entries = Vec::new();
        for (k, vs) in by_key.into_iter().rev() {
            for v in vs {
                entries.push((k.clone(), v));
            }
        }
        Keyring { entries }
    }

    /// Credentials for `image` (`host[:port]/path`, without tag or digest), most specific
    /// first.
    pub fn lookup(&self, image: &str) -> Vec<T> {
        let Some(target) = SchemelessUrl::parse(image) else {
            return Vec::new();
        };
        let hub = is_docker_hub(&target.host);
        self.entries
            .iter()
            .filter(|(k, _)| {
                SchemelessUrl::parse(k).is_some_and(|g| {
                    urls_match(&g, &target)
                        || (hub
                            && is_docker_hub(&g.host)
                            && g.port == target.port
                            && target.path.starts_with(&g.path))
                })
            })
            .map(|(_, v)| v.clone())
            .collect()
    }
}

fn is_docker_hub(host: &str) -> bool {
    matches!(
        host,
        "docker.io" | "index.docker.io" | "registry-1.docker.io"
    )
}

/// `[scheme://]host[:port][/path]` → `host[:port][/path]`, with `/v1/` and `/v2/` paths
/// dropped; `None` when there is no host.
pub fn normalize_key(raw: &str) -> Option<String> {
    let s = raw
        .strip_prefix("https://")
        .or_else(|| raw.strip_prefix("http://"))
        .unwrap_or(raw);
    let (host, path) = match s.find('/') {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, ""),
    };
    if host.is_empty() {
        return None;
    }
    let path = if path.starts_with("/v1/") || path.starts_with("/v2/") {
        &path[3..]
    } else {
        path
    };
    if path.is_empty() || path == "/" {
        Some(host.to_owned())
    } else {
        Some(format!("{host}{path}"))
    }
}

/// A URL without scheme: host, optional port, path (starting with `/` or empty).
#[derive(Debug, PartialEq, Eq)]
struct SchemelessUrl {
    host: String,
    port: Option<String>,
    path: String,
}

impl SchemelessUrl {
    fn parse(s: &str) -> Option<SchemelessUrl> {
        let s = s
            .strip_prefix("https://")
            .or_else(|| s.strip_prefix("http://"))
            .unwrap_or(s);
        let (hostport, path) = match s.find('/') {
            Some(i) => (&s[..i], &s[i..]),
            None => (s, ""),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                (h, Some(p.to_owned()))
            }
            _ => (hostport, None),
        };
        if host.is_empty() {
            return None;
        }
        Some(SchemelessUrl {
            host: host.to_ascii_lowercase(),
            port,
            path: path.to_owned(),
        })
    }
}

fn urls_match(glob: &SchemelessUrl, target: &SchemelessUrl) -> bool {
    let g: Vec<&str> = glob.host.split('.').collect();
    let t: Vec<&str> = target.host.split('.').collect();
    g.len() == t.len()
        && g.iter().zip(&t).all(|(g, t)| glob_match(g, t))
        && glob.port == target.port
        && target.path.starts_with(&glob.path)
}

/// Shell-style glob on one host label: `*` (any run), `?` (one character), `[...]` (a class,
/// `^` or `!` negates, `a-z` ranges). A malformed class never matches.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // Memoised on (pattern position, text position): linear in |p|·|t| whatever the number
    // of `*`s (plain backtracking is exponential in them; found by the docker_config fuzzer).
    let mut memo = vec![None; (p.len() + 1) * (t.len() + 1)];
    glob_at(&p, &t, 0, 0, &mut memo)
}

fn glob_at(p: &[char], t: &[char], pi: usize, ti: usize, memo: &mut [Option<bool>]) -> bool {
    let slot = pi * (t.len() + 1) + ti;
    if let Some(v) = memo[slot] {
        return v;
    }
    let v = match p.get(pi) {
        None => ti == t.len(),
        Some('*') => (ti..=t.len()).any(|i| glob_at(p, t, pi + 1, i, memo)),
        Some('?') => ti < t.len() && glob_at(p, t, pi + 1, ti + 1, memo),
        Some('[') => match (t.get(ti), class_at(p, pi)) {
            (Some(c), Some((end, neg, class))) => {
                class_hit(class, *c) != neg && glob_at(p, t, end + 1, ti + 1, memo)
            }
            _ => false,
        },
        Some(&x) => t.get(ti) == Some(&x) && glob_at(p, t, pi + 1, ti + 1, memo),
    };
    memo[slot] = Some(v);
    v
}

/// The class starting at `p[pi] == '['`: its closing position, whether it is negated, and
/// its members; None when it is not closed.
fn class_at(p: &[char], pi: usize) -> Option<(usize, bool, &[char])> {
    let end = p[pi + 1..].iter().position(|&x| x == ']')? + pi + 1;
    let class = &p[pi + 1..end];
    Some(match class.first() {
        Some('^' | '!') => (end, true, &class[1..]),
        _ => (end, false, class),
    })
}

fn class_hit(class: &[char], c: char) -> bool {
    let mut hit = false;
    let mut i = 0;
    while i < class.len() {
        if i + 2 < class.len() && class[i + 1] == '-' {
            hit |= class[i] <= c && c <= class[i + 2];
            i += 3;
        } else {
            hit |= class[i] == c;
            i += 1;
        }
    }
    hit
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(keys: &[&str]) -> Keyring<String> {
        Keyring::new(keys.iter().map(|k| (k.to_string(), k.to_string())))
    }

    #[test]
    fn keys_are_normalized_like_the_kubelet() {
        assert_eq!(
            normalize_key("https://index.docker.io/v1/").as_deref(),
            Some("index.docker.io")
        );
        assert_eq!(
            normalize_key("http://quay.io/team").as_deref(),
            Some("quay.io/team")
        );
        assert_eq!(normalize_key("reg:5000/").as_deref(), Some("reg:5000"));
        assert_eq!(normalize_key("https://"), None);
    }

    #[test]
    fn many_stars_match_in_polynomial_time() {
        let text = "a".repeat(200);
        let pattern = format!("{}b", "*a".repeat(30));
        let t0 = std::time::Instant::now();
        assert!(!glob_match(&pattern, &text));
        assert!(glob_match(&"*a".repeat(30), &text));
        assert!(t0.elapsed() < std::time::Duration::from_secs(2));
    }

    #[test]
    fn globs_match_per_label() {
        let r = ring(&["*.example.com"]);
        assert_eq!(r.lookup("a.example.com/x"), ["*.example.com"]);
        // A glob label never spans a dot.
        assert!(r.lookup("a.b.example.com/x").is_empty());
        assert!(r.lookup("example.com/x").is_empty());
        let r = ring(&["reg-?.example.com", "[a-c]x.io"]);
        assert_eq!(r.lookup("reg-1.example.com/app"), ["reg-?.example.com"]);
        assert_eq!(r.lookup("bx.io/app"), ["[a-c]x.io"]);
        assert!(r.lookup("dx.io/app").is_empty());
        assert!(glob_match("*", "anything"));
        assert!(glob_match("[!a]b", "cb"));
        assert!(!glob_match("[ab", "a"));
    }

    #[test]
    fn ports_must_be_equal() {
        let r = ring(&["reg.io:5000"]);
        assert_eq!(r.lookup("reg.io:5000/app"), ["reg.io:5000"]);
        assert!(r.lookup("reg.io/app").is_empty());
        assert!(r.lookup("reg.io:5001/app").is_empty());
        let r = ring(&["reg.io"]);
        assert!(r.lookup("reg.io:5000/app").is_empty());
    }

    #[test]
    fn most_specific_path_first_and_all_matches_returned() {
        let r = ring(&["quay.io", "quay.io/team", "quay.io/team/app", "gcr.io"]);
        assert_eq!(
            r.lookup("quay.io/team/app"),
            ["quay.io/team/app", "quay.io/team", "quay.io"]
        );
        assert_eq!(r.lookup("quay.io/other/x"), ["quay.io"]);
        // The path rule is a plain prefix, as in the kubelet.
        assert_eq!(r.lookup("quay.io/teamster/x"), ["quay.io/team", "quay.io"]);
    }

    #[test]
    fn several_credentials_for_one_key_keep_their_order() {
        let r = Keyring::new([
            ("reg.io".to_string(), "first".to_string()),
            ("https://reg.io/".to_string(), "second".to_string()),
        ]);
        assert_eq!(r.lookup("reg.io/a"), ["first", "second"]);
    }

    #[test]
    fn docker_hub_keys_match_docker_io_images() {
        let r = ring(&["https://index.docker.io/v1/"]);
        assert_eq!(
            r.lookup("docker.io/library/busybox"),
            ["https://index.docker.io/v1/"]
        );
        assert!(r.lookup("quay.io/library/busybox").is_empty());
    }
}
