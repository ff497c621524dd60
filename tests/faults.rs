//! Faults: a full state dir, a full journal, a state dir and a journal failing with EIO, a
//! runtime that hangs, a SIGSTOPped shim, and `kill -9` of corrald at random points of a
//! workload. Each ends with every exit told (exactly once where the journal can tell),
//! nothing left behind and no zombie.
//!
//! EIO comes from a real ext4 on a loop device, shut down with `EXT4_IOC_SHUTDOWN` (what
//! xfstests' `godown` does): from then on every operation on it fails with EIO, until it
//! is unmounted and mounted again. This kernel has no device-mapper (no `dm_mod`, no
//! `/dev/mapper/control`, no modules to load), so an `error` target cannot be swapped in.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use common::*;
use corral::rpc::Client;
use corral::{CreateRequest, Error, Event, EventFilter, Status, Topic};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A tmpfs mounted for the test; lazily unmounted when dropped (also on failure), and then
/// the dir it was in removed (the daemon's temp dir, which the daemon's own cleanup could
/// not remove while the mount was there).
struct Mount(PathBuf, Option<PathBuf>);

impl Mount {
    fn tmpfs(at: &Path, size: &str) -> Mount {
        std::fs::create_dir_all(at).unwrap();
        let out = output_within(
            Command::new("mount")
                .args(["-t", "tmpfs", "-o"])
                .arg(format!("size={size},mode=0700"))
                .arg("corral-faults")
                .arg(at),
            LIVENESS,
        );
        assert_eq!(
            code(&out),
            0,
            "mount tmpfs on {}: {}",
            at.display(),
            stderr(&out)
        );
        Mount(at.to_path_buf(), None)
    }

    /// An ext4 of `size` made in the file `image` and mounted through a loop device (freed
    /// by the unmount).
    fn ext4(at: &Path, image: &Path, size: &str) -> Mount {
        std::fs::create_dir_all(at).unwrap();
        let mkfs = output_within(
            Command::new("sh").arg("-c").arg(format!(
                "truncate -s {size} '{0}' && mkfs.ext4 -q -F '{0}'",
                image.display()
            )),
            LIVENESS,
        );
        assert_eq!(code(&mkfs), 0, "mkfs.ext4: {}", stderr(&mkfs));
        let mount = Mount(at.to_path_buf(), None);
        mount.mount_image(image);
        mount
    }

    /// Mounts `image` through a new loop device each time (`mount -o loop` would reuse one
    /// still attached to the image, and with it a shut-down filesystem that a mount in some
    /// other namespace, a container's being set up, may keep alive after our unmount), then
    /// detaches it, which frees it once unmounted.
    fn mount_image(&self, image: &Path) {
        let out = output_within(
            Command::new("losetup").args(["-f", "--show"]).arg(image),
            LIVENESS,
        );
        assert_eq!(
            code(&out),
            0,
            "losetup {}: {}",
            image.display(),
            stderr(&out)
        );
        let dev = stdout(&out).trim().to_string();
        let out = output_within(
            Command::new("mount")
                .args(["-t", "ext4", &dev])
                .arg(&self.0),
            LIVENESS,
        );
        let _ = output_within(Command::new("losetup").args(["-d", &dev]), LIVENESS);
        assert_eq!(
            code(&out),
            0,
            "mount {} ({}) on {}: {}",
            image.display(),
            dev,
            self.0.display(),
            stderr(&out)
        );
    }

    /// The disk back: unmounts the shut-down filesystem (nothing may hold it) and mounts
    /// its image again; ext4 replays its journal.
    fn remount(&self, image: &Path) {
        let mut last = String::new();
        let unmounted = (0..100).any(|_| {
            let out = output_within(Command::new("umount").arg(&self.0), LIVENESS);
            last = stderr(&out);
            code(&out) == 0 || {
                std::thread::sleep(Duration::from_millis(50));
                false
            }
        });
        assert!(
            unmounted,
            "umount {}: {last}; held by {:?}",
            self.0.display(),
            processes_in(&self.0)
        );
        self.mount_image(image);
    }
}

/// `EXT4_IOC_SHUTDOWN`, `_IOR('X', 125, __u32)`.
const EXT4_IOC_SHUTDOWN: libc::c_ulong = 0x8004_587d;

