//! The Supervisor actor: owns the registry `(namespace, id) -> Addr<Container>`. It checks
//! and creates containers, hands out their addresses, lists them and deletes them. It never
//! waits on a runtime: those calls belong to each Container.

use super::container::{self, Container, ContainerEnv, ContainerRecord, GetInfo, Init};
use super::events::Events;
use crate::error::{Error, Result};
use crate::layout::StateDir;
use crate::runtime::{resolve_binary, Runtime};
use crate::types::*;
use crate::Config;
use actix::prelude::*;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// The registry of containers.
pub struct Supervisor {
    config: Arc<Config>,
    state: StateDir,
    events: Addr<Events>,
    containers: HashMap<ContainerKey, Addr<Container>>,
}

impl Supervisor {
    /// A supervisor with an empty registry.
    pub fn new(config: Arc<Config>, events: Addr<Events>) -> Self {
        Supervisor {
            state: StateDir::new(&config.state_dir),
            config,
            events,
            containers: HashMap::new(),
        }
    }

    fn runtime_for(
        &self,
        namespace: &str,
        binary: std::path::PathBuf,
        args: Vec<String>,
    ) -> Runtime {
        Runtime {
            path: binary,
            root: self.config.runtime_root.join(namespace),
            args,
            timeout: self.config.runtime_timeout,
        }
    }
}

impl Actor for Supervisor {
    type Context = Context<Self>;
}

/// Creates a container.
#[derive(Message)]
#[rtype(result = "Result<ContainerInfo>")]
pub struct Create(pub CreateRequest);

/// The address of a container.
#[derive(Message)]
#[rtype(result = "Result<Addr<Container>>")]
pub struct Lookup(pub ContainerKey);

/// Deletes a container and forgets it.
#[derive(Message)]
#[rtype(result = "Result<ContainerInfo>")]
pub struct Remove {
    /// Which.
    pub key: ContainerKey,
    /// Kill it first if running.
    pub force: bool,
}

/// Lists the containers of a namespace whose labels include all of `labels`.
#[derive(Message)]
#[rtype(result = "Vec<ContainerInfo>")]
pub struct List {
    /// The namespace.
    pub namespace: String,
    /// `key=value` pairs that must all match.
    pub labels: BTreeMap<String, String>,
}

fn namespace_or_default(ns: &str) -> &str {
    if ns.is_empty() {
        DEFAULT_NAMESPACE
    } else {
        ns
    }
}

impl Handler<Create> for Supervisor {
    type Result = ResponseActFuture<Self, Result<ContainerInfo>>;

    fn handle(&mut self, Create(req): Create, _: &mut Context<Self>) -> Self::Result {
        let checked = (|| {
            let key = ContainerKey::new(namespace_or_default(&req.namespace), &req.id)?;
            if self.containers.contains_key(&key) {
                return Err(Error::AlreadyExists(format!("container {key}")));
            }
            let dir = self.state.container(&key.namespace, &key.id);
            if dir.path().exists() {
                return Err(Error::AlreadyExists(format!(
                    "container {key}: its state directory {} is still there",
                    dir.path().display()
                )));
            }
            let ns_dir = self.state.namespace(&key.namespace);
            if ns_dir.exists() && !ns_dir.is_dir() {
                return Err(Error::InvalidArgument(format!(
                    "namespace {:?} clashes with the file {}",
                    key.namespace,
                    ns_dir.display()
                )));
            }
            let (bundle, spec) = crate::bundle::check(&req.bundle)?;
            let wanted = req
                .runtime
                .clone()
                .unwrap_or_else(|| self.config.runtime.clone());
            let runtime_bin = resolve_binary(&wanted).ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "runtime {} not found or not executable",
                    wanted.display()
                ))
            })?;
            for (name, path) in [
                ("stdin", &req.stdio.stdin),
                ("stdout", &req.stdio.stdout),
                ("stderr", &req.stdio.stderr),
            ] {
                if let Some(p) = path {
                    if !p.is_absolute() {
                        return Err(Error::InvalidArgument(format!(
                            "{name} path {} must be absolute",
                            p.display()
                        )));
                    }
                }
            }
            let runtime = self.runtime_for(
                &key.namespace,
                runtime_bin.clone(),
                req.runtime_args.clone(),
            );
            let record = ContainerRecord {
                namespace: key.namespace.clone(),
                id: key.id.clone(),
                cgroup_path: crate::bundle::cgroup_path(&spec, &key.id),
                bundle,
                runtime: runtime_bin,
                runtime_args: req.runtime_args.clone(),
                labels: req.labels.clone(),
                stdio: req.stdio.clone(),
                created_at_ns: now_ns(),
            };
            Ok((key, dir, record, runtime))
        })();
        let (key, dir, record, runtime) = match checked {
            Ok(parts) => parts,
            Err(e) => return Box::pin(actix::fut::ready(Err(e))),
        };
        let env = ContainerEnv {
            shim: self.config.shim.clone(),
            runtime,
            shim_timeout: self.config.shim_timeout,
            events: self.events.clone(),
        };
        let addr = Container::new(record, dir, env).start();
        self.containers.insert(key.clone(), addr.clone());
        let start = req.start;
        Box::pin(
            async move {
                addr.send(Init { start }).await.unwrap_or_else(|_| {
                    Err(Error::Internal(
                        "container actor stopped during create".into(),
                    ))
                })
            }
            .into_actor(self)
            .map(move |result, act, _| {
                if result.is_err() {
                    act.containers.remove(&key);
                }
                result
            }),
        )
    }
}

impl Handler<Lookup> for Supervisor {
    type Result = Result<Addr<Container>>;

    fn handle(&mut self, Lookup(key): Lookup, _: &mut Context<Self>) -> Self::Result {
        self.containers
            .get(&key)
            .filter(|a| a.connected())
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("container {key}")))
    }
}

impl Handler<Remove> for Supervisor {
    type Result = ResponseActFuture<Self, Result<ContainerInfo>>;

    fn handle(&mut self, Remove { key, force }: Remove, _: &mut Context<Self>) -> Self::Result {
        let Some(addr) = self.containers.get(&key).cloned() else {
            return Box::pin(actix::fut::ready(Err(Error::NotFound(format!(
                "container {key}"
            )))));
        };
        Box::pin(
            async move {
                addr.send(container::Delete { force })
                    .await
                    .unwrap_or_else(|_| Err(Error::NotFound("container is gone".into())))
            }
            .into_actor(self)
            .map(move |result, act, _| {
                if result.is_ok() {
                    act.containers.remove(&key);
                }
                result
            }),
        )
    }
}

impl Handler<List> for Supervisor {
    type Result = ResponseFuture<Vec<ContainerInfo>>;

    fn handle(&mut self, msg: List, _: &mut Context<Self>) -> Self::Result {
        let addrs: Vec<Addr<Container>> = self
            .containers
            .iter()
            .filter(|(k, _)| k.namespace == msg.namespace)
            .map(|(_, a)| a.clone())
            .collect();
        Box::pin(async move {
            let mut out = Vec::with_capacity(addrs.len());
            for addr in addrs {
                if let Ok(info) = addr.send(GetInfo).await {
                    if msg
                        .labels
                        .iter()
                        .all(|(k, v)| info.labels.get(k) == Some(v))
                    {
                        out.push(info);
                    }
                }
            }
            out.sort_by(|a, b| a.id.cmp(&b.id));
            out
        })
    }
}
