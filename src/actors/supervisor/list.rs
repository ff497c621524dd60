//! Lists that never wait on a container: every container pushes its summary here whenever
//! it changes ([`container::Summary`]), and lists, namespace-wide info and the metrics'
//! counts are answered from those. Only a container that has not pushed one yet (it was
//! registered a moment ago) is asked, with one deadline for the whole list; one that does
//! not answer in time is listed by name, marked busy.

use super::*;
use std::time::Instant;

/// What the Supervisor knows of a container: the summary it pushed last, kept encoded as
/// the RPC sends it (one allocation of about 200 bytes, where a decoded `ContainerInfo`
/// takes half a dozen and over twice the room), so that a list over the RPC is a copy of
/// these bytes ([`ListFrame`]), not a clone, a sort and an encoding of a thousand infos.
pub(super) struct Known {
    /// The summary, bincode-encoded with `busy: false`.
    encoded: Box<[u8]>,
    /// Where in `encoded` its `busy` byte is.
    busy_at: usize,
    /// Its operation (empty: none), to tell when a new one begins.
    operation: Box<str>,
    /// Since when that operation has been in flight (`None`: none).
    operation_since: Option<Instant>,
}

impl Known {
    /// `info` (pushed with `busy: false`) encoded, with `operation_since`.
    fn new(info: &ContainerInfo, operation_since: Option<Instant>) -> Result<Known> {
        let (encoded, busy_at) = encode_summary(info)?;
        Ok(Known {
            encoded,
            busy_at,
            operation: info.operation.as_str().into(),
            operation_since,
        })
    }

    /// Busy: a runtime call has been in flight for longer than [`BUSY_AFTER`].
    fn busy(&self, now: Instant) -> bool {
        self.operation_since
            .is_some_and(|since| now.saturating_duration_since(since) > BUSY_AFTER)
    }

    /// The summary as a list gives it.
    fn listed(&self, now: Instant) -> Result<ContainerInfo> {
        let mut info: ContainerInfo = crate::rpc::frame::decode(&self.encoded)?;
        info.busy = self.busy(now);
        Ok(info)
    }

    /// The summary as a list gives it, encoded, appended to `out`.
    fn append_listed(&self, now: Instant, out: &mut Vec<u8>) {
        let at = out.len() + self.busy_at;
        out.extend_from_slice(&self.encoded);
        if let Some(busy) = out.get_mut(at) {
            *busy = u8::from(self.busy(now));
        }
    }

    /// Whether its labels include all of `labels` (decoded only when there are some).
    fn has_labels(&self, labels: &BTreeMap<String, String>) -> Result<bool> {
        if labels.is_empty() {
            return Ok(true);
        }
        let info: ContainerInfo = crate::rpc::frame::decode(&self.encoded)?;
        Ok(labels.iter().all(|(k, v)| info.labels.get(k) == Some(v)))
    }
}

/// `info` encoded with `busy: false`, and where its `busy` byte is: the one byte in which
/// its encodings with `busy: false` and `busy: true` differ.
fn encode_summary(info: &ContainerInfo) -> Result<(Box<[u8]>, usize)> {
    use crate::rpc::frame::encode_payload;
    let mut info = std::borrow::Cow::Borrowed(info);
    if info.busy {
        info.to_mut().busy = false;
    }
    let idle = encode_payload(&*info)?;
    info.to_mut().busy = true;
    let busy = encode_payload(&*info)?;
    let mut differ = (0..idle.len().min(busy.len())).filter(|&i| idle[i] != busy[i]);
    match (idle.len() == busy.len(), differ.next(), differ.next()) {
        (true, Some(at), None) => Ok((idle.into_boxed_slice(), at)),
        _ => Err(Error::Internal(
            "a summary's busy flag is not one byte of its encoding".into(),
        )),
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
        // A scheduled trim waits for the burst this summary may be part of to end.
        self.last_change = Instant::now();
        let operation_since = match self.summaries.get(&key) {
            _ if !is_runtime_call(&info.operation) => None,
            Some(known) if *known.operation == info.operation => known.operation_since,
            _ => Some(Instant::now()),
        };
        match Known::new(&info, operation_since) {
            Ok(known) => {
                self.summaries.insert(key, known);
            }
            Err(e) => {
                // Never seen; without a summary the container is asked at the next list.
                tracing::warn!("container {key}: its summary cannot be kept: {e}");
                self.summaries.remove(&key);
            }
        }
    }
}

/// Whether `operation` is a runtime call in flight (a pending restart is a timer).
fn is_runtime_call(operation: &str) -> bool {
    !operation.is_empty() && operation != "restart-pending"
}