/// Shuts the ext4 at `dir` down (`EXT4_GOING_FLAGS_DEFAULT`: synced first): from now on
/// every operation on it fails with EIO, as on a disk that died.
fn fail_with_eio(dir: &Path) {
    let f = std::fs::File::open(dir).unwrap();
    let flags: u32 = 0;
    // SAFETY: the ioctl reads one u32 through the pointer, which outlives the call.
    let r = unsafe { libc::ioctl(f.as_raw_fd(), EXT4_IOC_SHUTDOWN, &flags as *const u32) };
    assert_eq!(
        r,
        0,
        "EXT4_IOC_SHUTDOWN on {}: {}",
        dir.display(),
        std::io::Error::last_os_error()
    );
    let probe = std::fs::write(dir.join("probe"), b"x");
    assert_eq!(
        probe.map_err(|e| e.raw_os_error()),
        Err(Some(libc::EIO)),
        "{} does not fail with EIO",
        dir.display()
    );
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        let _ = std::fs::remove_dir_all(&self.0);
        if let Some(dir) = &self.1 {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// The daemon and the mount under its state: fields drop in order, so the daemon cleans
/// its containers before the mount goes.
struct Fixture {
    d: Daemon,
    mount: Option<Mount>,
}

impl Fixture {
    /// A daemon whose `dir` (its state dir, or a dir in it) is a small tmpfs of its own:
    /// the first daemon is stopped, the tmpfs mounted over the emptied dir, and a new one
    /// started on it.
    fn on_tmpfs(name: &str, dir: impl FnOnce(&Daemon) -> PathBuf, size: &str) -> Fixture {
        Self::on_mount(name, dir, |at, _| Mount::tmpfs(at, size))
    }

    /// A daemon whose `dir` is an ext4 of its own on a loop device (see [`Mount::ext4`]),
    /// its image in the daemon's temp dir.
    fn on_ext4(name: &str, dir: impl FnOnce(&Daemon) -> PathBuf, size: &str) -> Fixture {
        Self::on_mount(name, dir, |at, image| Mount::ext4(at, image, size))
    }

    /// A daemon stopped, its `dir` emptied and mounted over by `mount` (given the dir and
    /// the image path), then started again on it.
    fn on_mount(
        name: &str,
        dir: impl FnOnce(&Daemon) -> PathBuf,
        mount: impl FnOnce(&Path, &Path) -> Mount,
    ) -> Fixture {
        let mut fx = Fixture {
            d: Daemon::start(name),
            mount: None,
        };
        fx.d.stop();
        let at = dir(&fx.d);
        std::fs::remove_dir_all(&at).unwrap();
        let mut made = mount(&at, &fx.image());
        made.1 = Some(fx.d.dir.clone());
        fx.mount = Some(made);
        fx.d.restart();
        fx
    }

    fn image(&self) -> PathBuf {
        self.d.dir.join("fs.img")
    }

    /// The disk back, for a daemon stopped first: see [`Mount::remount`].
    fn remount(&self) {
        self.mount.as_ref().unwrap().remount(&self.image());
    }

    fn mounted(&self) -> &Path {
        &self.mount.as_ref().unwrap().0
    }
}

/// Fills the filesystem at `dir` with one file until a write fails with ENOSPC; returns
/// the file (removing it frees the space).
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0xa5u8; 64 * 1024];
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
    // Whatever is left of a page: a one-byte write must fail too.
    while f.write(b"x").is_ok() {}
    let probe = std::fs::write(dir.join("probe"), b"x");
    assert_eq!(
        probe.map_err(|e| e.raw_os_error()),
        Err(Some(libc::ENOSPC)),
        "{} is not full",
        dir.display()
    );
    let _ = std::fs::remove_file(dir.join("probe"));
    path
}

fn all_default() -> EventFilter {
    EventFilter {
        namespace: Some("default".into()),
        ..Default::default()
    }
}

fn sigkill(pid: u32) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
}

/// The running container `id` (init `pid`) is not disturbed: still running, and killed
/// its exit is told live, with 137, to `events` and to `wait`.
fn assert_exit_told_live(d: &Daemon, events: &Events, id: &str, pid: u32) {
    let s = d.client().state("", id).unwrap();
    assert_eq!((s.status, s.pid), (Status::Running, pid));
    sigkill(pid);
    let seen = events.until("the exit", |e| e.topic == Topic::TaskExit);
    let exit = seen.last().unwrap();
    assert_eq!(
        (exit.container_id.as_str(), exit_code_of(exit)),
        (id, Some(137))
    );
    assert_eq!(d.wait_code("", id, None), 137);
}

/// SIGKILLs `victim`'s process `pid`; its /tasks/exit, told live with 137 and answered
/// by `wait` with 137.
fn kill_victim(d: &Daemon, events: &Events, victim: &str, pid: u32) -> Event {
    sigkill(pid);
    let seen = events.until("the victim's exit", |e| {
        e.topic == Topic::TaskExit && e.container_id == victim
    });
    let live_exit = seen.last().unwrap().clone();
    assert_eq!(exit_code_of(&live_exit), Some(137));
    assert_eq!(d.wait_code("", victim, None), 137);
    live_exit
}

fn exit_code_of(e: &Event) -> Option<u32> {
    e.exit.map(|x| x.code)
}

/// The init exits of `id` among `events`.
fn init_exits<'a>(events: &'a [Event], id: &str) -> Vec<&'a Event> {
    events
        .iter()
        .filter(|e| {
            e.topic == Topic::TaskExit
                && e.container_id == id
                && e.process_id.as_deref() == Some(corral::INIT_PROCESS)
        })
        .collect()
}

/// Every event in the journal's files (the fixture's replay waits for the last number
/// handed out, which a journal that failed appends never holds).
fn journal_on_disk(d: &Daemon) -> Vec<Event> {
    corral::journal::replay(&d.journal_dir(), corral::Since::Seq(0), u64::MAX)
}

