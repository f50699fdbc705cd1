//! The host IDs pods' user namespaces are carved from ([`IdRange`]: a setting, the `kubelet`
//! user's `/etc/subuid` and `/etc/subgid` entries, or the kubelet's default) and the pure
//! decisions of handing them out ([`Allocator`]): one block of [`IDS_PER_POD`] IDs per pod,
//! the lowest free one first, as the kubelet's user-namespace manager does.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use super::UsernsError;

/// IDs of one pod's user namespace (container IDs 0–65535, the kubelet's `idsPerPod`).
pub const IDS_PER_POD: u32 = 65536;

/// The user the kubelet takes its subordinate IDs from.
pub const KUBELET_USER: &str = "kubelet";

/// The first ID past the last block the kernel accepts: a mapping whose host range reaches
/// 4294967295 (`(uid_t)-1`) overflows and is refused when written to `uid_map`.
const END_LIMIT: u64 = (1 << 32) - IDS_PER_POD as u64;

/// Host IDs `first .. first + length` for pods' user namespaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    pub first: u32,
    pub length: u32,
}

impl IdRange {
    /// The kubelet's default without subordinate IDs: every ID from 65536 up (less the last
    /// block, which the kernel cannot map).
    pub const DEFAULT: IdRange = IdRange {
        first: IDS_PER_POD,
        length: (END_LIMIT - IDS_PER_POD as u64) as u32,
    };

    /// A range checked as the kubelet checks its mappings: aligned to and a multiple of
    /// 65536, clear of the host's own IDs 0–65535, within what the kernel can map.
    pub fn new(first: u64, length: u64) -> Result<IdRange, String> {
        let unit = IDS_PER_POD as u64;
        if first % unit != 0 {
            return Err(format!(
                "first ID {first} is not a multiple of {unit} (each pod gets {unit} IDs from a multiple of {unit})"
            ));
        }
        if first < unit {
            return Err(format!(
                "first ID {first} overlaps the host's IDs 0-{}: start at {unit} or above",
                unit - 1
            ));
        }
        if length == 0 || length % unit != 0 {
            return Err(format!(
                "length {length} is not a positive multiple of {unit} (one pod's IDs)"
            ));
        }
        if first + length > END_LIMIT {
            return Err(format!(
                "{first}+{length} ends past {END_LIMIT}: the kernel cannot map IDs up to 4294967295"
            ));
        }
        Ok(IdRange {
            first: first as u32,
            length: length as u32,
        })
    }

    /// How many pods can have a user namespace at once.
    pub fn blocks(&self) -> u32 {
        self.length / IDS_PER_POD
    }
}

impl std::str::FromStr for IdRange {
    type Err = String;

    /// `FIRST:LENGTH`, as in `/etc/subuid` (`65536:65536000`).
    fn from_str(s: &str) -> Result<IdRange, String> {
        let bad = || format!("{s:?} is not FIRST:LENGTH (e.g. \"1048576:65536000\")");
        let (first, length) = s.split_once(':').ok_or_else(bad)?;
        let first = first.trim().parse::<u64>().map_err(|_| bad())?;
        let length = length.trim().parse::<u64>().map_err(|_| bad())?;
        IdRange::new(first, length)
    }
}

impl std::fmt::Display for IdRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.first, self.length)
    }
}

