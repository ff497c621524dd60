//! Lists that never wait on a container: every container pushes its summary here whenever
//! it changes ([`container::Summary`]), and lists, namespace-wide info and the metrics'
//! counts are answered from those. Only a container that has not pushed one yet (it was
//! registered a moment ago) is asked, with one deadline for the whole list; one that does
//! not answer in time is listed by name, marked busy.

use super::*;
use std::time::Instant;

/// What the Supervisor knows of a container: the summary it pushed last.
pub(super) struct Known {
    /// Boxed: a table of a thousand inline infos would hold room for two thousand.
    info: Box<ContainerInfo>,
    /// Since when the operation in the summary has been in flight (`None`: none).
    operation_since: Option<Instant>,
}

impl Known {
    /// The summary as a list gives it: busy when a runtime call has been in flight for
    /// longer than [`BUSY_AFTER`].
    fn listed(&self, now: Instant) -> ContainerInfo {
        let mut info = ContainerInfo::clone(&self.info);
        info.busy = self
            .operation_since
            .is_some_and(|since| now.saturating_duration_since(since) > BUSY_AFTER);
        info
    }
}

/// A container in the middle of a runtime call for longer than this (a start, a
/// checkpoint, a restart, a delete) is listed busy: its verbs wait or are refused.
pub const BUSY_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// Lists the containers of a namespace whose labels include all of `labels`.
#[derive(Message)]
#[rtype(result = "Vec<ContainerInfo>")]
pub struct List {
    /// The namespace.
    pub namespace: String,
    /// `key=value` pairs that must all match.
    pub labels: BTreeMap<String, String>,
}

impl Handler<List> for Supervisor {
    type Result = ResponseActFuture<Self, Vec<ContainerInfo>>;

    fn handle(&mut self, msg: List, _: &mut Context<Self>) -> Self::Result {
        let asked = self.list_all(Some(&msg.namespace), &msg.labels);
        Box::pin(asked.map(move |mut out, _, _| {
            out.retain(|info| {
                msg.labels
                    .iter()
                    .all(|(k, v)| info.labels.get(k) == Some(v))
            });
            out.sort_by(|a, b| a.id.cmp(&b.id));
            out
        }))
    }
}

/// Every container in every namespace.
#[derive(Message)]
#[rtype(result = "Vec<ContainerInfo>")]
pub struct All;

impl Handler<All> for Supervisor {
    type Result = ResponseActFuture<Self, Vec<ContainerInfo>>;

    fn handle(&mut self, _: All, _: &mut Context<Self>) -> Self::Result {
        Box::pin(self.list_all(None, &BTreeMap::new()))
    }
}

impl Handler<container::Summary> for Supervisor {
    type Result = ();

    fn handle(&mut self, container::Summary(info): container::Summary, _: &mut Context<Self>) {
        let key = ContainerKey {
            namespace: info.namespace.clone(),
            id: info.id.clone(),
        };
        if !self.containers.contains_key(&key) {
            return; // deleted meanwhile
        }
        let operation_since = match self.summaries.get(&key) {
            _ if !is_runtime_call(&info.operation) => None,
            Some(known) if known.info.operation == info.operation => known.operation_since,
            _ => Some(Instant::now()),
        };
        self.summaries.insert(
            key,
            Known {
                info,
                operation_since,
            },
        );
    }
}

/// Whether `operation` is a runtime call in flight (a pending restart is a timer).
fn is_runtime_call(operation: &str) -> bool {
    !operation.is_empty() && operation != "restart-pending"
}

/// How long a list waits for a container that has not pushed its summary yet before it
/// answers, for that one, with its name only, marked busy.
pub const LIST_ANSWER_WITHIN: std::time::Duration = std::time::Duration::from_millis(100);

impl Supervisor {
    /// Every container (of `namespace`, if given) from its summary; only the ones without
    /// one yet are asked, all at once, for at most [`LIST_ANSWER_WITHIN`] in all. Summaries
    /// whose labels do not include all of `labels` are not copied.
    pub(super) fn list_all(
        &mut self,
        namespace: Option<&str>,
        labels: &BTreeMap<String, String>,
    ) -> impl ActorFuture<Self, Output = Vec<ContainerInfo>> + use<> {
        let now = Instant::now();
        let mut out = Vec::new();
        let mut keys = Vec::new();
        let mut addrs = Vec::new();
        for (key, addr) in &self.containers {
            if namespace.is_some_and(|ns| key.namespace != ns) {
                continue;
            }
            match self.summaries.get(key) {
                Some(known) => {
                    if labels
                        .iter()
                        .all(|(k, v)| known.info.labels.get(k) == Some(v))
                    {
                        out.push(known.listed(now));
                    }
                }
                None => {
                    keys.push(key.clone());
                    addrs.push(addr.clone());
                }
            }
        }
        if self.summaries.len() > self.containers.len() {
            let containers = &self.containers;
            self.summaries.retain(|k, _| containers.contains_key(k));
        }
        let answers = async move {
            if addrs.is_empty() {
                return (keys, Vec::new());
            }
            use futures_util::stream::{FuturesUnordered, StreamExt};
            let mut pending: FuturesUnordered<_> = addrs
                .into_iter()
                .enumerate()
                .map(|(i, addr)| async move { (i, addr.send(GetInfo).await) })
                .collect();
            let mut answers: Vec<Option<Option<ContainerInfo>>> = vec![None; keys.len()];
            let deadline = tokio::time::sleep(LIST_ANSWER_WITHIN);
            let mut deadline = std::pin::pin!(deadline);
            use futures_util::future::{select, Either};
            // Until every container answered, or the deadline.
            while let Either::Left((Some((i, answer)), _)) =
                select(pending.next(), deadline.as_mut()).await
            {
                // `Some(None)`: deleted meanwhile.
                answers[i] = Some(answer.ok());
            }
            (keys, answers)
        };
        answers.into_actor(self).map(move |(keys, answers), _, _| {
            for (key, answer) in keys.into_iter().zip(answers) {
                match answer {
                    // Its answer pushed its summary too.
                    Some(Some(info)) => out.push(info),
                    Some(None) => {}
                    None => {
                        let mut info = ContainerInfo::unknown(&key.namespace, &key.id);
                        info.busy = true;
                        out.push(info);
                    }
                }
            }
            out
        })
    }
}
