//! Resolves an image's `User` (`uid`, `uid:gid`, `name`, `name:group`, …) against the
//! rootfs's `/etc/passwd` and `/etc/group` text, like runc does. Pure: never reads files.

use oci_spec::runtime::User;

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("image user {0:?}: no such user in the image's /etc/passwd")]
    UnknownUser(String),
    #[error("image user {user:?}: no such group {group:?} in the image's /etc/group")]
    UnknownGroup { user: String, group: String },
    #[error("image user {0:?}: empty user or group part")]
    Empty(String),
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

struct GroupEntry<'a> {
    name: &'a str,
    gid: u32,
    members: Vec<&'a str>,
}

/// The home folder of `user` (name or uid, root when empty) in the image's `passwd`;
/// `/` when the user has no entry or the entry no home (as Docker does).
pub fn home(user: Option<&str>, passwd: Option<&str>) -> String {
    let spec = user.map(str::trim).unwrap_or("");
    let user_part = spec.split_once(':').map_or(spec, |(u, _)| u);
    let users = parse_passwd(passwd.unwrap_or(""));
    let entry = match user_part.parse::<u32>() {
        _ if user_part.is_empty() => users.iter().find(|e| e.uid == 0),
        Ok(uid) => users.iter().find(|e| e.uid == uid),
        Err(_) => users.iter().find(|e| e.name == user_part),
    };
    entry
        .map(|e| e.home)
        .filter(|h| h.starts_with('/'))
        .unwrap_or("/")
        .to_owned()
}

/// Root (0:0) when `user` is `None` or empty.
pub fn resolve(
    user: Option<&str>,
    passwd: Option<&str>,
    group: Option<&str>,
) -> Result<User, UserError> {
    let spec = user.map(str::trim).unwrap_or("");
    let users = parse_passwd(passwd.unwrap_or(""));
    let groups = parse_group(group.unwrap_or(""));
    let (user_part, group_part) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    if spec.is_empty() {
        return Ok(User::default());
    }
    if user_part.is_empty() || group_part.is_some_and(str::is_empty) {
        return Err(UserError::Empty(spec.to_string()));
    }
    let entry = match user_part.parse::<u32>() {
        Ok(uid) => users.iter().find(|e| e.uid == uid),
        Err(_) => Some(
            users
                .iter()
                .find(|e| e.name == user_part)
                .ok_or_else(|| UserError::UnknownUser(spec.to_string()))?,
        ),
    };
    let uid = entry.map_or_else(|| user_part.parse::<u32>().unwrap_or(0), |e| e.uid);
    let (gid, extra) = match group_part {
        Some(g) => (group_id(g, &groups, spec)?, Vec::new()),
        None => {
            let gid = entry.map_or(0, |e| e.gid);
            let extra = entry.map_or_else(Vec::new, |e| supplementary(e.name, gid, &groups));
            (gid, extra)
        }
    };
    let mut out = User::default();
    out.set_uid(uid);
    out.set_gid(gid);
    if !extra.is_empty() {
        out.set_additional_gids(Some(extra));
    }
    Ok(out)
}

fn group_id(g: &str, groups: &[GroupEntry], spec: &str) -> Result<u32, UserError> {
    if let Ok(gid) = g.parse::<u32>() {
        return Ok(gid);
    }
    groups
        .iter()
        .find(|e| e.name == g)
        .map(|e| e.gid)
        .ok_or_else(|| UserError::UnknownGroup {
            user: spec.to_string(),
            group: g.to_string(),
        })
}

fn supplementary(name: &str, primary: u32, groups: &[GroupEntry]) -> Vec<u32> {
    let mut out: Vec<u32> = groups
        .iter()
        .filter(|g| g.gid != primary && g.members.contains(&name))
        .map(|g| g.gid)
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

fn parse_passwd(text: &str) -> Vec<PasswdEntry<'_>> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(PasswdEntry {
                name: f.first()?,
                uid: f.get(2)?.parse().ok()?,
                gid: f.get(3)?.parse().ok()?,
                home: f.get(5).copied().unwrap_or(""),
            })
        })
        .collect()
}

fn parse_group(text: &str) -> Vec<GroupEntry<'_>> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            let members = f.get(3).map_or_else(Vec::new, |m| {
                m.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .collect()
            });
            Some(GroupEntry {
                name: f.first()?,
                gid: f.get(2)?.parse().ok()?,
                members,
            })
        })
        .collect()
}
