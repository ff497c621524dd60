//! The busybox bundle helper, as an embedding program (many threads, processes being
//! spawned all the time) uses it.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use common::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// `make_busybox` works while other threads of the same program spawn processes.
///
/// Known product bug: make_busybox copies busybox into the rootfs and then executes the
/// fresh copy (`rootfs/bin/busybox --list`). A fork on another thread while the copy's
/// write descriptor is open keeps that descriptor alive in the child until it execs, and
/// the exec of the copy fails with ETXTBSY ("Text file busy"). Running `--list` on the
/// source busybox instead (or not executing anything written in-process) avoids it.
#[test]
fn make_busybox_works_while_other_threads_spawn_processes() {
    runc(); // the same environment checks as every test
    let dir = std::path::PathBuf::from(format!(
        "/tmp/corral-test-make_busybox-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let stop = Arc::new(AtomicBool::new(false));
    let spawners: Vec<_> = (0..2)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let _ = std::process::Command::new("/bin/true").status();
                }
            })
        })
        .collect();
    let mut failures = Vec::new();
    for n in 0..20 {
        let bundle = dir.join(format!("b{n}"));
        if let Err(e) = corral::bundle::make_busybox(&bundle, &["true".to_string()]) {
            failures.push(format!("bundle {n}: {e}"));
        }
    }
    stop.store(true, Ordering::Relaxed);
    for s in spawners {
        s.join().unwrap();
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        failures.is_empty(),
        "{} of 20 make_busybox calls failed: {failures:#?}",
        failures.len()
    );
}
