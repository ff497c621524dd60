//! One epoll set for every container's OOM notifier (a cgroup v1 eventfd, a v2 inotify
//! descriptor). A container keeps its descriptor in an [`OomRegistration`]; the set keeps,
//! by the descriptor's number (unique while it is open, and it leaves the set before it
//! closes), the container's address, and one task waits on the set and tells each
//! container whose descriptor turned readable ([`OomWoken`]).
//!
//! A watch of its own per container (a future on its context and a tokio registration of
//! its descriptor) cost about 480 bytes of the daemon's heap; an entry here is a weak
//! address (one pointer: it keeps no container alive) and the map's slot, about 40 bytes,
//! and a container's registration its descriptor and the set's pointer.

use super::Container;
use actix::prelude::*;
use actix::WeakAddr;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex};
use tokio::io::unix::AsyncFd;

/// Tells a container that its OOM notifier fired (and was drained).
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct OomWoken;

/// The daemon's one set of OOM notifiers.
pub struct OomSet {
    epoll: AsyncFd<EpollFd>,
    entries: Mutex<HashMap<RawFd, WeakAddr<Container>>>,
}

/// The epoll descriptor, as tokio's `AsyncFd` wants it.
struct EpollFd(Epoll);

impl AsRawFd for EpollFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0 .0.as_raw_fd()
    }
}

impl OomSet {
    /// A new set, and the task that serves it on the current arbiter (it ends with the
    /// arbiter's runtime).
    pub fn start() -> std::io::Result<Arc<OomSet>> {
        let epoll = EpollFd(Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?);
        // SAFETY: the epoll descriptor moves into the AsyncFd and is open as long as it.
        let epoll =
            unsafe { AsyncFd::register_with_interest(epoll, tokio::io::Interest::READABLE) }?;
        let set = Arc::new(OomSet {
            epoll,
            entries: Mutex::new(HashMap::new()),
        });
        actix_rt::spawn(serve(set.clone()));
        Ok(set)
    }

    /// Watches `fd` (non-blocking; it stays the caller's) for `container`; dropping the
    /// returned registration ends the watch and closes `fd`.
    pub(super) fn add(
        self: &Arc<Self>,
        fd: OwnedFd,
        container: WeakAddr<Container>,
    ) -> std::io::Result<OomRegistration> {
        let raw = fd.as_raw_fd();
        self.entries().insert(raw, container);
        let event = EpollEvent::new(EpollFlags::EPOLLIN, raw as u64);
        if let Err(e) = self.epoll.get_ref().0.add(fd.as_fd(), event) {
            self.entries().remove(&raw);
            return Err(e.into());
        }
        Ok(OomRegistration {
            set: self.clone(),
            fd,
        })
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<RawFd, WeakAddr<Container>>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A container's place in the [`OomSet`]: its notifier, watched until this is dropped.
pub(super) struct OomRegistration {
    set: Arc<OomSet>,
    fd: OwnedFd,
}

impl Drop for OomRegistration {
    fn drop(&mut self) {
        // Out of the epoll set and the map before the descriptor closes (the number may be
        // reused at once).
        let _ = self.set.epoll.get_ref().0.delete(self.fd.as_fd());
        self.set.entries().remove(&self.fd.as_raw_fd());
    }
}

/// The set's task: waits until some notifier is readable, drains each readable one and
/// tells its container.
async fn serve(set: Arc<OomSet>) {
    let mut events = [EpollEvent::empty(); 64];
    loop {
        let Ok(mut guard) = set.epoll.readable().await else {
            tracing::error!(
                "the OOM watch set can no longer be polled: OOM kills are found only at exits"
            );
            return;
        };
        let n = match set.epoll.get_ref().0.wait(&mut events, EpollTimeout::ZERO) {
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                tracing::error!("the OOM watch set: epoll_wait: {e}");
                return;
            }
        };
        if n == 0 {
            guard.clear_ready();
            continue;
        }
        let entries = set.entries();
        for event in &events[..n] {
            let fd = event.data() as RawFd;
            if let Some(container) = entries.get(&fd) {
                // SAFETY: the registration holding `fd` removes it from the map (under this
                // lock) before it closes it, so it is open while we hold the lock.
                drain(unsafe { BorrowedFd::borrow_raw(fd) });
                if let Some(container) = container.upgrade() {
                    container.do_send(OomWoken);
                }
            }
        }
    }
}

/// Reads an eventfd or inotify descriptor (non-blocking) until it has nothing more. Its
/// buffer (room for inotify events) lives on this call's stack.
fn drain(fd: BorrowedFd<'_>) {
    let mut buf = [0u8; 4096];
    loop {
        match nix::unistd::read(fd.as_raw_fd(), &mut buf) {
            Ok(n) if n > 0 => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            _ => return,
        }
    }
}

impl Handler<OomWoken> for Container {
    type Result = ();

    fn handle(&mut self, _: OomWoken, ctx: &mut Context<Self>) {
        self.oom_woken(0, ctx);
    }
}
