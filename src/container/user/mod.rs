//! Resolving the container's user against the image's /etc/passwd and /etc/group.
//!
//! The sources, in order of precedence: `run_as_user` / `run_as_username` (with
//! `run_as_group`) from the CRI security context, else the image config's `User`
//! (`user`, `uid`, `user:group`, `uid:gid`, or empty for root).

use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

use super::error::{Result, SpecError};
use super::rootfs_path::resolve_in_root;

/// Larger user databases than this are not plausible; the image, not the daemon's
/// memory, pays for one.
pub const MAX_USER_DB: u64 = 1 << 20;

pub const FIELD_RUN_AS_USER: &str = "linux.security_context.run_as_user";
pub const FIELD_RUN_AS_USERNAME: &str = "linux.security_context.run_as_username";
pub const FIELD_RUN_AS_GROUP: &str = "linux.security_context.run_as_group";
pub const FIELD_SUPPLEMENTAL_GROUPS: &str = "linux.security_context.supplemental_groups";
pub const FIELD_IMAGE_USER: &str = "image config User";

#[derive(Debug, Clone, PartialEq, Eq)]
struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

/// The user and group databases of one image root filesystem.
#[derive(Debug, Default)]
pub struct ImageUsers {
    passwd: Vec<PasswdEntry>,
    groups: Vec<GroupEntry>,
}

/// What the CRI request says about the user; `None`/empty where it says nothing.
#[derive(Debug, Default, Clone)]
pub struct UserRequest<'a> {
    pub run_as_user: Option<i64>,
    pub run_as_username: &'a str,
    pub run_as_group: Option<i64>,
    pub image_user: &'a str,
    pub supplemental_groups: &'a [i64],
    /// `SupplementalGroupsPolicy::Strict`: only the requested groups, none from the image.
    pub strict_groups: bool,
}

/// The identity the container's process runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    /// Every group the process is in, the primary group first.
    pub additional_gids: Vec<u32>,
    /// The home directory from the image's passwd; `/` when the user has none there.
    pub home: String,
}

impl ImageUsers {
    /// Reads `/etc/passwd` and `/etc/group` of the image at `rootfs`. Missing files are
    /// empty databases (scratch images have none).
    pub fn load(rootfs: &Path) -> Result<Self> {
        let passwd = read_user_db(rootfs, "/etc/passwd")?.unwrap_or_default();
        let group = read_user_db(rootfs, "/etc/group")?.unwrap_or_default();
        Ok(ImageUsers {
            passwd: parse_passwd(&passwd),
            groups: parse_group(&group),
        })
    }

    fn user_by_name(&self, name: &str) -> Option<&PasswdEntry> {
        self.passwd.iter().find(|e| e.name == name)
    }

    fn user_by_uid(&self, uid: u32) -> Option<&PasswdEntry> {
        self.passwd.iter().find(|e| e.uid == uid)
    }

    fn group_by_name(&self, name: &str) -> Option<&GroupEntry> {
        self.groups.iter().find(|e| e.name == name)
    }

    pub fn resolve(&self, req: &UserRequest<'_>) -> Result<ResolvedUser> {
        if req.run_as_user.is_some() && !req.run_as_username.is_empty() {
            return Err(SpecError::invalid(
                FIELD_RUN_AS_USERNAME,
                "only one of run_as_user and run_as_username may be set",
            ));
        }
        let (uid, mut gid, name) = if let Some(uid) = req.run_as_user {
            let uid = to_id(FIELD_RUN_AS_USER, uid)?;
            let entry = self.user_by_uid(uid);
            (
                uid,
                entry.map_or(0, |e| e.gid),
                entry.map(|e| e.name.clone()),
            )
        } else if !req.run_as_username.is_empty() {
            let entry = self.user_by_name(req.run_as_username).ok_or_else(|| {
                SpecError::invalid(
                    FIELD_RUN_AS_USERNAME,
                    format!(
                        "user {:?} not found in image /etc/passwd",
                        req.run_as_username
                    ),
                )
            })?;
            (entry.uid, entry.gid, Some(entry.name.clone()))
        } else {
            if req.run_as_group.is_some() {
                return Err(SpecError::invalid(
                    FIELD_RUN_AS_GROUP,
                    "run_as_group requires run_as_user or run_as_username",
                ));
            }
            self.resolve_image_user(req.image_user)?
        };
        if let Some(group) = req.run_as_group {
            gid = to_id(FIELD_RUN_AS_GROUP, group)?;
        }

        let mut additional_gids = vec![gid];
        if !req.strict_groups
            && let Some(name) = &name
        {
            for group in &self.groups {
                if group.members.iter().any(|m| m == name) {
                    push_unique(&mut additional_gids, group.gid);
                }
            }
        }
        for &group in req.supplemental_groups {
            push_unique(
                &mut additional_gids,
                to_id(FIELD_SUPPLEMENTAL_GROUPS, group)?,
            );
        }

        let home = self
            .user_by_uid(uid)
            .map(|e| e.home.clone())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "/".to_string());
        Ok(ResolvedUser {
            uid,
            gid,
            additional_gids,
            home,
        })
    }

    /// The image config's `User`: `user`, `uid`, `user:group`, `uid:gid`, or empty (root).
    fn resolve_image_user(&self, spec: &str) -> Result<(u32, u32, Option<String>)> {
        let spec = spec.trim();
        let (user, group) = match spec.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (spec, None),
        };
        let (uid, mut gid, name) = if user.is_empty() {
            if group.is_some() {
                return Err(SpecError::invalid(
                    FIELD_IMAGE_USER,
                    format!("{spec:?} names a group but no user"),
                ));
            }
            let entry = self.user_by_uid(0);
            (0, entry.map_or(0, |e| e.gid), entry.map(|e| e.name.clone()))
        } else if let Ok(uid) = user.parse::<u32>() {
            let entry = self.user_by_uid(uid);
            (
                uid,
                entry.map_or(0, |e| e.gid),
                entry.map(|e| e.name.clone()),
            )
        } else {
            let entry = self.user_by_name(user).ok_or_else(|| {
                SpecError::invalid(
                    FIELD_IMAGE_USER,
                    format!("user {user:?} not found in image /etc/passwd"),
                )
            })?;
            (entry.uid, entry.gid, Some(entry.name.clone()))
        };
        if let Some(group) = group {
            gid = if let Ok(gid) = group.parse::<u32>() {
                gid
            } else {
                self.group_by_name(group)
                    .ok_or_else(|| {
                        SpecError::invalid(
                            FIELD_IMAGE_USER,
                            format!("group {group:?} not found in image /etc/group"),
                        )
                    })?
                    .gid
            };
        }
        Ok((uid, gid, name))
    }
}