/// The state dir on a full tmpfs: a create fails with the ENOSPC it met; a running
/// container's exit is still reported live (it comes over the exit fifo, not the disk);
/// once space is back, everything works again and nothing is left behind.
#[test]
fn a_full_state_dir_fails_creates_clearly_and_loses_no_exit() {
    let fx = Fixture::on_tmpfs("faults_state_full", |d| d.state_dir.clone(), "16m");
    let d = &fx.d;
    let sleeper = d.bundle("sleep", &["sleep", "1000"]);
    let ok = d.bundle("ok", &["true"]);
    let running = unique_id("full-run");
    let pid = d.run(&running, &sleeper).pid;
    let killed = unique_id("full-kill");
    let killed_pid = d.run(&killed, &sleeper).pid;
    let events = Events::subscribe(&d.socket, all_default());

    let filler = fill(fx.mounted());
    let refused = unique_id("full-new");
    let err = d.create(run_req(&refused, &sleeper)).unwrap_err();
    eprintln!("create on a full state dir: {err}");
    assert!(
        matches!(&err, Error::Internal(m) if m.contains("state.json: No space left on device")),
        "the failure does not name the file and ENOSPC: {err:?}"
    );
    assert!(
        !d.container_state_dir("default", &refused).exists(),
        "a failed create leaves its state dir"
    );
    assert!(
        !d.list_ids("default").contains(&refused),
        "a failed create is listed"
    );
    assert_exit_told_live(d, &events, &running, pid);
    assert_eq!(
        d.client().state("", &running).unwrap().status,
        Status::Stopped
    );
    // Its `exit.published` marker could not be written (the journal's line may still fit
    // in the segment's last page): logged, and harmless, the journal has the exit.
    wait_until(
        LIVENESS,
        "the marker's (or the journal's) failure logged",
        || {
            let log = d.log_text();
            log.contains("exit.published: No space left on device")
                || log.contains("cannot journal event")
        },
    );

    // A user's kill saves `stopped_by_user` in state.json before signalling: that save
    // fails (logged), and the kill goes ahead.
    d.client().kill(kill_init_req(&killed)).unwrap();
    assert_eq!(d.wait_code("", &killed, None), 137);
    assert!(!alive(killed_pid as i32));
    let state_json = format!("{}/state.json: No space left on device", killed);
    assert!(
        d.log_text().contains(&state_json),
        "the failed save is not logged"
    );

    // Space back: the refused id is free and works; the old container deletes cleanly.
    std::fs::remove_file(&filler).unwrap();
    d.assert_id_reusable(&refused, &ok);
    for id in [&running, &killed] {
        d.delete("", id, false).unwrap();
        d.assert_no_leftovers("default", id);
    }
    assert!(d.list_ids("default").is_empty());
    let zombies = zombies_under(d.pid());
    assert!(zombies.is_empty(), "zombies under corrald: {zombies:?}");
}

/// The journal on a full tmpfs of its own: events are still delivered live and the
/// failure is logged; the journal keeps what it held; after a daemon restart, an exit that
/// did not reach the journal is published again (with its code), and numbering goes on
/// after every number already handed out.
#[test]
fn a_full_journal_keeps_delivering_and_republishes_unjournaled_exits() {
    let mut fx = Fixture::on_tmpfs("faults_journal_full", |d| d.journal_dir(), "1m");
    let sleeper = fx.d.bundle("sleep", &["sleep", "1000"]);
    let victim = unique_id("jfull-victim");
    let other = unique_id("jfull-other");
    let victim_pid = fx.d.run(&victim, &sleeper).pid;
    fx.d.run(&other, &sleeper);
    let events = Events::subscribe(&fx.d.socket, all_default());

    let filler = fill(fx.mounted());
    // The segment's last page may still hold a few lines: events until an append fails.
    let mut n = 0;
    while !fx.d.log_text().contains("cannot journal event") {
        assert!(n < 100, "the journal never failed to append");
        let exec = format!("p{n}");
        fx.d.client()
            .exec(exec_req(&other, &exec, &["true"]))
            .unwrap();
        assert_eq!(fx.d.wait_code("", &other, Some(&exec)), 0);
        n += 1;
    }
    let first_failed: u64 =
        fx.d.log_text()
            .lines()
            .find(|l| l.contains("cannot journal event"))
            .and_then(|l| {
                l.split("seq=")
                    .nth(1)?
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()
            })
            .unwrap();
    eprintln!("the first event the full journal could not take: {first_failed}");
    let live_exit = kill_victim(&fx.d, &events, &victim, victim_pid);
    // More failing appends than the journal keeps segments.
    for n in 0..6 {
        let exec = format!("e{n}");
        fx.d.client()
            .exec(exec_req(&other, &exec, &["sh", "-c", "exit 3"]))
            .unwrap();
        assert_eq!(fx.d.wait_code("", &other, Some(&exec)), 3);
    }
    let live = events.until("the last exec's exit", |e| {
        e.topic == Topic::TaskExit && e.process_id.as_deref() == Some("e5")
    });
    let highest_live = live.last().unwrap().seq;
    assert!(live_exit.seq >= first_failed);
    let journaled = journal_on_disk(&fx.d);
    let seqs: Vec<u64> = journaled.iter().map(|e| e.seq).collect();
    assert_eq!(
        seqs,
        (1..first_failed).collect::<Vec<_>>(),
        "a full journal lost what it held, or journaled what it could not"
    );

    // Space back, one more event journaled, then a restart.
    std::fs::remove_file(&filler).unwrap();
    fx.d.client()
        .exec(exec_req(&other, "after", &["true"]))
        .unwrap();
    assert_eq!(fx.d.wait_code("", &other, Some("after")), 0);
    fx.d.stop();
    fx.d.restart();
    let after = journal_on_disk(&fx.d);
    let seqs: Vec<u64> = after.iter().map(|e| e.seq).collect();
    let kept = (first_failed - 1) as usize;
    assert_eq!(
        &seqs[..kept],
        &(1..first_failed).collect::<Vec<_>>()[..],
        "{after:#?}"
    );
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "journal out of order: {seqs:?}"
    );
    let mut keys = BTreeSet::new();
    for e in after.iter().filter(|e| e.topic == Topic::TaskExit) {
        assert!(
            keys.insert((e.container_id.clone(), e.process_id.clone(), e.pid)),
            "exit journaled twice: {e:?}"
        );
    }
    assert!(
        seqs[kept] > highest_live,
        "a number handed out live was given again: {seqs:?}, live up to {highest_live}"
    );
    let exits = init_exits(&after, &victim);
    assert_eq!(exits.len(), 1, "{after:#?}");
    assert_eq!(exit_code_of(exits[0]), Some(137));
    assert_eq!(exits[0].pid, live_exit.pid);
    assert!(exits[0].seq > highest_live, "{exits:#?}");
    // The execs' exits that did not reach the journal are published again too.
    for n in 0..6 {
        let exec = format!("e{n}");
        let n_exits = after
            .iter()
            .filter(|e| e.topic == Topic::TaskExit && e.process_id.as_deref() == Some(&exec))
            .count();
        assert_eq!(n_exits, 1, "{exec}: {after:#?}");
    }
    for id in [&victim, &other] {
        fx.d.delete("", id, true).unwrap();
        fx.d.assert_no_leftovers("default", id);
    }
}

