//! The Events actor: the one place that numbers events, journals them and hands them to
//! subscribers. A subscriber may first replay the journal (`since`), then follows live
//! events with no gap and no duplicate. A subscriber that cannot keep up is cut off and
//! told the first sequence number it missed ([`Error::Lagged`]), so it can resume from
//! there; nothing is dropped silently, and the daemon counts such subscribers. A `since`
//! older than the journal keeps is told too ([`Error::Truncated`], before the replay).

use crate::error::{Error, Result};
use crate::journal::{self, Journal};
use crate::types::{now_ns, Event, EventFilter, Since};
use actix::prelude::*;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;

/// How many events may wait for one subscriber before it is cut off as lagging.
pub const SUBSCRIBER_BUFFER: usize = 4096;

/// Numbers, journals and fans out events.
pub struct Events {
    next_seq: u64,
    journal: Option<Journal>,
    journal_dir: Option<PathBuf>,
    subscribers: Vec<Subscriber>,
    lagged_total: u64,
    pending_marks: Vec<(PathBuf, u32)>,
}

/// How long `exit.published` markers wait, so that subscribers are served first.
const MARK_DELAY: std::time::Duration = std::time::Duration::from_millis(1);

struct Subscriber {
    filter: EventFilter,
    tx: mpsc::Sender<Event>,
    lagged_at: Arc<AtomicU64>,
}

impl Events {
    /// Events numbered from `last_seq + 1`, journaled to `journal` if given.
    pub fn new(journal: Option<(Journal, PathBuf)>, last_seq: u64) -> Self {
        let (journal, journal_dir) = match journal {
            Some((j, d)) => (Some(j), Some(d)),
            None => (None, None),
        };
        Events {
            next_seq: last_seq + 1,
            journal,
            journal_dir,
            subscribers: Vec::new(),
            lagged_total: 0,
            pending_marks: Vec::new(),
        }
    }

    fn write_marks(&mut self) {
        for (mark, pid) in self.pending_marks.drain(..) {
            match std::fs::write(&mark, pid.to_string()) {
                Ok(()) => {}
                // Deleted (or restarted) meanwhile: nothing left to mark.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!("cannot write {}: {e}", mark.display()),
            }
        }
    }
}

impl Actor for Events {
    type Context = Context<Self>;
}

/// Publishes one event; `seq` and `timestamp_ns` are filled in here. `mark`, if given, is
/// a file created once the event is in the journal (a process's `exit.published`).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Publish {
    /// The event.
    pub event: Event,
    /// A marker file to create after journaling.
    pub mark: Option<PathBuf>,
}

/// Subscribes to the events that pass a filter.
#[derive(Message)]
#[rtype(result = "EventStream")]
pub struct Subscribe(pub EventFilter);

/// Counts of live subscribers, of subscribers cut off for lagging, and the last sequence
/// number.
#[derive(Message)]
#[rtype(result = "(usize, u64, u64)")]
pub struct SubscriberCounts;

/// A subscriber's end: `Err(Truncated)` if the journal no longer holds what `since` asked
/// for, replayed events, then live ones, then `Err(Lagged)` if it fell behind.
pub struct EventStream {
    replay: Option<(PathBuf, Since, u64)>,
    replayed: VecDeque<Event>,
    filter: EventFilter,
    rx: mpsc::Receiver<Event>,
    lagged_at: Arc<AtomicU64>,
}

impl EventStream {
    /// The next event; `None` when the daemon is gone, `Err(Lagged)` once if it fell behind
    /// (the end). First, `Err(Truncated)` once if `since` asked for events rotated out of
    /// the journal: not an end, the replay follows.
    pub async fn next(&mut self) -> Option<Result<Event>> {
        if let Some((dir, since, until)) = self.replay.take() {
            let read =
                actix_rt::task::spawn_blocking(move || journal::replay_told(&dir, since, until));
            let replay = read.await.unwrap_or_default();
            self.replayed = replay
                .events
                .into_iter()
                .filter(|e| self.filter.matches(e))
                .collect();
            if let Some(first_kept) = replay.truncated {
                return Some(Err(Error::Truncated {
                    first_kept,
                    asked: since,
                }));
            }
        }
        if let Some(e) = self.replayed.pop_front() {
            return Some(Ok(e));
        }
        match self.rx.recv().await {
            Some(event) => Some(Ok(event)),
            None => match self.lagged_at.swap(0, Ordering::SeqCst) {
                0 => None,
                first_missed => Some(Err(Error::Lagged { first_missed })),
            },
        }
    }
}

impl Handler<Publish> for Events {
    type Result = ();

    fn handle(&mut self, Publish { mut event, mark }: Publish, ctx: &mut Context<Self>) {
        event.seq = self.next_seq;
        self.next_seq += 1;
        event.timestamp_ns = now_ns();
        tracing::debug!(seq = event.seq, topic = %event.topic, ns = %event.namespace, id = %event.container_id, "event");
        let mut journaled = self.journal.is_none();
        if let Some(journal) = &mut self.journal {
            match journal.append(&event) {
                Ok(()) => journaled = true,
                Err(e) => tracing::error!(seq = event.seq, "cannot journal event: {e}"),
            }
        }
        let mut lagged = 0;
        self.subscribers.retain(|sub| {
            if !sub.filter.matches(&event) {
                return !sub.tx.is_closed();
            }
            match sub.tx.try_send(event.clone()) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    sub.lagged_at.store(event.seq, Ordering::SeqCst);
                    lagged += 1;
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
        if lagged > 0 {
            self.lagged_total += lagged;
            tracing::warn!(
                lagged,
                first_missed = event.seq,
                "cut off event subscribers that could not keep up"
            );
        }
        // Only what is in the journal counts as published across a daemon restart. The
        // marker comes after the subscribers are served: it is for restarts, not for them.
        // Creating a file can take most of a millisecond on a disk filesystem: markers are
        // written a moment later, once the subscribers' writers (same thread) have run. The
        // marker holds the pid it is for, so a late one is never taken for a later run's.
        if let Some(mark) = mark.filter(|_| journaled) {
            self.pending_marks.push((mark, event.pid.unwrap_or(0)));
            if self.pending_marks.len() == 1 {
                ctx.run_later(MARK_DELAY, |act, _| act.write_marks());
            }
        }
    }
}

impl Handler<Subscribe> for Events {
    type Result = MessageResult<Subscribe>;

    fn handle(&mut self, Subscribe(filter): Subscribe, _: &mut Context<Self>) -> Self::Result {
        let (tx, rx) = mpsc::channel(SUBSCRIBER_BUFFER);
        let lagged_at = Arc::new(AtomicU64::new(0));
        // Everything below next_seq is in the journal already; everything from it on will be
        // sent live: the replay and the live stream meet with no gap and no overlap.
        let replay = match (filter.since, &self.journal_dir) {
            (Some(since), Some(dir)) => Some((dir.clone(), since, self.next_seq)),
            _ => None,
        };
        self.subscribers.push(Subscriber {
            filter: filter.clone(),
            tx,
            lagged_at: lagged_at.clone(),
        });
        MessageResult(EventStream {
            replay,
            replayed: VecDeque::new(),
            filter,
            rx,
            lagged_at,
        })
    }
}

impl Handler<SubscriberCounts> for Events {
    type Result = MessageResult<SubscriberCounts>;

    fn handle(&mut self, _: SubscriberCounts, _: &mut Context<Self>) -> Self::Result {
        self.subscribers.retain(|s| !s.tx.is_closed());
        MessageResult((self.subscribers.len(), self.lagged_total, self.next_seq - 1))
    }
}
