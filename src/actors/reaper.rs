//! The Reaper actor: turns SIGCHLD into [`crate::reaper::reap_registered`] calls.

use actix::prelude::*;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;
use tokio::signal::unix::{signal, Signal, SignalKind};

/// Reaps the daemon's registered children whenever SIGCHLD arrives.
#[derive(Default)]
pub struct Reaper;

struct SigchldStream(Signal);

impl Stream for SigchldStream {
    type Item = ();
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<()>> {
        self.0.poll_recv(cx)
    }
}

impl Actor for Reaper {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        match signal(SignalKind::child()) {
            Ok(sig) => {
                ctx.add_stream(SigchldStream(sig));
            }
            Err(e) => tracing::error!("cannot watch SIGCHLD ({e}); reaping once a second"),
        }
        // Insurance only: every registration already reaps once, and every SIGCHLD reaps all.
        ctx.run_interval(Duration::from_secs(1), |_, _| {
            crate::reaper::reap_registered()
        });
    }
}

impl StreamHandler<()> for Reaper {
    fn handle(&mut self, _: (), _: &mut Context<Self>) {
        crate::reaper::reap_registered();
    }

    fn finished(&mut self, _: &mut Context<Self>) {
        // The signal stream never ends while the runtime lives; keep the actor for the tick.
    }
}
