//! A random-frame generator against the frame decoder and the message decoding, on stable
//! Rust with no extra dependency: random bytes, and valid frames of every kind mutated
//! (bytes flipped, cut short, lengths forged, bytes inserted and removed, frames spliced,
//! huge varint lengths) are fed to the blocking and the async frame readers and to the
//! `ClientFrame`, `Request` and `ServerFrame` decoders. None may panic, and no single
//! allocation may go beyond the frame limit.
//!
//! The normal suite runs 100 000 inputs; `cargo test --release --test frames -- --ignored`
//! runs 10 million (`FRAMES_N` and `FRAMES_SEED` change the count and the seed).
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use corral::rpc::frame::{decode, encode, read_frame_sync, read_payload, MAX_FRAME};
use corral::rpc::{ClientFrame, Request, ServerFrame};
use corral::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The system allocator, remembering the largest single allocation asked of it.
struct Largest;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed on to the system allocator unchanged.
unsafe impl GlobalAlloc for Largest {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract is passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Largest = Largest;

/// xorshift64*: small, fast, and good enough to explore a decoder.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn byte(&mut self) -> u8 {
        self.next() as u8
    }
}

/// Valid frames of many kinds of request (and a few replies), to mutate.
fn corpus() -> Vec<Vec<u8>> {
    let labels: BTreeMap<String, String> = [("app".to_string(), "web".to_string())]
        .into_iter()
        .collect();
    let requests = vec![
        Request::Hello {
            version: 2,
            client: "fuzz".into(),
        },
        Request::Version,
        Request::Create(CreateRequest {
            namespace: "ns".into(),
            id: "c1".into(),
            bundle: "/tmp/bundle".into(),
            runtime_args: vec!["--debug".into()],
            labels: labels.clone(),
            start: true,
            restart: RestartPolicy::OnFailure { max: Some(3) },
            ..Default::default()
        }),
        Request::Start {
            namespace: "".into(),
            id: "c1".into(),
        },
        Request::Exec(ExecRequest {
            namespace: "".into(),
            id: "c1".into(),
            exec_id: "e1".into(),
            process: ExecProcess::Args(vec!["sh".into(), "-c".into(), "true".into()]),
            stdio: Stdio::default(),
        }),
        Request::Kill(KillRequest {
            namespace: "".into(),
            id: "c1".into(),
            exec_id: Some("e1".into()),
            signal: 9,
            all: false,
        }),
        Request::Wait(ProcessRef {
            namespace: "".into(),
            id: "c1".into(),
            exec_id: None,
        }),
        Request::List {
            namespace: "default".into(),
            labels,
        },
        Request::Subscribe(EventFilter {
            namespace: Some("ns".into()),
            container_id: None,
            since: Some(Since::Seq(12345)),
        }),
        Request::Update {
            namespace: "".into(),
            id: "c1".into(),
            resources: Resources {
                memory: Some(1 << 30),
                cpuset_cpus: Some("0-1".into()),
                ..Default::default()
            },
        },
        Request::Checkpoint {
            namespace: "".into(),
            id: "c1".into(),
            name: "cp".into(),
            options: CheckpointOptions {
                tcp: true,
                empty_ns: vec!["network".into()],
                ..Default::default()
            },
        },
        Request::Stats {
            namespace: "".into(),
            ids: vec!["a".into(), "b".into()],
        },
        Request::Stop(StopRequest {
            namespace: "".into(),
            id: "c1".into(),
            signal: 15,
            timeout_ms: 10_000,
        }),
    ];
    let mut frames: Vec<Vec<u8>> = requests
        .into_iter()
        .enumerate()
        .map(|(i, request)| {
            encode(&ClientFrame {
                id: i as u64 + 1,
                request,
            })
            .unwrap()
        })
        .collect();
    frames.push(
        encode(&ServerFrame {
            id: 3,
            reply: corral::rpc::Reply::Error(Error::Lagged { first_missed: 7 }),
        })
        .unwrap(),
    );
    frames
}

