//! The event journal: every published event, one JSON line each, in segment files under
//! `<state>/_events/` named `events-<first seq, 20 digits>.jsonl`.
//!
//! - Sequence numbers continue across daemon restarts: the journal is read at start.
//! - Rotation never truncates in place: a new segment is created, and the oldest beyond
//!   [`KEEP_SEGMENTS`] are removed whole.
//! - A corrupt or torn tail (a crash mid-write) is skipped with a warning, and appending
//!   resumes in a fresh segment so no new line is ever glued onto a torn one.

use crate::types::{Event, Since, Topic};
use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

/// Events per segment before a new one is started (unless [`SEGMENT_EVENTS_ENV`] says).
pub const SEGMENT_EVENTS: u64 = 10_000;
/// An environment variable that overrides [`SEGMENT_EVENTS`], read once per process: for
/// tests that need a journal that rotates after a few events. Not for production.
pub const SEGMENT_EVENTS_ENV: &str = "CORRAL_JOURNAL_SEGMENT_EVENTS";

/// Events per segment: [`SEGMENT_EVENTS`], or a positive [`SEGMENT_EVENTS_ENV`].
pub fn segment_events() -> u64 {
    static SIZE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *SIZE.get_or_init(|| {
        std::env::var(SEGMENT_EVENTS_ENV)
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|&n| n > 0)
            .unwrap_or(SEGMENT_EVENTS)
    })
}
/// Segments kept; older ones are removed whole.
pub const KEEP_SEGMENTS: usize = 4;

/// An exit that made it into the journal: (namespace, container, process, pid).
pub type ExitKey = (String, String, String, u32);

/// The open journal.
pub struct Journal {
    dir: PathBuf,
    current: Option<File>,
    current_count: u64,
}

/// What reading the journal at start found.
pub struct Recovered {
    /// The journal, ready to append.
    pub journal: Journal,
    /// The highest sequence number written so far (0 for none).
    pub last_seq: u64,
    /// Every /tasks/exit still in the journal, so a restart does not publish one twice.
    pub exits: HashSet<ExitKey>,
    /// How many corrupt lines were skipped.
    pub corrupt_lines: usize,
}

/// The journal's segment files, oldest first.
pub fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("events-") && n.ends_with(".jsonl"))
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// Reads one segment; `f` sees every event that parses. Returns (corrupt lines, torn tail).
fn read_segment(path: &Path, mut f: impl FnMut(Event)) -> (usize, bool) {
    let Ok(file) = File::open(path) else {
        return (0, false); // rotated away meanwhile
    };
    let mut reader = BufReader::new(file);
    let mut line = Vec::new();
    let (mut corrupt, mut torn, mut n) = (0, false, 0usize);
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!("journal {}: read error: {e}", path.display());
                break;
            }
        }
        n += 1;
        if line.last() != Some(&b'\n') {
            torn = true;
        }
        match serde_json::from_slice::<Event>(line.trim_ascii_end()) {
            Ok(event) => f(event),
            Err(e) => {
                corrupt += 1;
                tracing::warn!(
                    "journal {} line {n}: skipping a corrupt entry ({e})",
                    path.display()
                );
            }
        }
    }
    (corrupt, torn || corrupt > 0)
}

impl Journal {
    /// Opens (creating) the journal in `dir` and reads what it holds.
    pub fn open(dir: &Path) -> io::Result<Recovered> {
        fs::create_dir_all(dir)?;
        let files = segments(dir);
        let mut last_seq = 0;
        let mut exits = HashSet::new();
        let mut corrupt_lines = 0;
        let mut current_count = 0;
        let mut last_damaged = false;
        for (i, path) in files.iter().enumerate() {
            let mut count = 0;
            let (corrupt, damaged) = read_segment(path, |e| {
                count += 1;
                last_seq = last_seq.max(e.seq);
                if e.topic == Topic::TaskExit {
                    exits.insert((
                        e.namespace,
                        e.container_id,
                        e.process_id.unwrap_or_default(),
                        e.pid.unwrap_or(0),
                    ));
                }
            });
            corrupt_lines += corrupt;
            if i + 1 == files.len() {
                current_count = count;
                last_damaged = damaged;
            }
        }
        // Append to the newest segment unless its tail is damaged: then start a new one.
        let current = match files.last() {
            Some(path) if !last_damaged => Some(OpenOptions::new().append(true).open(path)?),
            _ => None,
        };
        Ok(Recovered {
            journal: Journal {
                dir: dir.to_path_buf(),
                current,
                current_count,
            },
            last_seq,
            exits,
            corrupt_lines,
        })
    }

