//! The Events actor: the one place that numbers events and hands them to subscribers.
//! A subscriber that cannot keep up is cut off and told the first sequence number it
//! missed ([`Error::Lagged`]); nothing is dropped silently.

use crate::error::{Error, Result};
use crate::types::{now_ns, Event, EventFilter};
use actix::prelude::*;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;

/// How many events may wait for one subscriber before it is cut off as lagging.
pub const SUBSCRIBER_BUFFER: usize = 4096;

/// Numbers events and fans them out.
#[derive(Default)]
pub struct Events {
    next_seq: u64,
    subscribers: Vec<Subscriber>,
    lagged_total: u64,
}

struct Subscriber {
    filter: EventFilter,
    tx: mpsc::Sender<Event>,
    lagged_at: Arc<AtomicU64>,
}

impl Actor for Events {
    type Context = Context<Self>;
}

/// Publishes one event; `seq` and `timestamp_ns` are filled in here.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Publish(pub Event);

/// Subscribes to the events that pass a filter, from now on.
#[derive(Message)]
#[rtype(result = "EventStream")]
pub struct Subscribe(pub EventFilter);

/// Counts of subscribers and of subscribers cut off for lagging.
#[derive(Message)]
#[rtype(result = "(usize, u64)")]
pub struct SubscriberCounts;

/// A subscriber's end: events in order, then `Err(Lagged)` if it fell behind.
pub struct EventStream {
    rx: mpsc::Receiver<Event>,
    lagged_at: Arc<AtomicU64>,
}

impl EventStream {
    /// The next event; `None` when the daemon is gone, `Err(Lagged)` once if it fell behind.
    pub async fn next(&mut self) -> Option<Result<Event>> {
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

    fn handle(&mut self, Publish(mut event): Publish, _: &mut Context<Self>) {
        self.next_seq += 1;
        event.seq = self.next_seq;
        event.timestamp_ns = now_ns();
        tracing::debug!(seq = event.seq, topic = %event.topic, ns = %event.namespace, id = %event.container_id, "event");
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
                seq = event.seq,
                "cut off event subscribers that could not keep up"
            );
        }
    }
}

impl Handler<Subscribe> for Events {
    type Result = MessageResult<Subscribe>;

    fn handle(&mut self, Subscribe(filter): Subscribe, _: &mut Context<Self>) -> Self::Result {
        let (tx, rx) = mpsc::channel(SUBSCRIBER_BUFFER);
        let lagged_at = Arc::new(AtomicU64::new(0));
        self.subscribers.push(Subscriber {
            filter,
            tx,
            lagged_at: lagged_at.clone(),
        });
        MessageResult(EventStream { rx, lagged_at })
    }
}

impl Handler<SubscriberCounts> for Events {
    type Result = MessageResult<SubscriberCounts>;

    fn handle(&mut self, _: SubscriberCounts, _: &mut Context<Self>) -> Self::Result {
        self.subscribers.retain(|s| !s.tx.is_closed());
        MessageResult((self.subscribers.len(), self.lagged_total))
    }
}
