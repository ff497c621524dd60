//! Adoption at daemon start: every container in the state dir is read, registered and
//! started, or set aside with a reason a person can read.

use super::*;

impl Supervisor {
    /// Moves a container's state out of the way, keeping it for a person to look at.
    fn set_aside(&self, dir: &Path, why: &str) {
        let name = dir
            .strip_prefix(self.state.path())
            .map(|p| p.to_string_lossy().replace('/', "."))
            .unwrap_or_else(|_| "unknown".into());
        let target = self
            .state
            .path()
            .join(SET_ASIDE_DIR)
            .join(format!("{name}.{}", now_ns()));
        let moved = std::fs::create_dir_all(target.parent().unwrap_or(self.state.path()))
            .and_then(|()| std::fs::rename(dir, &target));
        match moved {
            Ok(()) => tracing::warn!(
                "{}: {why}; its state was set aside in {}",
                dir.display(),
                target.display()
            ),
            Err(e) => tracing::error!("{}: {why}; could not set it aside: {e}", dir.display()),
        }
    }

    /// Adopts every container found in the state dir (daemon start). Each is registered
    /// before its actor starts watching its processes, so no exit finds nobody to tell.
    pub(super) fn adopt_all(&mut self, journaled: HashSet<ExitKey>, ctx: &mut Context<Self>) {
        let dirs = |p: &Path| -> Vec<String> {
            let mut names: Vec<String> = std::fs::read_dir(p)
                .map(|rd| {
                    rd.filter_map(|e| e.ok())
                        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                        .filter_map(|e| e.file_name().into_string().ok())
                        .filter(|n| validate_id("id", n).is_ok())
                        .collect()
                })
                .unwrap_or_default();
            names.sort();
            names
        };
        let mut adopted = 0;
        for namespace in dirs(self.state.path()) {
            for id in dirs(&self.state.namespace(&namespace)) {
                let dir = self.state.container(&namespace, &id);
                let record = ContainerRecord::load(&dir);
                let record = match record {
                    Ok(r) if r.namespace == namespace && r.id == id => r,
                    Ok(r) => {
                        self.set_aside(
                            dir.path(),
                            &format!("state.json names {}/{}", r.namespace, r.id),
                        );
                        continue;
                    }
                    Err(e) => {
                        self.set_aside(dir.path(), &e.to_string());
                        continue;
                    }
                };
                let runtime = self.runtime_for(
                    &namespace,
                    record.runtime.clone(),
                    record.runtime_args.clone(),
                );
                let init = dir.process(INIT_PROCESS);
                // A restart the daemon died in: the last run's init/ stands again first.
                container::take_back_last_run(&dir);
                // The runtime's bundle: corral's own copy of the spec when it wrote one, which
                // outlives the user's bundle dir.
                let runtime_bundle = record.runtime_bundle.as_ref().unwrap_or(&record.bundle);
                let broken = if !crate::layout::bundle_config(runtime_bundle).is_file() {
                    Some(format!("its bundle {} is gone", runtime_bundle.display()))
                } else if init.read_pid().is_none() {
                    Some("its create never finished".to_string())
                } else {
                    None
                };
                if let Some(why) = broken {
                    // Stop whatever is left of it; keep its files for a person to read. The
                    // shim's whole process group (it is a session leader): a runtime call
                    // still running under it would otherwise go on to create the container
                    // after the delete below, and write its pid file into a new container
                    // of the same id.
                    if let Some((shim, start)) = init.read_shim_pid() {
                        if crate::layout::same_process(shim, start) {
                            let _ = nix::sys::signal::killpg(
                                nix::unistd::Pid::from_raw(shim),
                                nix::sys::signal::Signal::SIGKILL,
                            );
                        }
                    }
                    self.set_aside(dir.path(), &why);
                    let cgroup = record.cgroups.clone();
                    // Held (`wait`): no create of the same id may run before this delete,
                    // which would otherwise fail on the leftover, or be deleted by it.
                    ctx.wait(
                        async move {
                            if let Err(e) = runtime.delete(&record.id, true).await {
                                tracing::warn!("removing {}: {e}", record.id);
                            }
                            crate::cgroups::remove_leftovers(&cgroup);
                        }
                        .into_actor(self),
                    );
                    continue;
                }
                let key = ContainerKey {
                    namespace: namespace.clone(),
                    id: id.clone(),
                };
                let published: HashSet<(String, u32)> = journaled
                    .iter()
                    .filter(|(n, i, _, _)| *n == namespace && *i == id)
                    .map(|(_, _, p, pid)| (p.clone(), *pid))
                    .collect();
                let env = self.env(runtime);
                // Registered first; the actor adopts its processes when it starts.
                let container = Container::adopted(record, dir, env, published);
                self.containers.insert(key, container.start());
                adopted += 1;
            }
        }
        if adopted > 0 {
            tracing::info!(
                "adopted {adopted} container(s) from {}",
                self.state.path().display()
            );
            crate::limits::warn_if_short(adopted);
        }
    }
}