    /// Appends one event (one `write`); rotates first when the segment is full.
    pub fn append(&mut self, event: &Event) -> io::Result<()> {
        if self.current.is_none() || self.current_count >= segment_events() {
            self.rotate(event.seq)?;
        }
        let mut line = serde_json::to_vec(event).map_err(io::Error::other)?;
        line.push(b'\n');
        let file = self
            .current
            .as_mut()
            .ok_or_else(|| io::Error::other("no segment"))?;
        if let Err(e) = file.write_all(&line) {
            // A part of the line may be in the file: never append after it. A segment that
            // held nothing else (a disk full since it was started) is emptied and kept for
            // the next event, so that failing appends do not start (and rotate away) one
            // segment each.
            if self.current_count > 0 || file.set_len(0).is_err() {
                self.current = None;
            }
            return Err(e);
        }
        self.current_count += 1;
        if self.current_count == 1 {
            // Old segments go only once the new one holds an event.
            self.prune();
        }
        Ok(())
    }

    fn rotate(&mut self, first_seq: u64) -> io::Result<()> {
        let path = self.dir.join(format!("events-{first_seq:020}.jsonl"));
        if path.exists() {
            // Only a segment none of whose lines could be read has the next sequence number
            // as its name: keep it for a person to look at, under another name.
            let mut aside = path.as_os_str().to_owned();
            aside.push(format!(".torn-{}", crate::types::now_ns()));
            fs::rename(&path, PathBuf::from(aside))?;
        }
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)?;
        self.current = Some(file);
        self.current_count = 0;
        Ok(())
    }

    fn prune(&self) {
        let files = segments(&self.dir);
        if files.len() > KEEP_SEGMENTS {
            for old in &files[..files.len() - KEEP_SEGMENTS] {
                if let Err(e) = fs::remove_file(old) {
                    tracing::warn!("journal: cannot remove old segment {}: {e}", old.display());
                }
            }
        }
    }
}

/// The journal's events admitted by `since` with a sequence number below `until`, in order.
pub fn replay(dir: &Path, since: Since, until: u64) -> Vec<Event> {
    replay_told(dir, since, until).events
}

/// A replay, and whether it starts later than asked.
#[derive(Debug, Default)]
pub struct Replay {
    /// The events, in order.
    pub events: Vec<Event>,
    /// The first kept sequence number when `since` asked for events older than the oldest
    /// kept segment (removed by rotation); `None` when nothing asked for is gone.
    pub truncated: Option<u64>,
}

/// Like [`replay`], and tells when events that `since` asks for were rotated away: a
/// `Since::Seq` below the oldest kept segment's first sequence number, or a `Since::Time`
/// before the oldest kept event, once the journal has rotated (its oldest segment does not
/// start at 1).
pub fn replay_told(dir: &Path, since: Since, until: u64) -> Replay {
    let files = segments(dir);
    let mut out = Vec::new();
    let first_kept = files.first().and_then(|p| first_seq_of(p));
    let mut first_time = None;
    for (i, path) in files.iter().enumerate() {
        // Skip a segment whose successor starts at or before the wanted seq.
        if let (Since::Seq(s), Some(next)) = (since, files.get(i + 1)) {
            if first_seq_of(next).is_some_and(|n| n <= s) {
                continue;
            }
        }
        read_segment(path, |e| {
            if i == 0 && first_time.is_none() {
                first_time = Some(e.timestamp_ns);
            }
            if since.admits(&e) && e.seq < until {
                out.push(e);
            }
        });
    }
    out.sort_by_key(|e| e.seq);
    out.dedup_by_key(|e| e.seq);
    let truncated = first_kept.filter(|&first| {
        first > 1
            && match since {
                Since::Seq(s) => s < first,
                Since::Time(t) => first_time.is_some_and(|ft| t < ft),
            }
    });
    Replay {
        events: out,
        truncated,
    }
}

