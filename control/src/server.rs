//! The control socket server, run by uvsd's control thread.
//!
//! Why threads and not an event loop: the control plane handles a handful of
//! operators and scripts, and each request is short. A thread per client,
//! bounded in number and with read deadlines, keeps the code obvious while
//! meeting the two rules that matter: a slow or silent client never blocks
//! the others, and nothing a client sends can wedge or crash the daemon.
//! The [`Executor`] serialises configuration changes itself, so each command
//! is validated and applied atomically.
//!
//! The socket is created mode 0600 (root only) unless a group is configured,
//! then 0660 owned by that group. A stale socket file from a previous run is
//! replaced; a socket another live daemon is serving is not.
//!
//! Stopping never depends on the socket's file: the accept thread is woken
//! by shutting its listening socket down (Linux then fails the blocked
//! `accept` with EINVAL), so a daemon whose socket file was removed by
//! someone else still stops at once.

use std::fs;
use std::io;
use std::net::Shutdown;
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crate::proto::{read_frame, write_frame, FrameError, Request, Response, MAX_REQUEST};

/// Executes one request. Implemented by the daemon (and by tests).
///
/// Called from several client threads at once: the implementation
/// serialises changes itself, and should hold its lock only while it reads
/// or changes state, not while it formats output or resolves names (a slow
/// reverse lookup for one `-L` must not hold up other clients).
pub trait Executor: Send + Sync {
    fn execute(&self, req: &Request) -> Response;
}

impl<E: Executor + ?Sized> Executor for Arc<E> {
    fn execute(&self, req: &Request) -> Response {
        (**self).execute(req)
    }
}

/// Server limits.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Clients served at once; more are answered "busy" and closed.
    pub max_clients: usize,
    /// How long a client may take to send a frame once connected or between
    /// requests before it is disconnected.
    pub idle_timeout: Duration,
    /// Largest request accepted.
    pub max_request: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_clients: 64,
            idle_timeout: Duration::from_secs(10),
            max_request: MAX_REQUEST,
        }
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Another process already serves this socket.
    #[error("control socket {0} is in use by another running uvsd")]
    InUse(PathBuf),
    /// The configured group does not exist.
    #[error("control socket group '{0}' does not exist")]
    NoGroup(String),
    #[error("control socket {0}: {1}")]
    Io(PathBuf, io::Error),
}

/// A running control server. Dropping it stops accepting and removes the
/// socket file.
pub struct Server {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    accept: Option<thread::JoinHandle<()>>,
    /// The listening socket (a second handle), to wake the accept thread.
    waker: Option<UnixStream>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("path", &self.path).finish()
    }
}

/// Looks a group name up in /etc/group (no libc call needed).
fn group_id(name: &str) -> Option<u32> {
    let text = fs::read_to_string("/etc/group").ok()?;
    text.lines().find_map(|l| {
        let mut f = l.split(':');
        let n = f.next()?;
        let _pw = f.next()?;
        let gid = f.next()?;
        (n == name).then(|| gid.parse().ok()).flatten()
    })
}