/// How long a list waits for a container that has not pushed its summary yet before it
/// answers, for that one, with its name only, marked busy.
pub const LIST_ANSWER_WITHIN: std::time::Duration = std::time::Duration::from_millis(100);

/// A namespace's list (as [`List`]) as the RPC reply frame `Reply::Containers`, length
/// prefix included: the summaries' bytes copied one after another in id order, each with
/// its busy byte set, so a list of a thousand is a copy of about 200 KiB. Only while a
/// container of the namespace has not pushed a summary yet is it [`List`], encoded.
#[derive(Message)]
#[rtype(result = "Result<Vec<u8>>")]
pub struct ListFrame {
    /// The id of the request the frame answers.
    pub frame_id: u64,
    /// The namespace.
    pub namespace: String,
    /// `key=value` pairs that must all match.
    pub labels: BTreeMap<String, String>,
}

impl Handler<ListFrame> for Supervisor {
    type Result = ResponseActFuture<Self, Result<Vec<u8>>>;

    fn handle(&mut self, msg: ListFrame, ctx: &mut Context<Self>) -> Self::Result {
        use crate::rpc::{frame, Reply, ServerFrame};
        let frame_id = msg.frame_id;
        let reply_of = move |list| ServerFrame {
            id: frame_id,
            reply: Reply::Containers(list),
        };
        self.forget_stale_summaries();
        if self.unsummarized(Some(&msg.namespace)).next().is_some() {
            let list = List {
                namespace: msg.namespace,
                labels: msg.labels,
            };
            return Box::pin(
                <Self as Handler<List>>::handle(self, list, ctx)
                    .map(move |list, _, _| frame::encode(&reply_of(list))),
            );
        }
        let now = Instant::now();
        // Summaries are sorted by namespace, then id: the namespace's are one run, in order.
        let listed: Vec<&Known> = self
            .summaries
            .iter()
            .filter(|(key, _)| key.namespace == msg.namespace)
            .filter(|(key, known)| match known.has_labels(&msg.labels) {
                Ok(has) => has,
                Err(e) => {
                    tracing::warn!("container {key}: its summary cannot be read: {e}");
                    false
                }
            })
            .map(|(_, known)| known)
            .collect();
        let len = listed.iter().map(|known| known.encoded.len()).sum();
        let frame = frame::encode_with_items(&reply_of(Vec::new()), listed.len(), len, |out| {
            for known in &listed {
                known.append_listed(now, out);
            }
        });
        Box::pin(actix::fut::ready(frame))
    }
}

impl Supervisor {
    /// Drops summaries of containers no longer registered (kept away by every removal;
    /// this is the safety net): afterwards every summary is of a registered container.
    fn forget_stale_summaries(&mut self) {
        if self.summaries.len() > self.containers.len() {
            let containers = &self.containers;
            self.summaries.retain(|k, _| containers.contains_key(k));
        }
    }

    /// The containers (of `namespace`, if given) that have not pushed a summary yet;
    /// none without a scan when every registered container has one.
    fn unsummarized<'a>(
        &'a self,
        namespace: Option<&'a str>,
    ) -> impl Iterator<Item = (&'a ContainerKey, &'a Addr<Container>)> + 'a {
        let scan = (self.containers.len() > self.summaries.len()).then(|| self.containers.iter());
        scan.into_iter().flatten().filter(move |(key, _)| {
            namespace.is_none_or(|ns| key.namespace == ns) && !self.summaries.contains_key(key)
        })
    }

    /// Every container (of `namespace`, if given) from its summary, in namespace and id
    /// order; only the ones without one yet are asked, all at once, for at most
    /// [`LIST_ANSWER_WITHIN`] in all, and added at the end. Summaries whose labels do not
    /// include all of `labels` are left out.
    pub(super) fn list_all(
        &mut self,
        namespace: Option<&str>,
        labels: &BTreeMap<String, String>,
    ) -> impl ActorFuture<Self, Output = Vec<ContainerInfo>> + use<> {
        let now = Instant::now();
        self.forget_stale_summaries();
        let mut out = Vec::new();
        for (key, known) in &self.summaries {
            if namespace.is_some_and(|ns| key.namespace != ns) {
                continue;
            }
            let listed = known
                .has_labels(labels)
                .and_then(|has| has.then(|| known.listed(now)).transpose());
            match listed {
                Ok(Some(info)) => out.push(info),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!("container {key}: its summary cannot be read: {e}");
                    let mut info = ContainerInfo::unknown(&key.namespace, &key.id);
                    info.busy = true;
                    out.push(info);
                }
            }
        }
        let (keys, addrs): (Vec<ContainerKey>, Vec<Addr<Container>>) = self
            .unsummarized(namespace)
            .map(|(key, addr)| (key.clone(), addr.clone()))
            .unzip();
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
