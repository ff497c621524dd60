//! Lists that never wait on one container: every container is asked at once, with one
//! deadline for the whole list, and one that does not answer is told from its last known
//! state, marked busy.

use super::*;

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
        let asked = self.ask_all(Some(&msg.namespace));
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
        Box::pin(self.ask_all(None))
    }
}

/// How long a list waits for its containers before it answers, for one that has not
/// answered, with that container's last known state, marked busy.
pub const LIST_ANSWER_WITHIN: std::time::Duration = std::time::Duration::from_millis(100);

impl Supervisor {
    /// Asks every container (of `namespace`, if given) for its state, all at once, for at
    /// most [`LIST_ANSWER_WITHIN`] in all; one that does not answer in time is told from its
    /// last known state, so one wedged container never holds up a list. One deadline for
    /// the whole list (not a timer per container), and a summary is copied only when it
    /// changed: a list of a thousand containers costs their answers and little else.
    pub(super) fn ask_all(
        &mut self,
        namespace: Option<&str>,
    ) -> impl ActorFuture<Self, Output = Vec<ContainerInfo>> + use<> {
        let (keys, addrs): (Vec<ContainerKey>, Vec<Addr<Container>>) = self
            .containers
            .iter()
            .filter(|(k, _)| namespace.is_none_or(|ns| k.namespace == ns))
            .map(|(k, a)| (k.clone(), a.clone()))
            .unzip();
        let answers = async move {
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
        answers.into_actor(self).map(|(keys, answers), act, _| {
            let mut out = Vec::with_capacity(answers.len());
            for (key, answer) in keys.into_iter().zip(answers) {
                match answer {
                    Some(Some(info)) => {
                        match act.summaries.get_mut(&key) {
                            Some(known) if **known == info => {}
                            Some(known) => (**known).clone_from(&info),
                            None => {
                                act.summaries.insert(key, Box::new(info.clone()));
                            }
                        }
                        out.push(info);
                    }
                    Some(None) => {}
                    None => {
                        let mut info = act
                            .summaries
                            .get(&key)
                            .map(|known| ContainerInfo::clone(known))
                            .unwrap_or_else(|| ContainerInfo::unknown(&key.namespace, &key.id));
                        info.busy = true;
                        out.push(info);
                    }
                }
            }
            if act.summaries.len() > act.containers.len() {
                act.summaries.retain(|k, _| act.containers.contains_key(k));
            }
            out
        })
    }
}