/// The state dir on an ext4 that starts failing with EIO (its journal with it): a create
/// fails with an error naming the path and EIO, running containers keep running and their
/// exits are told live, kills and waits work, the daemon answers. Once the disk is back
/// (unmounted and mounted again) a restarted daemon adopts what was there, publishes the
/// exits again, with the unknown code (255: nothing of them reached the disk), and
/// everything deletes cleanly.
#[test]
fn a_state_dir_failing_with_eio_fails_creates_clearly_and_loses_no_exit() {
    let mut fx = Fixture::on_ext4("faults_state_eio", |d| d.state_dir.clone(), "64M");
    let sleeper = fx.d.bundle("sleep", &["sleep", "1000"]);
    let ok = fx.d.bundle("ok", &["true"]);
    let running = unique_id("eio-run");
    let pid = fx.d.run(&running, &sleeper).pid;
    let killed = unique_id("eio-kill");
    let killed_pid = fx.d.run(&killed, &sleeper).pid;
    let events = Events::subscribe(&fx.d.socket, all_default());

    fail_with_eio(fx.mounted());
    let refused = unique_id("eio-new");
    let err = fx.d.create(run_req(&refused, &sleeper)).unwrap_err();
    eprintln!("create on a state dir failing with EIO: {err}");
    let state = fx.d.state_dir.display().to_string();
    assert!(
        matches!(&err, Error::Internal(m) if m.contains(&state)
            && m.contains("Input/output error (os error 5)")),
        "the failure does not name the path and EIO: {err:?}"
    );
    assert!(
        !fx.d.list_ids("default").contains(&refused),
        "a failed create is listed"
    );
    fx.d.assert_alive();
    assert_exit_told_live(&fx.d, &events, &running, pid);
    // A user's kill goes ahead (saving `stopped_by_user` fails, logged).
    fx.d.client().kill(kill_init_req(&killed)).unwrap();
    assert_eq!(fx.d.wait_code("", &killed, None), 137);
    assert!(!alive(killed_pid as i32));
    let seen = events.until("the killed one's exit", |e| {
        e.topic == Topic::TaskExit && e.container_id == killed
    });
    assert_eq!(exit_code_of(seen.last().unwrap()), Some(137));
    wait_until(LIVENESS, "the journal's failure logged", || {
        fx.d.log_text()
            .contains("cannot journal event: Input/output error")
    });
    for id in [&running, &killed] {
        let s = fx.d.client().state("", id).unwrap();
        assert_eq!(s.status, Status::Stopped, "{id}");
    }
    fx.d.assert_alive();
    let zombies = zombies_under(fx.d.pid());
    assert!(zombies.is_empty(), "zombies under corrald: {zombies:?}");

    // The disk back: a new daemon adopts both as stopped.
    fx.d.stop();
    fx.remount();
    fx.d.restart();
    let journal = journal_on_disk(&fx.d);
    for id in [&running, &killed] {
        let s = fx.d.client().state("", id).unwrap();
        let exits = init_exits(&journal, id);
        eprintln!(
            "{id} after the disk came back: {:?} {:?}; journaled exits {exits:?}",
            s.status, s.exit
        );
        assert_eq!(s.status, Status::Stopped, "{id}");
        // Nothing of the exit reached the disk (the shim's `exitStatus`, the marker, the
        // journal): it is published again once, with the unknown code.
        assert_eq!(exits.len(), 1, "{id}: {journal:#?}");
        assert_eq!(
            exit_code_of(exits[0]),
            Some(corral::UNKNOWN_EXIT_CODE),
            "{id}"
        );
        fx.d.delete("", id, false).unwrap();
        fx.d.assert_no_leftovers("default", id);
    }
    fx.d.assert_id_reusable(&refused, &ok);
    assert!(fx.d.list_ids("default").is_empty());
}