/// The range for pods on this host: the `kubelet` user's entries in `<etc>/subuid` and
/// `<etc>/subgid` when that user exists and has them (they must be one identical entry
/// each), else [`IdRange::DEFAULT`]. What it came from is said for the log.
pub fn host_range(etc: &Path) -> Result<(IdRange, String), String> {
    let read = |name: &str| std::fs::read_to_string(etc.join(name)).unwrap_or_default();
    let passwd = read("passwd");
    let Some(uid) = passwd.lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next() == Some(KUBELET_USER)).then(|| f.nth(1).unwrap_or("").to_owned())
    }) else {
        return Ok((IdRange::DEFAULT, "default (no kubelet user)".into()));
    };
    let entries = |file: &str| -> Vec<(u64, u64)> {
        read(file)
            .lines()
            .filter_map(|l| {
                let mut f = l.trim().split(':');
                let who = f.next()?;
                let first = f.next()?.parse().ok()?;
                let length = f.next()?.parse().ok()?;
                (who == KUBELET_USER || who == uid).then_some((first, length))
            })
            .collect()
    };
    let (uids, gids) = (entries("subuid"), entries("subgid"));
    if uids.is_empty() && gids.is_empty() {
        return Ok((
            IdRange::DEFAULT,
            "default (no subordinate IDs for kubelet)".into(),
        ));
    }
    if uids.len() != 1 || gids.len() != 1 {
        return Err(format!(
            "{} has {} and {} has {} entries for user {KUBELET_USER}: give exactly one in each",
            etc.join("subuid").display(),
            uids.len(),
            etc.join("subgid").display(),
            gids.len()
        ));
    }
    if uids != gids {
        return Err(format!(
            "the {KUBELET_USER} user's subordinate uids {}:{} and gids {}:{} differ: pods map both the same way",
            uids[0].0, uids[0].1, gids[0].0, gids[0].1
        ));
    }
    let r = IdRange::new(uids[0].0, uids[0].1).map_err(|e| {
        format!(
            "{} entry of {KUBELET_USER}: {e}",
            etc.join("subuid").display()
        )
    })?;
    Ok((r, format!("{KUBELET_USER}'s /etc/subuid and /etc/subgid")))
}

/// Which pod holds which block: the decisions of the user-namespace manager, without files.
#[derive(Debug)]
pub struct Allocator {
    range: IdRange,
    /// Block index within `range` → the pod holding it.
    used: BTreeMap<u32, String>,
    /// Pod uid → the first host ID of its mapping.
    by_pod: HashMap<String, u32>,
}

impl Allocator {
    pub fn new(range: IdRange) -> Allocator {
        Allocator {
            range,
            used: BTreeMap::new(),
            by_pod: HashMap::new(),
        }
    }

    pub fn range(&self) -> IdRange {
        self.range
    }

    /// The first host ID of `pod`'s mapping, if it has one.
    pub fn get(&self, pod: &str) -> Option<u32> {
        self.by_pod.get(pod).copied()
    }

    fn index(&self, first: u32) -> Option<u32> {
        let off = first.checked_sub(self.range.first)?;
        (off < self.range.length).then_some(off / IDS_PER_POD)
    }

    /// `pod`'s mapping: the one it has, else the lowest free block.
    pub fn allocate(&mut self, pod: &str) -> Result<u32, UsernsError> {
        if let Some(first) = self.get(pod) {
            return Ok(first);
        }
        let mut free = 0;
        for &i in self.used.keys() {
            if i != free {
                break;
            }
            free += 1;
        }
        if free >= self.range.blocks() {
            return Err(UsernsError::Exhausted {
                range: self.range,
                pods: self.used.len(),
            });
        }
        let first = self.range.first + free * IDS_PER_POD;
        self.used.insert(free, pod.to_owned());
        self.by_pod.insert(pod.to_owned(), first);
        Ok(first)
    }

    /// Take back a mapping made earlier (read from its file). One outside the range (the
    /// setting changed while the pod ran) is kept for its pod: blocks are aligned, so it can
    /// never overlap one handed out from the range.
    pub fn record(&mut self, pod: &str, first: u32, length: u32) -> Result<(), String> {
        if length != IDS_PER_POD {
            return Err(format!("length {length} is not {IDS_PER_POD}"));
        }
        if first % IDS_PER_POD != 0 || first < IDS_PER_POD {
            return Err(format!(
                "host ID {first} is not a multiple of {IDS_PER_POD} above 0"
            ));
        }
        match self.get(pod) {
            Some(f) if f == first => return Ok(()),
            Some(f) => return Err(format!("pod already holds the range from {f}")),
            None => {}
        }
        if let Some(i) = self.index(first) {
            if let Some(other) = self.used.get(&i) {
                return Err(format!("range from {first} is already held by pod {other}"));
            }
            self.used.insert(i, pod.to_owned());
        }
        self.by_pod.insert(pod.to_owned(), first);
        Ok(())
    }

    /// Free `pod`'s mapping; the first host ID it had.
    pub fn release(&mut self, pod: &str) -> Option<u32> {
        let first = self.by_pod.remove(pod)?;
        if let Some(i) = self.index(first) {
            self.used.remove(&i);
        }
        Some(first)
    }

    /// The pods holding a mapping.
    pub fn pods(&self) -> impl Iterator<Item = &String> {
        self.by_pod.keys()
    }
}
