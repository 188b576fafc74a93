//! The results store: `STORE/<test-name>/<timestamp>[-n]/`, one folder per run, and the
//! `STORE/latest` link to the newest.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Why the run folder could not be made.
#[derive(Debug, thiserror::Error)]
#[error("{what} {}: {source}", path.display())]
pub struct StoreError {
    what: &'static str,
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

impl StoreError {
    pub fn new(what: &'static str, path: &Path, source: std::io::Error) -> Self {
        Self {
            what,
            path: path.to_path_buf(),
            source,
        }
    }
}

fn err(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StoreError {
    let path = path.to_path_buf();
    move |source| StoreError { what, path, source }
}

/// Creates a new, unique `STORE/<name>/<timestamp>[-n]/` (with `nodes/` inside) and points
/// `STORE/latest` at it.
///
/// Unique even when runs start at once: each candidate is claimed with one `mkdir`, which
/// fails if the folder exists, so two runs can never both get it (checking first and
/// creating after, as before, let two runs in the same second share a folder). The link
/// is replaced by renaming a fresh one over it, so `latest` always exists and names a
/// whole run folder.
pub fn create_run_dir(
    store: &Path,
    name: &str,
    started: SystemTime,
) -> Result<PathBuf, StoreError> {
    let stamp: String = humantime::format_rfc3339_seconds(started)
        .to_string()
        .chars()
        .filter(|c| *c != ':' && *c != '-')
        .collect();
    let parent = store.join(name);
    std::fs::create_dir_all(&parent).map_err(err("creating", &parent))?;
    let mut n = 1u32;
    let dir = loop {
        let dir = if n == 1 {
            parent.join(&stamp)
        } else {
            parent.join(format!("{stamp}-{n}"))
        };
        match std::fs::create_dir(&dir) {
            Ok(()) => break dir,
            Err(e) if e.kind() == ErrorKind::AlreadyExists && n < 100_000 => n += 1,
            Err(e) => return Err(err("creating", &dir)(e)),
        }
    };
    let nodes = dir.join("nodes");
    std::fs::create_dir(&nodes).map_err(err("creating", &nodes))?;
    let latest = store.join("latest");
    let target = dir.strip_prefix(store).unwrap_or(&dir);
    let fresh = store.join(format!(
        ".latest.{}.{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::os::unix::fs::symlink(target, &fresh).map_err(err("linking", &fresh))?;
    std::fs::rename(&fresh, &latest).map_err(|e| {
        let _ = std::fs::remove_file(&fresh);
        err("linking", &latest)(e)
    })?;
    Ok(dir)
}

/// How the results folder is named where the user looks at it: inside the compose
/// file's `test` service the store is `/store`, a bind mount of `./store` on the host,
/// and the compose file says so in this variable.
pub const SHOWN_AS_ENV: &str = "FAULTLINE_STORE_ON_HOST";

/// Who the results belong to: `UID:GID`, or (`FAULTLINE_OWNER_OF`) a path whose owner
/// they go to — the compose file names the clone the user ran it from.
pub const OWNER_ENV: &str = "FAULTLINE_OWNER";
pub const OWNER_OF_ENV: &str = "FAULTLINE_OWNER_OF";

/// `path` (inside `store`) as the user sees it (see [`SHOWN_AS_ENV`]); `path` itself
/// when the variable is unset or `path` is elsewhere.
pub fn shown(store: &Path, path: &Path) -> PathBuf {
    match std::env::var_os(SHOWN_AS_ENV) {
        Some(host) if !host.is_empty() => match path.strip_prefix(store) {
            Ok(rest) => PathBuf::from(host).join(rest),
            Err(_) => path.to_path_buf(),
        },
        _ => path.to_path_buf(),
    }
}

fn owner() -> Option<(u32, u32)> {
    // Empty counts as unset: the compose file passes `${FAULTLINE_OWNER:-}` through.
    if let Some(v) = std::env::var(OWNER_ENV)
        .ok()
        .filter(|v| !v.trim().is_empty())
    {
        let (u, g) = v.split_once(':').unwrap_or((&v, &v));
        return Some((u.trim().parse().ok()?, g.trim().parse().ok()?));
    }
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(std::env::var_os(OWNER_OF_ENV)?).ok()?;
    Some((meta.uid(), meta.gid()))
}

/// Gives whatever a root harness made under `store` (root-owned entries) to the invoking
/// user (see [`OWNER_ENV`]), whatever way the run ended; a no-op when no owner is named
/// or it is root. Failures are warnings: the verdict stands.
pub fn hand_over(store: &Path) {
    let Some((uid, gid)) = owner().filter(|(u, _)| *u != 0) else {
        return;
    };
    fn walk(path: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
        use std::os::unix::fs::MetadataExt;
        let meta = path.symlink_metadata()?;
        if meta.uid() == 0 {
            std::os::unix::fs::lchown(path, Some(uid), Some(gid))?;
        }
        if meta.is_dir() {
            for entry in std::fs::read_dir(path)? {
                walk(&entry?.path(), uid, gid)?;
            }
        }
        Ok(())
    }
    if let Err(e) = walk(store, uid, gid) {
        eprintln!(
            "faultline run: warning: giving {} to {uid}:{gid}: {e}",
            store.display()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Barrier};

    #[test]
    fn runs_started_at_once_get_distinct_folders() {
        let store = tempfile::tempdir().unwrap();
        let started = SystemTime::now();
        let threads = 16;
        let barrier = Arc::new(Barrier::new(threads));
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let (store, barrier) = (store.path().to_path_buf(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    create_run_dir(&store, "t", started).unwrap()
                })
            })
            .collect();
        let mut dirs: Vec<PathBuf> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        dirs.sort();
        dirs.dedup();
        assert_eq!(dirs.len(), threads, "two runs shared a folder");
        assert!(dirs.iter().all(|d| d.join("nodes").is_dir()));
        let latest = std::fs::canonicalize(store.path().join("latest")).unwrap();
        assert!(dirs.contains(&latest));
        // No temporary links are left behind.
        let names: Vec<String> = std::fs::read_dir(store.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }
}
