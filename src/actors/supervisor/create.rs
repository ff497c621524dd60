//! Create and restore: a request is checked (ids, bundle, runtime, stdio), its Container
//! registered and told to create (or restore) it; a failure unregisters it.

use super::*;

/// Creates a container.
#[derive(Message)]
#[rtype(result = "Result<ContainerInfo>")]
pub struct Create(pub CreateRequest);

impl Handler<Create> for Supervisor {
    type Result = ResponseActFuture<Self, Result<ContainerInfo>>;

    fn handle(&mut self, Create(req): Create, _: &mut Context<Self>) -> Self::Result {
        self.create(req, None)
    }
}

/// Restores a container from a checkpoint, under its own id or a new one.
#[derive(Message)]
#[rtype(result = "Result<ContainerInfo>")]
pub struct Restore {
    /// The namespace of the checkpointed container (and of the restored one).
    pub namespace: String,
    /// The checkpointed container's id.
    pub id: String,
    /// The checkpoint's name.
    pub name: String,
    /// Restore under this id instead.
    pub new_id: Option<String>,
    /// Use this bundle instead of the one the checkpoint records.
    pub bundle: Option<std::path::PathBuf>,
}

impl Handler<Restore> for Supervisor {
    type Result = ResponseActFuture<Self, Result<ContainerInfo>>;

    fn handle(&mut self, msg: Restore, _: &mut Context<Self>) -> Self::Result {
        let namespace = namespace_or_default(&msg.namespace).to_string();
        let store = crate::checkpoint::CheckpointStore::new(&self.settings.runtime_root);
        let found = store.get(&namespace, &msg.id, &msg.name).and_then(|info| {
            crate::checkpoint::check_criu(&self.settings.criu)?;
            Ok((info, store.dir(&namespace, &msg.id, &msg.name)?))
        });
        let (info, dir) = match found {
            Ok(found) => found,
            Err(e) => return Box::pin(actix::fut::ready(Err(e))),
        };
        let new_id = msg.new_id.unwrap_or_else(|| msg.id.clone());
        if let Ok(key) = ContainerKey::new(&namespace, &new_id) {
            if self.containers.contains_key(&key) {
                return Box::pin(actix::fut::ready(Err(Error::AlreadyExists(format!(
                    "container {key}: delete it first, or restore under another id (--as NEW_ID)"
                )))));
            }
        }
        let req = CreateRequest {
            namespace,
            id: new_id,
            bundle: msg.bundle.unwrap_or(info.bundle),
            start: true,
            labels: info.labels,
            restart: info.restart,
            stdio: info.stdio,
            ..CreateRequest::default()
        };
        let from = RestoreFrom {
            dir,
            options: info.options,
        };
        self.create(req, Some(from))
    }
}

impl Supervisor {
    /// The binary and global arguments for a request's runtime: a name in the runtimes
    /// table (its arguments first, then the request's), else a path or a name in PATH.
    fn resolve_runtime(&self, wanted: &Path, args: &[String]) -> Result<(PathBuf, Vec<String>)> {
        let bare = wanted.components().count() == 1 && !wanted.is_absolute();
        let entry = bare
            .then(|| {
                self.settings
                    .runtimes
                    .get(wanted.to_string_lossy().as_ref())
            })
            .flatten();
        let (binary, mut all) = match entry {
            Some(e) => (e.binary.clone(), e.args.clone()),
            None => (wanted.to_path_buf(), Vec::new()),
        };
        all.extend_from_slice(args);
        match resolve_binary(&binary) {
            Some(found) => Ok((found, all)),
            None if entry.is_some() => Err(Error::InvalidArgument(format!(
                "runtime {}: its binary {} is not found or not executable",
                wanted.display(),
                binary.display()
            ))),
            None if bare => Err(Error::InvalidArgument(format!(
                "runtime {} is neither a configured runtime (known: {}) nor found in PATH",
                wanted.display(),
                self.settings
                    .runtimes
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
            None => Err(Error::InvalidArgument(format!(
                "runtime {} not found or not executable",
                wanted.display()
            ))),
        }
    }

    /// Checks a create request, registers its Container and has it create (or restore) the
    /// container; a failure unregisters it.
    pub(super) fn create(
        &mut self,
        req: CreateRequest,
        restore: Option<RestoreFrom>,
    ) -> ResponseActFuture<Self, Result<ContainerInfo>> {
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
            let stop_signal = crate::bundle::stop_signal(&spec)?;
            let wanted = req
                .runtime
                .clone()
                .unwrap_or_else(|| self.settings.default_runtime.clone());
            let (runtime_bin, runtime_args) = self.resolve_runtime(&wanted, &req.runtime_args)?;
            let cgroups_path = self
                .settings
                .cgroups
                .cgroups_path(&runtime_args, &key.namespace, &key.id)
                .map_err(|e| {
                    Error::InvalidArgument(format!("runtime {}: {e}", wanted.display()))
                })?;
            let mut runtime_spec = crate::bundle::runtime_spec(&spec, &bundle, &cgroups_path);
            crate::bundle::set_terminal(&spec, runtime_spec.as_mut(), &bundle, &req.stdio)?;
            req.stdio.check_absolute("")?;
            let runtime =
                self.runtime_for(&key.namespace, runtime_bin.clone(), runtime_args.clone());
            let record = ContainerRecord {
                cgroups: crate::bundle::cgroup_paths(
                    runtime_spec.as_ref().unwrap_or(&spec),
                    &key.id,
                    self.settings.cgroups.shims.as_deref(),
                ),
                runtime_bundle: runtime_spec.as_ref().map(|_| dir.path().to_path_buf()),
                runtime_args,
                labels: req.labels.clone(),
                stdio: req.stdio.clone(),
                restart: req.restart,
                no_pivot_root: req.no_pivot_root,
                stop_signal,
                ..ContainerRecord::new(&key.namespace, &key.id, bundle, runtime_bin)
            };
            Ok((key, dir, record, runtime, runtime_spec))
        })();
        let (key, dir, record, runtime, runtime_spec) = match checked {
            Ok(parts) => parts,
            Err(e) => return Box::pin(actix::fut::ready(Err(e))),
        };
        let env = self.env(runtime);
        let addr = Container::new(record, dir, env).start();
        self.containers.insert(key.clone(), addr.clone());
        let start = req.start;
        Box::pin(
            async move {
                let init = Init {
                    start,
                    restore,
                    runtime_spec,
                };
                addr.send(init).await.unwrap_or_else(|_| {
                    Err(Error::Internal(
                        "container actor stopped during create".into(),
                    ))
                })
            }
            .into_actor(self)
            .map(move |result, act, ctx| {
                if result.is_err() {
                    act.containers.remove(&key);
                    act.summaries.remove(&key);
                }
                act.trim_soon(ctx);
                result
            }),
        )
    }
}