/// Reads one of the image's user databases, resolved inside the rootfs. Only a regular
/// file of at most [`MAX_USER_DB`] bytes is read: a FIFO would block the request forever,
/// a device or a huge file would exhaust memory. The open neither follows a last
/// symlink (a swap after resolving cannot lead outside) nor waits on a FIFO.
fn read_user_db(rootfs: &Path, path: &str) -> Result<Option<String>> {
    let field = format!("image {path}");
    let host = resolve_in_root(rootfs, Path::new(path)).map_err(|source| SpecError::Read {
        field: field.clone(),
        path: rootfs.join(path.trim_start_matches('/')),
        source,
    })?;
    let read_err = |source: io::Error| SpecError::Read {
        field: field.clone(),
        path: host.clone(),
        source,
    };
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY)
        .open(&host)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(SpecError::invalid(
                &field,
                "is a symlink, not a regular file",
            ));
        }
        Err(e) => return Err(read_err(e)),
    };
    let meta = file.metadata().map_err(read_err)?;
    let kind = meta.file_type();
    if !kind.is_file() {
        let what = if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_char_device() {
            "a character device"
        } else if kind.is_block_device() {
            "a block device"
        } else if kind.is_socket() {
            "a socket"
        } else if kind.is_dir() {
            "a directory"
        } else {
            "not a regular file"
        };
        return Err(SpecError::invalid(
            &field,
            format!("is {what}, not a regular file"),
        ));
    }
    if meta.len() > MAX_USER_DB {
        return Err(SpecError::invalid(
            &field,
            format!(
                "is {} bytes, more than the {MAX_USER_DB} allowed",
                meta.len()
            ),
        ));
    }
    let mut bytes = Vec::new();
    // The size may grow after fstat: the cap holds for what is read too.
    file.take(MAX_USER_DB + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if bytes.len() as u64 > MAX_USER_DB {
        return Err(SpecError::invalid(
            &field,
            format!("is more than the {MAX_USER_DB} bytes allowed"),
        ));
    }
    Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
}

fn to_id(field: &str, value: i64) -> Result<u32> {
    u32::try_from(value).map_err(|_| {
        SpecError::invalid(
            field,
            format!("{value} is not a valid id (0 to 4294967295)"),
        )
    })
}

fn push_unique(list: &mut Vec<u32>, id: u32) {
    if !list.contains(&id) {
        list.push(id);
    }
}

/// `name:password:uid:gid:gecos:home:shell`; malformed lines are skipped, as libc does.
fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    entries(text, 4)
        .filter_map(|f| {
            Some(PasswdEntry {
                name: f[0].to_string(),
                uid: f[2].trim().parse().ok()?,
                gid: f[3].trim().parse().ok()?,
                home: f.get(5).map(|s| s.to_string()).unwrap_or_default(),
            })
        })
        .collect()
}

/// `name:password:gid:member,member`; malformed lines are skipped.
fn parse_group(text: &str) -> Vec<GroupEntry> {
    entries(text, 3)
        .filter_map(|f| {
            Some(GroupEntry {
                name: f[0].to_string(),
                gid: f[2].trim().parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .map(str::trim)
                            .filter(|s| !s.is_empty())
                            .map(String::from)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// The colon-separated fields of each line of an /etc/passwd-style file that has a name
/// and at least `fields` fields; blank lines and comments are skipped.
fn entries(text: &str, fields: usize) -> impl Iterator<Item = Vec<&str>> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|line| line.split(':').collect::<Vec<_>>())
        .filter(move |f| f.len() >= fields && !f[0].is_empty())
}

#[cfg(test)]
pub(crate) mod tests;