impl Server {
    /// Binds `path` and starts serving with `exec`.
    pub fn start<E: Executor + 'static>(
        path: &Path,
        group: Option<&str>,
        limits: Limits,
        exec: E,
    ) -> Result<Server, ServerError> {
        let io_err = |e| ServerError::Io(path.to_path_buf(), e);
        let gid = match group {
            Some(g) => Some(group_id(g).ok_or_else(|| ServerError::NoGroup(g.to_string()))?),
            None => None,
        };
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                fs::create_dir_all(dir).map_err(io_err)?;
            }
        }
        if path.exists() {
            if UnixStream::connect(path).is_ok() {
                return Err(ServerError::InUse(path.to_path_buf()));
            }
            fs::remove_file(path).map_err(io_err)?;
        }
        let listener = UnixListener::bind(path).map_err(io_err)?;
        let mode = if gid.is_some() { 0o660 } else { 0o600 };
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(io_err)?;
        if let Some(gid) = gid {
            std::os::unix::fs::chown(path, None, Some(gid)).map_err(io_err)?;
        }

        // `shutdown(2)` is what wakes a blocked accept; std offers it on
        // streams only, and a stream over the listening descriptor is
        // used for nothing else.
        let waker = UnixStream::from(OwnedFd::from(listener.try_clone().map_err(io_err)?));
        let stop = Arc::new(AtomicBool::new(false));
        let exec: Arc<dyn Executor> = Arc::new(exec);
        let active = Arc::new(AtomicUsize::new(0));
        let stop2 = stop.clone();
        let accept = thread::Builder::new()
            .name("uvs-control".into())
            .spawn(move || accept_loop(listener, stop2, exec, active, limits))
            .map_err(io_err)?;
        Ok(Server {
            path: path.to_path_buf(),
            stop,
            accept: Some(accept),
            waker: Some(waker),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops accepting, waits for the accept thread and removes the socket.
    pub fn stop(&mut self) {
        if let Some(h) = self.accept.take() {
            self.stop.store(true, Ordering::SeqCst);
            // Wake the blocking accept(), whether or not the socket's file
            // still exists.
            if let Some(w) = self.waker.take() {
                let _ = w.shutdown(Shutdown::Both);
            }
            let _ = h.join();
            let _ = fs::remove_file(&self.path);
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn accept_loop(
    listener: UnixListener,
    stop: Arc<AtomicBool>,
    exec: Arc<dyn Executor>,
    active: Arc<AtomicUsize>,
    limits: Limits,
) {
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(mut stream) = conn else { continue };
        if active.load(Ordering::SeqCst) >= limits.max_clients {
            let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
            let _ = write_frame(
                &mut stream,
                &Response::err(2, "uvsd: too many control clients, try again\n"),
            );
            continue;
        }
        active.fetch_add(1, Ordering::SeqCst);
        let exec = exec.clone();
        let active2 = active.clone();
        let limits = limits.clone();
        let spawned = thread::Builder::new()
            .name("uvs-client".into())
            .spawn(move || {
                serve_client(stream, &exec, &limits);
                active2.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            active.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

fn serve_client(mut stream: UnixStream, exec: &Arc<dyn Executor>, limits: &Limits) {
    let _ = stream.set_read_timeout(Some(limits.idle_timeout));
    let _ = stream.set_write_timeout(Some(limits.idle_timeout));
    loop {
        let resp = match read_frame::<_, Request>(&mut stream, limits.max_request) {
            Ok(req) => exec.execute(&req),
            Err(FrameError::Closed) => return,
            Err(FrameError::TooLarge(n, limit)) => {
                let _ = write_frame(
                    &mut stream,
                    &Response::err(
                        2,
                        format!("uvsd: request of {n} bytes exceeds the limit of {limit} bytes\n"),
                    ),
                );
                return;
            }
            Err(FrameError::Malformed(e)) => Response::err(2, format!("uvsd: bad request: {e}\n")),
            Err(FrameError::Io(_)) => return, // timeout or reset: drop the client
        };
        if write_frame(&mut stream, &resp).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{write_frame, MAX_RESPONSE};
    use std::io::Write;

    struct Echo;
    impl Executor for Echo {
        fn execute(&self, req: &Request) -> Response {
            Response::ok(req.argv.join(" "))
        }
    }

    fn sock(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("uvs-srv-{}-{name}", std::process::id()));
        dir.join("ctl.sock")
    }

    fn call(path: &Path, argv: &[&str]) -> Response {
        let mut s = UnixStream::connect(path).unwrap();
        let req = Request {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            stdin: None,
            tool: Default::default(),
        };
        write_frame(&mut s, &req).unwrap();
        read_frame(&mut s, MAX_RESPONSE).unwrap()
    }

    #[test]
    fn socket_is_root_only_and_answers() {
        let p = sock("perm");
        let mut srv = Server::start(&p, None, Limits::default(), Echo).unwrap();
        let mode = fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(call(&p, &["-L", "-n"]).stdout, "-L -n");
        srv.stop();
        assert!(!p.exists(), "socket removed on stop");
    }

    #[test]
    fn stop_finishes_when_the_socket_file_was_removed() {
        let p = sock("removed");
        let mut srv = Server::start(&p, None, Limits::default(), Echo).unwrap();
        assert_eq!(call(&p, &["-v"]).stdout, "-v");
        fs::remove_file(&p).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        thread::spawn(move || {
            srv.stop();
            let _ = tx.send(());
        });
        // Before the fix this waited forever: nothing could connect to wake
        // the accept thread.
        assert!(
            rx.recv_timeout(Duration::from_secs(30)).is_ok(),
            "stop() did not return"
        );
    }

    #[test]
    fn a_second_server_on_a_live_socket_is_refused() {
        let p = sock("inuse");
        let _srv = Server::start(&p, None, Limits::default(), Echo).unwrap();
        let r = Server::start(&p, None, Limits::default(), Echo);
        assert!(matches!(r, Err(ServerError::InUse(_))));
    }

    #[test]
    fn unknown_group_is_refused() {
        let p = sock("grp");
        let r = Server::start(&p, Some("no-such-group-uvs"), Limits::default(), Echo);
        assert!(matches!(r, Err(ServerError::NoGroup(_))));
    }

    #[test]
    fn a_silent_client_does_not_block_others() {
        let p = sock("silent");
        let limits = Limits {
            idle_timeout: Duration::from_secs(30),
            ..Limits::default()
        };
        let _srv = Server::start(&p, None, limits, Echo).unwrap();
        // Connects, sends half a length prefix, then stays silent.
        let mut silent = UnixStream::connect(&p).unwrap();
        silent.write_all(&[0, 0]).unwrap();
        // If the silent client blocked the server, this read would time out
        // (well before the server's 30 s idle limit frees it) and fail.
        let mut s = UnixStream::connect(&p).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let req = Request {
            argv: vec!["-v".into()],
            stdin: None,
            tool: Default::default(),
        };
        write_frame(&mut s, &req).unwrap();
        let r: Response = read_frame(&mut s, MAX_RESPONSE).unwrap();
        assert_eq!(r.stdout, "-v");
        drop(silent);
    }

    #[test]
    fn many_concurrent_clients_are_all_answered() {
        let p = sock("many");
        let _srv = Server::start(&p, None, Limits::default(), Echo).unwrap();
        let handles: Vec<_> = (0..32)
            .map(|i| {
                let p = p.clone();
                thread::spawn(move || call(&p, &["-L", &i.to_string()]))
            })
            .collect();
        for (i, h) in handles.into_iter().enumerate() {
            assert_eq!(h.join().unwrap().stdout, format!("-L {i}"));
        }
    }

    #[test]
    fn oversized_and_malformed_requests_get_errors() {
        let p = sock("bad");
        let limits = Limits {
            max_request: 64,
            ..Limits::default()
        };
        let _srv = Server::start(&p, None, limits, Echo).unwrap();
        let mut s = UnixStream::connect(&p).unwrap();
        s.write_all(&1000u32.to_be_bytes()).unwrap();
        let r: Response = read_frame(&mut s, MAX_RESPONSE).unwrap();
        assert_eq!(r.code, 2);
        assert!(r.stderr.contains("exceeds the limit"), "{}", r.stderr);

        let mut s = UnixStream::connect(&p).unwrap();
        s.write_all(&5u32.to_be_bytes()).unwrap();
        s.write_all(b"nope!").unwrap();
        let r: Response = read_frame(&mut s, MAX_RESPONSE).unwrap();
        assert_eq!(r.code, 2);
        assert!(r.stderr.contains("bad request"), "{}", r.stderr);
        // The same connection still works afterwards.
        let req = Request {
            argv: vec!["-v".into()],
            stdin: None,
            tool: Default::default(),
        };
        write_frame(&mut s, &req).unwrap();
        let r: Response = read_frame(&mut s, MAX_RESPONSE).unwrap();
        assert_eq!(r.stdout, "-v");
    }
}