fn first_seq_of(path: &Path) -> Option<u64> {
    path.file_name()?
        .to_str()?
        .strip_prefix("events-")?
        .strip_suffix(".jsonl")?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(seq: u64) -> Event {
        Event {
            seq,
            timestamp_ns: seq * 10,
            namespace: "default".into(),
            topic: if seq % 2 == 0 {
                Topic::TaskExit
            } else {
                Topic::TaskStart
            },
            container_id: format!("c{seq}"),
            process_id: Some("init".into()),
            pid: Some(seq as u32),
            exit: None,
            bundle: None,
            restarts: None,
            checkpoint: None,
            image: None,
            snapshot: None,
        }
    }

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("corral-journal-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn sequence_survives_reopen_and_replays() {
        let dir = tmp("reopen");
        let mut r = Journal::open(&dir).unwrap();
        assert_eq!(r.last_seq, 0);
        for s in 1..=5 {
            r.journal.append(&event(s)).unwrap();
        }
        let r = Journal::open(&dir).unwrap();
        assert_eq!(r.last_seq, 5);
        assert!(r
            .exits
            .contains(&("default".into(), "c4".into(), "init".into(), 4)));
        let seqs: Vec<u64> = replay(&dir, Since::Seq(3), 5)
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(seqs, vec![3, 4]);
        let seqs: Vec<u64> = replay(&dir, Since::Time(40), u64::MAX)
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(seqs, vec![4, 5]);
        // Nothing was rotated away: asking from 0 is not told of a truncation.
        assert_eq!(replay_told(&dir, Since::Seq(0), u64::MAX).truncated, None);
        assert_eq!(replay_told(&dir, Since::Time(0), u64::MAX).truncated, None);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn corrupt_tail_is_skipped_and_never_appended_to() {
        let dir = tmp("corrupt");
        let mut r = Journal::open(&dir).unwrap();
        for s in 1..=3 {
            r.journal.append(&event(s)).unwrap();
        }
        drop(r);
        let seg = segments(&dir).pop().unwrap();
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(b"{\"seq\":4,\"topi").unwrap();
        drop(f);
        let mut r = Journal::open(&dir).unwrap();
        assert_eq!(r.last_seq, 3);
        assert_eq!(r.corrupt_lines, 1);
        r.journal.append(&event(4)).unwrap();
        assert_eq!(
            segments(&dir).len(),
            2,
            "a damaged segment gets a successor"
        );
        let seqs: Vec<u64> = replay(&dir, Since::Seq(0), u64::MAX)
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(seqs, vec![1, 2, 3, 4]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_segment_torn_in_its_first_line_is_set_aside_not_appended_to() {
        let dir = tmp("torn-first");
        fs::create_dir_all(&dir).unwrap();
        fs::write(
            dir.join(format!("events-{:020}.jsonl", 1)),
            b"{\"seq\":1,\"to",
        )
        .unwrap();
        let mut r = Journal::open(&dir).unwrap();
        assert_eq!((r.last_seq, r.corrupt_lines), (0, 1));
        r.journal.append(&event(1)).unwrap();
        let seqs: Vec<u64> = replay(&dir, Since::Seq(0), u64::MAX)
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(seqs, vec![1]);
        let names: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(names.iter().any(|n| n.contains(".torn-")), "{names:?}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn rotation_keeps_whole_segments() {
        let dir = tmp("rotate");
        let mut r = Journal::open(&dir).unwrap();
        let total = SEGMENT_EVENTS * (KEEP_SEGMENTS as u64 + 1) + 1;
        assert_eq!(
            segment_events(),
            SEGMENT_EVENTS,
            "unset {SEGMENT_EVENTS_ENV}"
        );
        for s in 1..=total {
            r.journal.append(&event(s)).unwrap();
        }
        assert_eq!(segments(&dir).len(), KEEP_SEGMENTS);
        let events = replay(&dir, Since::Seq(0), u64::MAX);
        assert_eq!(events.last().unwrap().seq, total);
        assert_eq!(
            events.len() as u64,
            SEGMENT_EVENTS * (KEEP_SEGMENTS as u64 - 1) + 1
        );
        // Asking for what rotation removed is told, with the first kept sequence number.
        let first = SEGMENT_EVENTS * 2 + 1;
        assert_eq!(first_seq_of(&segments(&dir)[0]), Some(first));
        for (since, told) in [
            (Since::Seq(0), Some(first)),
            (Since::Seq(first - 1), Some(first)),
            (Since::Seq(first), None),
            (Since::Seq(total), None),
            (Since::Time(0), Some(first)),
            (Since::Time(first * 10 - 1), Some(first)),
            (Since::Time(first * 10), None),
        ] {
            let r = replay_told(&dir, since, u64::MAX);
            assert_eq!(r.truncated, told, "{since:?}");
            let from = match since {
                Since::Seq(s) => s.max(first),
                Since::Time(t) => t.div_ceil(10).max(first),
            };
            assert_eq!(r.events.first().map(|e| e.seq), Some(from), "{since:?}");
        }
        fs::remove_dir_all(&dir).unwrap();
    }
}
