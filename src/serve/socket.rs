//! Where the server's socket lives and who may open it: the default path, the private
//! directory around it, a stale socket replaced and a live one refused, the file mode
//! (0600, or 0660 for `--group`), and the names of users and groups (from /etc/passwd and
//! /etc/group, which is all lookout needs of NSS).

use std::io::ErrorKind;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// `$XDG_RUNTIME_DIR/lookout/lookout.sock`, else `/tmp/lookout-$UID/lookout.sock`.
pub fn default_path() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir).join("lookout").join("lookout.sock"),
        None => {
            PathBuf::from(format!("/tmp/lookout-{}", rustix::process::getuid().as_raw())).join("lookout.sock")
        }
    }
}

/// A Unix group the socket is shared with.
#[derive(Debug, Clone)]
pub struct Group {
    pub name: String,
    pub gid: u32,
    /// Users listed as members in /etc/group (besides those whose primary group it is).
    pub members: Vec<String>,
}

impl Group {
    pub fn lookup(name: &str) -> anyhow::Result<Group> {
        let text = std::fs::read_to_string("/etc/group").context("cannot read /etc/group")?;
        for line in text.lines() {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() >= 4 && f[0] == name {
                let gid = f[2]
                    .parse()
                    .with_context(|| format!("bad gid of group {name} in /etc/group"))?;
                let members = f[3]
                    .split(',')
                    .filter(|m| !m.is_empty())
                    .map(str::to_string)
                    .collect();
                return Ok(Group {
                    name: name.to_string(),
                    gid,
                    members,
                });
            }
        }
        bail!("no group named `{name}` in /etc/group")
    }
}

/// The login name of a uid (from /etc/passwd), else `uid N`.
pub fn user_name(uid: u32) -> String {
    let text = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    text.lines()
        .find_map(|line| {
            let mut f = line.split(':');
            let name = f.next()?;
            let id: u32 = f.nth(1)?.parse().ok()?;
            (id == uid).then(|| name.to_string())
        })
        .unwrap_or_else(|| format!("uid {uid}"))
}

/// Creates the socket's directory when it is missing: 0700, or 0750 owned by the group.
/// An existing default directory must be ours and closed to others (a directory someone
/// else made in /tmp could let them swap the socket).
fn prepare_dir(dir: &Path, group: Option<&Group>, is_default: bool) -> anyhow::Result<()> {
    let mode = if group.is_some() { 0o750 } else { 0o700 };
    match std::fs::symlink_metadata(dir) {
        Ok(meta) => {
            if is_default {
                let me = rustix::process::getuid().as_raw();
                if !meta.is_dir() || meta.uid() != me || meta.mode() & 0o022 != 0 {
                    bail!(
                        "{} is not a private directory of this user (owner uid {}, mode {:o}); remove it or pass --socket",
                        dir.display(),
                        meta.uid(),
                        meta.mode() & 0o7777
                    );
                }
                if group.is_some() {
                    set_mode(dir, mode, group)?;
                }
            }
            Ok(())
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {
            if let Some(parent) = dir.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("cannot create {}", parent.display()))?;
            }
            std::fs::create_dir(dir).with_context(|| format!("cannot create {}", dir.display()))?;
            set_mode(dir, mode, group)
        }
        Err(e) => Err(e).with_context(|| format!("cannot look at {}", dir.display())),
    }
}

fn set_mode(path: &Path, mode: u32, group: Option<&Group>) -> anyhow::Result<()> {
    if let Some(g) = group {
        rustix::fs::chown(path, None, Some(rustix::fs::Gid::from_raw(g.gid)))
            .with_context(|| format!("cannot give {} to group {}", path.display(), g.name))?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot set the mode of {}", path.display()))
}

/// Binds the server's socket at `path`: a stale socket (nobody answers) is replaced, a live
/// one is an error, and the socket is created with no access for others from the start.
pub fn bind(path: &Path, group: Option<&Group>) -> anyhow::Result<tokio::net::UnixListener> {
    let is_default = path == default_path();
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        prepare_dir(dir, group, is_default)?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) => {
            use std::os::unix::fs::FileTypeExt;
            if !meta.file_type().is_socket() {
                bail!("{} exists and is not a socket; not replacing it", path.display());
            }
            match std::os::unix::net::UnixStream::connect(path) {
                Ok(_) => bail!(
                    "a lookout server is already running on {} (stop it, or pass another --socket)",
                    path.display()
                ),
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
                    log::info!("replacing the stale socket {}", path.display());
                    std::fs::remove_file(path)
                        .with_context(|| format!("cannot remove {}", path.display()))?;
                }
                Err(e) => bail!("{} exists and cannot be checked: {e}", path.display()),
            }
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot look at {}", path.display())),
    }
    // The socket gets its mode from the umask at bind: nobody else may open it even for a
    // moment before the chmod.
    let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o177));
    let bound = std::os::unix::net::UnixListener::bind(path);
    rustix::process::umask(old);
    let listener = bound.with_context(|| format!("cannot listen on {}", path.display()))?;
    set_mode(path, if group.is_some() { 0o660 } else { 0o600 }, group)?;
    listener.set_nonblocking(true)?;
    Ok(tokio::net::UnixListener::from_std(listener)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_root() {
        assert_eq!(user_name(0), "root");
        assert_eq!(user_name(4_000_000_000), "uid 4000000000");
        assert_eq!(Group::lookup("root").expect("root group").gid, 0);
        assert!(
            Group::lookup("no-such-group-x")
                .unwrap_err()
                .to_string()
                .contains("no group named")
        );
    }

    #[tokio::test]
    async fn stale_replaced_live_refused_mode_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub").join("s.sock");
        let live = bind(&path, None).expect("binds");
        let mode = std::fs::metadata(&path).expect("meta").mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dmode = std::fs::metadata(path.parent().expect("dir"))
            .expect("meta")
            .mode()
            & 0o777;
        assert_eq!(dmode, 0o700);
        let err = bind(&path, None).unwrap_err().to_string();
        assert!(err.contains("already running"), "{err}");
        drop(live);
        // The file is still there, nobody answers: replaced.
        assert!(path.exists());
        let _again = bind(&path, None).expect("stale socket replaced");
        let file = dir.path().join("plain");
        std::fs::write(&file, "x").expect("write");
        let err = bind(&file, None).unwrap_err().to_string();
        assert!(err.contains("not a socket"), "{err}");
    }
}