/// One input: random bytes, or a corpus frame mutated one of several ways.
fn generate(rng: &mut Rng, corpus: &[Vec<u8>], out: &mut Vec<u8>) {
    out.clear();
    let base = &corpus[rng.below(corpus.len())];
    match rng.below(8) {
        0 => {
            // Random bytes behind a length that matches them.
            let n = rng.below(96);
            out.extend_from_slice(&(n as u32).to_be_bytes());
            out.extend((0..n).map(|_| rng.byte()));
        }
        1 => {
            // Flipped bytes.
            out.extend_from_slice(base);
            for _ in 0..=rng.below(4) {
                let i = 4 + rng.below(out.len() - 4);
                out[i] ^= 1 << rng.below(8);
                if rng.below(2) == 0 {
                    out[i] = rng.byte();
                }
            }
        }
        2 => {
            // Cut short anywhere, the length prefix included.
            out.extend_from_slice(&base[..rng.below(base.len())]);
        }
        3 => {
            // A forged length prefix.
            out.extend_from_slice(base);
            let real = (base.len() - 4) as u32;
            let forged = match rng.below(7) {
                0 => u32::MAX,
                1 => MAX_FRAME,
                2 => MAX_FRAME + 1,
                3 => real + 1,
                4 => real.saturating_sub(1),
                5 => 0,
                _ => rng.next() as u32,
            };
            out[..4].copy_from_slice(&forged.to_be_bytes());
        }
        4 => {
            // Bytes inserted or removed, the length fixed up.
            out.extend_from_slice(&base[4..]);
            for _ in 0..=rng.below(3) {
                if rng.below(2) == 0 || out.is_empty() {
                    let at = rng.below(out.len() + 1);
                    out.insert(at, rng.byte());
                } else {
                    out.remove(rng.below(out.len()));
                }
            }
            let len = (out.len() as u32).to_be_bytes();
            out.splice(0..0, len);
        }
        5 => {
            // Two frames back to back, the second damaged.
            out.extend_from_slice(base);
            let other = &corpus[rng.below(corpus.len())];
            let start = out.len();
            out.extend_from_slice(other);
            let i = start + 4 + rng.below(other.len() - 4);
            out[i] = rng.byte();
        }
        6 => {
            // Huge varint lengths (bincode's u64 marker 0xfd, then 0xff...) in the payload.
            out.extend_from_slice(base);
            let at = 4 + rng.below(out.len() - 4);
            let marker = [0xfb, 0xfc, 0xfd, 0xfe][rng.below(4)];
            let run = rng.below(9);
            for (k, b) in std::iter::once(marker)
                .chain(std::iter::repeat_n(0xff, run))
                .enumerate()
            {
                if at + k < out.len() {
                    out[at + k] = b;
                }
            }
        }
        _ => {
            // A valid frame, so the decoders' success path stays covered.
            out.extend_from_slice(base);
        }
    }
}

/// Feeds one input to every decoder; returns how many frames decoded.
fn feed(input: &[u8], rt: &tokio::runtime::Runtime, async_too: bool) -> usize {
    let mut decoded = 0;
    // The blocking reader, frame after frame, as a client reads a stream.
    let mut rest = input;
    while let Ok(Some(_)) = read_frame_sync::<_, ClientFrame>(&mut rest) {
        decoded += 1;
    }
    let mut rest = input;
    while let Ok(Some(_)) = read_frame_sync::<_, ServerFrame>(&mut rest) {}
    // The decoders on the payload alone, and on the whole input.
    if input.len() >= 4 {
        let _ = decode::<ClientFrame>(&input[4..]);
        let _ = decode::<Request>(&input[4..]);
    }
    let _ = decode::<Request>(input);
    // The async reader the server uses, then decoding.
    if async_too {
        rt.block_on(async {
            let mut rest = input;
            while let Ok(Some(payload)) = read_payload(&mut rest).await {
                let _ = decode::<ClientFrame>(&payload);
            }
        });
    }
    decoded
}

fn run(n: u64, seed: u64) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let corpus = corpus();
    let mut rng = Rng(seed | 1);
    let mut input = Vec::new();
    let mut decoded = 0;
    let mut largest_input = 0;
    let started = std::time::Instant::now();
    for i in 0..n {
        generate(&mut rng, &corpus, &mut input);
        largest_input = largest_input.max(input.len());
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            feed(&input, &rt, i % 4 == 0)
        }));
        match outcome {
            Ok(d) => decoded += d,
            Err(_) => panic!("input #{i} (seed {seed}) panicked a decoder: {input:02x?}"),
        }
    }
    let largest = LARGEST.load(Ordering::Relaxed);
    println!(
        "{n} inputs (seed {seed}, up to {largest_input} bytes) in {:?}: {decoded} frames \
         decoded, largest single allocation {largest} bytes",
        started.elapsed()
    );
    assert!(
        largest <= MAX_FRAME as usize,
        "an allocation of {largest} bytes, over the {MAX_FRAME}-byte frame limit"
    );
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn random_frames_100k() {
    run(env_u64("FRAMES_N", 100_000), env_u64("FRAMES_SEED", 0x5eed));
}

#[test]
#[ignore = "10 million inputs: run with --release --ignored"]
fn random_frames_10m() {
    run(
        env_u64("FRAMES_N", 10_000_000),
        env_u64("FRAMES_SEED", 0xc0ffee),
    );
}
