//! One uvsd per file prefix and per control socket, and a clean start
//! after a crash.
//!
//! Why locks: two daemons on one EAL file prefix share hugepage files and a
//! runtime directory, and two on one socket answer each other's operators;
//! either way the second would harm the first before EAL or the socket
//! noticed (it opens the same tap devices, for one). So uvsd takes an
//! exclusive `flock` on a file derived from each, before EAL starts, and
//! holds both until it exits. The kernel drops a lock when its holder
//! dies, even by `kill -9`, so a lock is never stale.
//!
//! Why cleaning: a uvsd that was killed leaves its control socket, its EAL
//! runtime directory and, without `--huge-unlink`/`--in-memory`, its
//! hugepage files. Holding the prefix lock proves nobody uses them any
//! more, so they are removed before EAL starts: a restart needs no hand
//! work. Only this prefix's files are touched.

use std::fs::{File, OpenOptions};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

/// Where the prefix locks live.
const LOCK_DIR: &str = "/run/uvs";

/// The locks a running uvsd holds (released when dropped or at exit).
#[derive(Debug)]
pub struct Instance {
    _files: Vec<File>,
}

/// The EAL file prefix of `eal_args` (`rte` when not given).
pub fn file_prefix(eal_args: &[String]) -> String {
    crate::daemon::flag_value(eal_args, "--file-prefix").unwrap_or_else(|| "rte".into())
}

fn lock(path: &Path, what: &str) -> Result<File, String> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| format!("cannot open lock file {}: {e}", path.display()))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => Err(format!(
            "another uvsd is running with {what} (it holds {}); stop it first or configure another {what}",
            path.display()
        )),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(format!("cannot lock {}: {e}", path.display()))
        }
    }
}

/// The lock file of a control socket: beside it.
pub fn socket_lock_path(socket: &Path) -> PathBuf {
    let mut p = socket.as_os_str().to_owned();
    p.push(".lock");
    PathBuf::from(p)
}

/// The lock file of an EAL file prefix.
pub fn prefix_lock_path(prefix: &str) -> PathBuf {
    Path::new(LOCK_DIR).join(format!("dpdk-{prefix}.lock"))
}

/// Takes both locks, refuses a socket some other process serves, and
/// removes what a killed uvsd of the same prefix left behind.
pub fn claim(eal_args: &[String], socket: &Path) -> Result<Instance, String> {
    let prefix = file_prefix(eal_args);
    let by_prefix = lock(
        &prefix_lock_path(&prefix),
        &format!("file prefix {prefix:?}"),
    )?;
    let by_socket = lock(
        &socket_lock_path(socket),
        &format!("control socket {}", socket.display()),
    )?;
    // A daemon that takes no lock (another build) may still serve it.
    if UnixStream::connect(socket).is_ok() {
        return Err(format!(
            "control socket {} is in use by another running uvsd",
            socket.display()
        ));
    }
    remove_leftovers(eal_args, socket);
    Ok(Instance {
        _files: vec![by_prefix, by_socket],
    })
}

/// Removes a dead daemon's socket, runtime directory and hugepage files.
fn remove_leftovers(eal_args: &[String], socket: &Path) {
    let mut removed = vec![];
    if socket.exists() && std::fs::remove_file(socket).is_ok() {
        removed.push(socket.display().to_string());
    }
    if let Some(dir) = dataplane::dpdk::Eal::runtime_dir_for(eal_args) {
        if dir.exists() && std::fs::remove_dir_all(&dir).is_ok() {
            removed.push(dir.display().to_string());
        }
    }
    let n = crate::daemon::remove_hugepage_files(eal_args);
    if n > 0 {
        removed.push(format!("{n} hugepage file(s)"));
    }
    if !removed.is_empty() {
        crate::log_event!(
            crate::log::Level::Warn,
            "cleanup",
            detail = "removed what a previous uvsd left behind",
            removed = removed.join(", ")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_claim_of_a_held_lock_is_refused_and_the_first_is_untouched() {
        let dir = std::env::temp_dir().join(format!("uvs-inst-{}", std::process::id()));
        let p = dir.join("x.lock");
        let first = lock(&p, "file prefix \"t\"").unwrap();
        let e = lock(&p, "file prefix \"t\"").unwrap_err();
        assert!(
            e.contains("another uvsd is running with file prefix"),
            "{e}"
        );
        drop(first);
        assert!(lock(&p, "file prefix \"t\"").is_ok(), "released on drop");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn lock_paths_follow_the_socket_and_the_prefix() {
        assert_eq!(
            socket_lock_path(Path::new("/run/uvs/uvsadm.sock")),
            PathBuf::from("/run/uvs/uvsadm.sock.lock")
        );
        assert_eq!(
            prefix_lock_path("uvs1"),
            PathBuf::from("/run/uvs/dpdk-uvs1.lock")
        );
        assert_eq!(file_prefix(&["--file-prefix=a".into()]), "a");
        assert_eq!(file_prefix(&["--file-prefix".into(), "b".into()]), "b");
        assert_eq!(file_prefix(&[]), "rte");
    }
}