/// The journal on an ext4 of its own that starts failing with EIO: events are still
/// delivered live and the failure is logged, containers are still created, run and
/// deleted; once the disk is back, a restarted daemon publishes again the exit that did
/// not reach the journal, and the journal's numbers still only grow.
#[test]
fn a_journal_failing_with_eio_keeps_delivering_and_republishes_unjournaled_exits() {
    let mut fx = Fixture::on_ext4("faults_journal_eio", |d| d.journal_dir(), "64M");
    let sleeper = fx.d.bundle("sleep", &["sleep", "1000"]);
    let ok = fx.d.bundle("ok", &["true"]);
    let victim = unique_id("jeio-victim");
    let other = unique_id("jeio-other");
    let victim_pid = fx.d.run(&victim, &sleeper).pid;
    fx.d.run(&other, &sleeper);
    let events = Events::subscribe(&fx.d.socket, all_default());
    let before = journal_on_disk(&fx.d);

    fail_with_eio(fx.mounted());
    fx.d.client()
        .exec(exec_req(&other, "e1", &["sh", "-c", "exit 3"]))
        .unwrap();
    assert_eq!(fx.d.wait_code("", &other, Some("e1")), 3);
    events.until("the exec's exit", |e| {
        e.topic == Topic::TaskExit && e.process_id.as_deref() == Some("e1")
    });
    let live_exit = kill_victim(&fx.d, &events, &victim, victim_pid);
    wait_until(LIVENESS, "the journal's failure logged", || {
        fx.d.log_text()
            .contains("cannot journal event: Input/output error (os error 5)")
    });
    // Containers still come and go.
    let fresh = unique_id("jeio-fresh");
    fx.d.assert_id_reusable(&fresh, &ok);
    fx.d.assert_alive();
    let highest_live = events
        .until("the fresh one's delete", |e| {
            e.topic == Topic::TaskDelete && e.container_id == fresh
        })
        .last()
        .unwrap()
        .seq;

    // The disk back: what the journal held is there, the victim's exit is published again.
    fx.d.stop();
    fx.remount();
    fx.d.restart();
    let after = journal_on_disk(&fx.d);
    let seqs: Vec<u64> = after.iter().map(|e| e.seq).collect();
    assert_eq!(
        &after[..before.len()]
            .iter()
            .map(|e| e.seq)
            .collect::<Vec<_>>(),
        &before.iter().map(|e| e.seq).collect::<Vec<_>>(),
        "the journal lost what it held"
    );
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "journal out of order: {seqs:?}"
    );
    let exits = init_exits(&after, &victim);
    assert_eq!(exits.len(), 1, "{after:#?}");
    assert_eq!(exit_code_of(exits[0]), Some(137));
    assert_eq!(exits[0].pid, live_exit.pid);
    // Its number follows what the journal kept. The numbers handed out live while the
    // journal failed are handed out again: the new daemon knows only the journal's.
    let kept = before.last().map_or(0, |e| e.seq);
    assert!(exits[0].seq > kept, "{exits:#?}");
    eprintln!(
        "numbers handed out live up to {highest_live}, the journal kept up to {kept}; \
         the exit published again got {}",
        exits[0].seq
    );
    for id in [&victim, &other] {
        fx.d.delete("", id, true).unwrap();
        fx.d.assert_no_leftovers("default", id);
    }
}

/// A runtime that hangs on `pause`: the call times out after `--runtime-timeout`, the
/// client gets a Timeout naming the verb, the container (and another) keep working, and no
/// runtime process is left.
#[test]
fn a_hanging_runtime_call_times_out_and_leaves_nothing() {
    let d = Daemon::start_with("faults_hang", &["--runtime-timeout", "2"]);
    let wrapper = d.path("hanging-runtime");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nfor a in \"$@\"; do\n  if [ \"$a\" = pause ]; then exec sleep 999; fi\ndone\nexec {} \"$@\"\n",
            runc().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let b = d.bundle("sleep", &["sleep", "1000"]);
    let stuck = unique_id("hang");
    let fine = unique_id("hang-fine");
    let mut req = run_req(&stuck, &b);
    req.runtime = Some(wrapper.clone());
    let pid = d.create(req).unwrap().pid;
    d.run(&fine, &b);

    let socket = d.socket.clone();
    let id = stuck.clone();
    let started = Instant::now();
    let fine2 = fine.clone();
    let (err, others, own) = within(LIVENESS, "pause through a hanging runtime", move || {
        let pause = std::thread::spawn({
            let socket = socket.clone();
            let id = id.clone();
            move || Client::connect(&socket)?.pause("", &id)
        });
        std::thread::sleep(Duration::from_millis(300));
        // Meanwhile the list and the other container answer at once; the paused one's own
        // state waits for the call to end (its mailbox is held by the pause).
        let mut c = Client::connect(&socket).unwrap();
        let t = Instant::now();
        let listed = c.list("", BTreeMap::new()).unwrap().len();
        let _ = c.state("", &fine2).unwrap();
        let others = (listed, t.elapsed());
        let t = Instant::now();
        let _ = c.state("", &id).unwrap();
        let own = t.elapsed();
        (pause.join().unwrap(), others, own)
    });
    let took = started.elapsed();
    let err = err.unwrap_err();
    eprintln!("pause through a hanging runtime, after {took:?}: {err}");
    assert!(
        matches!(&err, Error::Timeout(m) if m.contains("pause")),
        "not a Timeout naming pause: {err:?}"
    );
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(10),
        "{took:?}"
    );
    assert_eq!(others.0, 2);
    assert!(
        others.1 < Duration::from_secs(1),
        "list and state took {:?}",
        others.1
    );
    eprintln!(
        "list + state of another: {:?}; state of the one being paused: {own:?}",
        others.1
    );
    // No runtime process is left (the wrapper's whole group was killed).
    wait_until(LIVENESS, "the hanging runtime to be gone", || {
        // (The shim, whose arguments name the runtime, is not a runtime process.)
        processes()
            .iter()
            .filter(|p| p.comm != "corral-shim")
            .all(|p| {
                std::fs::read_to_string(format!("/proc/{}/cmdline", p.pid))
                    .map(|c| !c.contains("hanging-runtime") && c != "sleep\u{0}999\u{0}")
                    .unwrap_or(true)
            })
    });
    // The container still runs and works: state, exec, kill, wait, delete.
    let s = d.client().state("", &stuck).unwrap();
    assert_eq!((s.status, s.pid), (Status::Running, pid), "{s:?}");
    d.client()
        .exec(exec_req(&stuck, "x", &["sh", "-c", "exit 4"]))
        .unwrap();
    assert_eq!(d.wait_code("", &stuck, Some("x")), 4);
    d.client().kill(kill_init_req(&stuck)).unwrap();
    assert_eq!(d.wait_code("", &stuck, None), 137);
    d.client().kill(kill_init_req(&fine)).unwrap();
    assert_eq!(d.wait_code("", &fine, None), 137);
    for id in [&stuck, &fine] {
        d.delete("", id, false).unwrap();
        d.assert_no_leftovers("default", id);
    }
    let zombies = zombies_under(d.pid());
    assert!(zombies.is_empty(), "zombies under corrald: {zombies:?}");
}

