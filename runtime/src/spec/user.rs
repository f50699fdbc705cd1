//! The container's process identity: uid, gid and supplementary groups from the CRI security
//! context and the image's `User`, looked up in the container's own `/etc/passwd` and
//! `/etc/group` (read without following symlinks).

use std::collections::BTreeSet;
use std::path::{Component, Path};

use kinglet_cri::CriError;
use kinglet_proto::v1;

/// A resolved process identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub username: Option<String>,
}

/// One parsed line of /etc/passwd or /etc/group.
struct Entry {
    name: String,
    id: u32,
    gid_or_members: String,
}

fn parse_db(text: &str) -> Vec<Entry> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 4 {
                return None;
            }
            Some(Entry {
                name: f[0].to_owned(),
                id: f[2].parse().ok()?,
                // passwd: the primary gid; group: the member list.
                gid_or_members: f[3].to_owned(),
            })
        })
        .collect()
}

/// Read `rel` below `rootfs` refusing symlinks in any component (they could point anywhere on
/// the host). Missing file → empty.
pub fn read_in_root(rootfs: &Path, rel: &str) -> String {
    let mut p = rootfs.to_path_buf();
    for c in Path::new(rel).components() {
        let Component::Normal(c) = c else {
            return String::new();
        };
        p.push(c);
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => return String::new(),
            Ok(_) => {}
            Err(_) => return String::new(),
        }
    }
    std::fs::read_to_string(p).unwrap_or_default()
}

/// The container's user and group databases.
struct UserDb {
    passwd: Vec<Entry>,
    groups: Vec<Entry>,
}

/// A user found by uid or name: its uid, primary gid (when the user is in /etc/passwd) and name.
type FoundUser = (u32, Option<u32>, Option<String>);

impl UserDb {
    fn read(rootfs: &Path) -> UserDb {
        UserDb {
            passwd: parse_db(&read_in_root(rootfs, "etc/passwd")),
            groups: parse_db(&read_in_root(rootfs, "etc/group")),
        }
    }

    /// A uid (known to /etc/passwd or not) or a user name (which must be there).
    fn user(&self, spec: &str, field: &str) -> Result<FoundUser, CriError> {
        if let Ok(uid) = spec.parse::<u32>() {
            let e = self.passwd.iter().find(|e| e.id == uid);
            return Ok((
                uid,
                e.and_then(|e| e.gid_or_members.parse().ok()),
                e.map(|e| e.name.clone()),
            ));
        }
        match self.passwd.iter().find(|e| e.name == spec) {
            Some(e) => Ok((e.id, e.gid_or_members.parse().ok(), Some(e.name.clone()))),
            None => Err(CriError::invalid(
                field,
                format!("user {spec:?} not found in the container's /etc/passwd"),
            )),
        }
    }

    /// A gid, or a group name (which must be in /etc/group).
    fn group(&self, spec: &str, field: &str) -> Result<u32, CriError> {
        if let Ok(gid) = spec.parse::<u32>() {
            return Ok(gid);
        }
        self.groups
            .iter()
            .find(|g| g.name == spec)
            .map(|g| g.id)
            .ok_or_else(|| {
                CriError::invalid(
                    field,
                    format!("group {spec:?} not found in the container's /etc/group"),
                )
            })
    }
}

/// As containerd: a group without a user is refused (the kubelet always names the user).
fn check_group_has_user(sc: Option<&v1::LinuxContainerSecurityContext>) -> Result<(), CriError> {
    if let Some(s) = sc.filter(|s| s.run_as_group.is_some()) {
        if s.run_as_user.is_none() && s.run_as_username.is_empty() {
            return Err(CriError::invalid(
                "linux.security_context.run_as_group",
                "is set without run_as_user or run_as_username: set one of them too",
            ));
        }
    }
    Ok(())
}

/// The user, by precedence: `run_as_user`, `run_as_username`, the image's `User`, root.
fn primary_user(
    db: &UserDb,
    sc: Option<&v1::LinuxContainerSecurityContext>,
    image_user: &str,
) -> Result<FoundUser, CriError> {
    if let Some(u) = sc.and_then(|s| s.run_as_user.as_ref()) {
        let uid = u32::try_from(u.value)
            .map_err(|_| CriError::invalid("linux.security_context.run_as_user", "out of range"))?;
        return db.user(&uid.to_string(), "linux.security_context.run_as_user");
    }
    if let Some(name) = sc
        .map(|s| s.run_as_username.as_str())
        .filter(|n| !n.is_empty())
    {
        return db.user(name, "linux.security_context.run_as_username");
    }
    if image_user.is_empty() {
        return Ok((0, Some(0), Some("root".to_owned())));
    }
    let (u, g) = match image_user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (image_user, None),
    };
    let (uid, gid, name) = db.user(u, "image config User")?;
    let gid = match g {
        Some(g) => Some(db.group(g, "image config User")?),
        None => gid,
    };
    Ok((uid, gid, name))
}

/// Supplementary groups: the user's groups in /etc/group (not under policy Strict), the
/// requested `supplemental_groups`, and the primary group.
fn supplementary_groups(
    db: &UserDb,
    sc: Option<&v1::LinuxContainerSecurityContext>,
    username: Option<&String>,
    gid: u32,
) -> Result<Vec<u32>, CriError> {
    let mut extra: BTreeSet<u32> = BTreeSet::new();
    // SupplementalGroupsPolicy Strict: only the requested groups, none from the image.
    let strict = sc.is_some_and(|s| {
        s.supplemental_groups_policy == v1::SupplementalGroupsPolicy::Strict as i32
    });
    if let Some(name) = username.filter(|_| !strict) {
        for g in &db.groups {
            if g.gid_or_members.split(',').any(|m| m == name) && g.id != gid {
                extra.insert(g.id);
            }
        }
    }
    for g in sc.map(|s| s.supplemental_groups.as_slice()).unwrap_or(&[]) {
        let g = u32::try_from(*g).map_err(|_| {
            CriError::invalid("linux.security_context.supplemental_groups", "out of range")
        })?;
        extra.insert(g);
    }
    // containerd's ensureAdditionalGids: the primary group is always among the supplementary
    // ones (Kubernetes shows `groups=` with runAsGroup in it), under either policy.
    extra.insert(gid);
    Ok(extra.into_iter().collect())
}

/// Resolve the container's identity.
pub fn resolve_user(
    rootfs: &Path,
    sc: Option<&v1::LinuxContainerSecurityContext>,
    image_user: &str,
) -> Result<Identity, CriError> {
    check_group_has_user(sc)?;
    let db = UserDb::read(rootfs);
    let (uid, mut gid, username) = primary_user(&db, sc, image_user)?;
    if let Some(g) = sc.and_then(|s| s.run_as_group.as_ref()) {
        gid = Some(u32::try_from(g.value).map_err(|_| {
            CriError::invalid("linux.security_context.run_as_group", "out of range")
        })?);
    }
    let gid = gid.unwrap_or(0);
    let additional_gids = supplementary_groups(&db, sc, username.as_ref(), gid)?;
    Ok(Identity {
        uid,
        gid,
        additional_gids,
        username,
    })
}