/// A SIGSTOPped shim: its process's death cannot be reported while it is stopped (nobody
/// reaps it), other containers and lists are not held up, and after SIGCONT the exit is
/// told exactly once with the right code.
#[test]
fn a_stopped_shim_delays_its_exit_and_blocks_nobody_else() {
    let d = Daemon::start("faults_sigstop");
    let b = d.bundle("sleep", &["sleep", "1000"]);
    let frozen = unique_id("stop-shim");
    let fine = unique_id("stop-fine");
    let pid = d.run(&frozen, &b).pid;
    let fine_pid = d.run(&fine, &b).pid;
    let shim = nix::unistd::Pid::from_raw(d.shim_pid("default", &frozen, "init"));
    let events = Events::subscribe(&d.socket, all_default());
    nix::sys::signal::kill(shim, nix::sys::signal::Signal::SIGSTOP).unwrap();
    wait_until(LIVENESS, "the shim to stop", || {
        proc_entry(shim.as_raw()).is_some_and(|p| p.state == 'T')
    });
    // The kill goes through runc, which does not need the shim.
    d.client().kill(kill_init_req(&frozen)).unwrap();
    wait_until(LIVENESS, "the process to die", || !alive(pid as i32));
    assert_eq!(
        proc_entry(pid as i32).map(|p| p.state),
        Some('Z'),
        "the dead process should stay a zombie of the stopped shim"
    );
    // A waiter is not answered while the shim is stopped...
    let socket = d.socket.clone();
    let id = frozen.clone();
    let waiter = std::thread::spawn(move || Client::connect(&socket)?.wait("", &id, None));
    let t = Instant::now();
    let mut c = d.client();
    assert_eq!(c.list("", BTreeMap::new()).unwrap().len(), 2);
    assert_eq!(c.state("", &fine).unwrap().pid, fine_pid);
    assert_eq!(c.state("", &frozen).unwrap().status, Status::Running);
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    std::thread::sleep(Duration::from_millis(700));
    assert!(
        !waiter.is_finished(),
        "wait answered while the shim was stopped"
    );
    let quiet = events.drain(Duration::from_millis(100));
    assert!(
        quiet.is_empty(),
        "events while the shim was stopped: {quiet:#?}"
    );
    // ...and is once the shim goes on.
    nix::sys::signal::kill(shim, nix::sys::signal::Signal::SIGCONT).unwrap();
    let status = within(LIVENESS, "the waiter", move || waiter.join().unwrap()).unwrap();
    assert_eq!(status.code, 137);
    let seen = events.until("the exit", |e| e.topic == Topic::TaskExit);
    assert_eq!(exit_code_of(seen.last().unwrap()), Some(137));
    let more = events.drain(Duration::from_millis(500));
    assert!(more.is_empty(), "more events after the exit: {more:#?}");
    let journal = d.replay(all_default());
    assert_eq!(init_exits(&journal, &frozen).len(), 1, "{journal:#?}");
    for id in [&frozen, &fine] {
        d.delete("", id, true).unwrap();
        d.assert_no_leftovers("default", id);
    }
    let zombies = zombies_under(d.pid());
    assert!(zombies.is_empty(), "zombies under corrald: {zombies:?}");
}

/// What the workload saw: each container's init exit code, each exec's.
#[derive(Default)]
struct Seen {
    inits: BTreeMap<String, u32>,
    execs: BTreeMap<(String, String), u32>,
    ids: BTreeSet<String>,
}

/// Whether an error means the daemon went away (the call may or may not have landed).
fn daemon_gone(e: &Error) -> bool {
    matches!(e, Error::Internal(_) | Error::Protocol(_))
}

/// One RPC, retried across daemon restarts: `f` gets the attempt number (0 first) and a
/// fresh client; an error that means the daemon went away is retried.
fn retry<T>(
    socket: &Path,
    what: &str,
    ops: &AtomicU64,
    mut f: impl FnMut(u32, &mut Client) -> corral::Result<T>,
) -> corral::Result<T> {
    let deadline = Instant::now() + LIVENESS;
    let mut attempt = 0;
    loop {
        assert!(
            Instant::now() < deadline,
            "{what}: no answer within {LIVENESS:?}"
        );
        let r = Client::connect(socket).and_then(|mut c| f(attempt, &mut c));
        match r {
            Err(e) if daemon_gone(&e) => {
                attempt += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            r => {
                ops.fetch_add(1, Ordering::SeqCst);
                return r;
            }
        }
    }
}

/// Accepts `r`, or an error a retry may get for a call that had landed before the daemon
/// died (`ok_after_retry` decides which).
fn landed<T>(
    what: &str,
    attempt_r: (u32, corral::Result<T>),
    ok_after_retry: impl Fn(&Error) -> bool,
) {
    let (attempts, r) = attempt_r;
    if let Err(e) = r {
        if !(attempts > 0 && ok_after_retry(&e)) {
            let id = what.split_whitespace().nth(1).unwrap_or_default();
            let dir = DIAG.get().cloned().unwrap_or_default();
            let events: Vec<String> = corral::journal::replay(
                &dir.join("state/_events"),
                corral::Since::Seq(0),
                u64::MAX,
            )
            .into_iter()
            .filter(|e| e.container_id == id)
            .map(|e| {
                format!(
                    "{} {} {:?} {:?} {:?}",
                    e.seq,
                    e.topic.as_str(),
                    e.process_id,
                    e.pid,
                    e.exit
                )
            })
            .collect();
            let log: Vec<String> = std::fs::read_to_string(dir.join("corrald.log"))
                .unwrap_or_default()
                .lines()
                .filter(|l| l.contains(id) || l.contains("ready") || l.contains("adopt"))
                .filter(|l| !l.contains("DEBUG corral::rpc"))
                .map(str::to_string)
                .collect();
            panic!(
                "{what}: {e} (after {attempts} retries)\njournal:\n{}\nlog:\n{}",
                events.join("\n"),
                log.join("\n")
            );
        }
    }
}

/// The kill -9 test's temp dir, for diagnostics.
static DIAG: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

fn workload_thread(
    socket: &Path,
    t: usize,
    bundles: &[(PathBuf, u32)],
    sleeper: &Path,
    ops: &AtomicU64,
    enough: &dyn Fn() -> bool,
    seen: &Mutex<Seen>,
) {
    let mut n = 0usize;
    while !enough() {
        n += 1;
        let id = unique_id(&format!("w{t}"));
        seen.lock().unwrap().ids.insert(id.clone());
        let mut tries = 0;
        if n % 2 == 0 {
            // Kind A: create, start, exec, wait the exec, kill, wait, delete.
            let code = 10 + (n % 50) as u32;
            let r = retry(socket, "create", ops, |a, c| {
                tries = a;
                c.create(CreateRequest {
                    start: false,
                    ..run_req(&id, sleeper)
                })
            });
            landed(&format!("create {id}"), (tries, r), |e| {
                matches!(e, Error::AlreadyExists(_))
            });
            let create_tries = tries;
            let r = retry(socket, "start", ops, |a, c| {
                tries = a;
                c.start("", &id)
            });
            // After a retried create, the container may be one the next daemon adopted:
            // told `running` until `runtime state` says `created`, so the start may be
            // refused; the exec below starts it then.
            let disturbed = tries + create_tries;
            landed(&format!("start {id}"), (disturbed, r), |e| {
                matches!(e, Error::WrongState(_))
            });
            let exec = format!("x{n}");
            let script = format!("exit {code}");
            let mut retried = 0;
            loop {
                let r = retry(socket, "exec", ops, |a, c| {
                    tries = a;
                    c.exec(exec_req(&id, &exec, &["sh", "-c", &script]))
                });
                match r {
                    // A start in flight when the daemon died: the next daemon tells the
                    // container `running` until `runtime state` says `created`, so the
                    // start's retry may have been refused. Start it now.
                    Err(Error::WrongState(m)) if m.contains("is created") && retried < 20 => {
                        retried += 1;
                        let _ = retry(socket, "start again", ops, |_, c| c.start("", &id));
                    }
                    r => {
                        landed(&format!("exec {id}"), (tries, r), |e| {
                            matches!(e, Error::AlreadyExists(_))
                        });
                        break;
                    }
                }
            }
            if retried > 0 {
                eprintln!("{id}: started again before its exec ({retried}x)");
            }
            let got = retry(socket, "wait exec", ops, |_, c| {
                c.wait("", &id, Some(&exec))
            })
            .unwrap_or_else(|e| panic!("wait {id} {exec}: {e}"));
            assert_eq!(got.code, code, "{id} {exec}");
            seen.lock()
                .unwrap()
                .execs
                .insert((id.clone(), exec), got.code);
            let r = retry(socket, "kill", ops, |a, c| {
                tries = a;
                c.kill(kill_init_req(&id))
            });
            landed(&format!("kill {id}"), (tries, r), |_| true);
            let got = retry(socket, "wait", ops, |_, c| c.wait("", &id, None))
                .unwrap_or_else(|e| panic!("wait {id}: {e}"));
            assert_eq!(got.code, 137, "{id}");
            seen.lock().unwrap().inits.insert(id.clone(), got.code);
        } else {
            // Kind B: run to its own exit code, wait, delete.
            let (bundle, code) = &bundles[n % bundles.len()];
            let r = retry(socket, "run", ops, |a, c| {
                tries = a;
                c.create(run_req(&id, bundle))
            });
            landed(&format!("run {id}"), (tries, r), |e| {
                matches!(e, Error::AlreadyExists(_))
            });
            let got = retry(socket, "wait", ops, |_, c| c.wait("", &id, None))
                .unwrap_or_else(|e| panic!("wait {id}: {e}"));
            assert_eq!(got.code, *code, "{id}");
            seen.lock().unwrap().inits.insert(id.clone(), got.code);
        }
        let r = retry(socket, "delete", ops, |a, c| {
            tries = a;
            c.delete("", &id, false)
        });
        landed(&format!("delete {id}"), (tries, r), |e| {
            matches!(e, Error::NotFound(_))
        });
    }
}

/// `kill -9` of corrald at random points of a workload of short containers from two
/// client threads, 20 times (each time restarted at once): every exit the workload saw is
/// in the journal exactly once with its code, no exit is told twice, the journal's numbers
/// run 1, 2, 3... across every restart, and nothing is left: no zombie, no container, no
/// state, no cgroup.
#[test]
fn kill_9_at_random_points_loses_and_duplicates_nothing() {
    let rounds: usize = std::env::var("FAULTS_KILL_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let min_ops: u64 = std::env::var("FAULTS_OPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let mut d = Daemon::start("faults_kill9");
    let _ = DIAG.set(d.dir.clone());
    let sleeper = d.bundle("sleep", &["sleep", "1000"]);
    let bundles: Vec<(PathBuf, u32)> = (0..4u32)
        .map(|k| {
            let code = 3 + k;
            let script = format!("exit {code}");
            (
                d.bundle(&format!("exit{code}"), &["sh", "-c", &script]),
                code,
            )
        })
        .collect();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("kill -9 workload: seed {seed}");
    let mut rng = seed;
    let mut next = move |below: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % below
    };
    let ops = AtomicU64::new(0);
    let kills_done = AtomicBool::new(false);
    let seen = Mutex::new(Seen::default());
    let socket = d.socket.clone();
    let started = Instant::now();
    let mut at_kill = Vec::new();
    let enough = || kills_done.load(Ordering::SeqCst) && ops.load(Ordering::SeqCst) >= min_ops;
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..2)
            .map(|t| {
                let (socket, bundles, sleeper, ops, seen) =
                    (&socket, &bundles, &sleeper, &ops, &seen);
                let enough = &enough;
                s.spawn(move || workload_thread(socket, t, bundles, sleeper, ops, enough, seen))
            })
            .collect();
        for _ in 0..rounds {
            // Spread the kills over about the time the workload needs.
            std::thread::sleep(Duration::from_millis(100 + next(900)));
            if workers.iter().any(|w| w.is_finished()) {
                break;
            }
            at_kill.push(ops.load(Ordering::SeqCst));
            d.kill9();
            std::thread::sleep(Duration::from_millis(next(50)));
            d.restart();
        }
        kills_done.store(true, Ordering::SeqCst);
        for w in workers {
            if let Err(p) = w.join() {
                std::panic::resume_unwind(p);
            }
        }
    });
    let total_ops = ops.load(Ordering::SeqCst);
    eprintln!(
        "kill -9 workload: {total_ops} operations, {} kills (at ops {at_kill:?}), {:?}",
        at_kill.len(),
        started.elapsed()
    );
    assert_eq!(at_kill.len(), rounds, "a worker stopped early");
    let seen = seen.into_inner().unwrap();

    // The journal: numbers 1, 2, 3... with no gap or repeat across the restarts.
    let journal = d.replay(EventFilter::default());
    let seqs: Vec<u64> = journal.iter().map(|e| e.seq).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "the journal's numbering has a gap or a repeat"
    );
    assert_eq!(d.info().last_seq, seqs.len() as u64);
    // No exit told twice.
    let mut keys = BTreeSet::new();
    for e in journal.iter().filter(|e| e.topic == Topic::TaskExit) {
        let key = (
            e.namespace.clone(),
            e.container_id.clone(),
            e.process_id.clone(),
            e.pid,
        );
        assert!(keys.insert(key), "exit told twice: {e:?}");
    }
    // Every exit the workload saw, told once with its code.
    for (id, code) in &seen.inits {
        let exits = init_exits(&journal, id);
        assert_eq!(exits.len(), 1, "{id}: {exits:#?}");
        assert_eq!(exit_code_of(exits[0]), Some(*code), "{id}");
    }
    for ((id, exec), code) in &seen.execs {
        let exits: Vec<&Event> = journal
            .iter()
            .filter(|e| {
                e.topic == Topic::TaskExit
                    && e.container_id == *id
                    && e.process_id.as_deref() == Some(exec)
            })
            .collect();
        assert_eq!(exits.len(), 1, "{id} {exec}: {exits:#?}");
        assert_eq!(exit_code_of(exits[0]), Some(*code), "{id} {exec}");
    }
    // Nothing left.
    assert!(
        d.list_ids("default").is_empty(),
        "{:?}",
        d.list_ids("default")
    );
    for id in &seen.ids {
        d.assert_no_leftovers("default", id);
    }
    let set_aside: Vec<String> = std::fs::read_dir(d.state_dir.join(corral::layout::SET_ASIDE_DIR))
        .map(|dir| {
            dir.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    eprintln!("kill -9 workload: set aside: {set_aside:?}");
    let ours: Vec<ProcEntry> = zombies_under(d.pid())
        .into_iter()
        .chain(zombies_under(std::process::id() as i32))
        .collect();
    assert!(
        ours.is_empty(),
        "zombies under corrald or the test: {ours:?}"
    );
    // Shims whose daemon was killed belong to the host's init (or subreaper), which reaps
    // them in its own time: none may stay a zombie.
    let mut left = Vec::new();
    let reaped = (0..200).any(|_| {
        left = processes()
            .into_iter()
            .filter(|p| p.state == 'Z' && (p.comm == "corral-shim" || p.comm == "runc"))
            .collect();
        left.is_empty() || {
            std::thread::sleep(Duration::from_millis(50));
            false
        }
    });
    assert!(reaped, "zombie shims or runtimes left: {left:?}");
}
