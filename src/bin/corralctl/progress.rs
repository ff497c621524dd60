//! The progress of a pull or a push: a live display on a terminal (one line per blob), one
//! plain line per state change otherwise, or one JSON object per step.

use crate::resources::human_bytes;
use corral::{is_index, is_manifest, BlobState, Progress};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::{BTreeSet, HashMap};
use std::io::{IsTerminal, Write};

/// `sha256:<hex>` shortened to 12 hex digits (docker's short ids); other text as it is.
pub fn short_digest(digest: &str) -> String {
    match digest.split_once(':') {
        Some(("sha256", hex)) => hex.chars().take(12).collect(),
        Some((alg, hex)) => format!("{alg}:{}", hex.chars().take(12).collect::<String>()),
        None => digest.to_string(),
    }
}

/// What a blob is, from its media type: `index`, `manifest`, `config`, `layer`, `blob`
/// (`ref` while the reference is being resolved).
pub fn kind(media_type: &str) -> &'static str {
    if media_type.is_empty() {
        "ref"
    } else if is_index(media_type) {
        "index"
    } else if is_manifest(media_type) || media_type.ends_with(".manifest.v1+json") {
        "manifest"
    } else if media_type.contains("config") {
        "config"
    } else if media_type.contains("layer") || media_type.contains("rootfs") {
        "layer"
    } else {
        "blob"
    }
}

/// Whether a blob's line is over in this state.
fn is_final(state: BlobState) -> bool {
    matches!(
        state,
        BlobState::Done | BlobState::Exists | BlobState::Failed
    )
}

/// The text of a state, with the size where it tells something.
fn state_text(p: &Progress) -> String {
    match p.state {
        BlobState::Done | BlobState::Exists if p.total > 0 => {
            format!("{} {}", p.state, human_bytes(p.total))
        }
        BlobState::Downloading | BlobState::Uploading if p.total > 0 => format!(
            "{} {} of {}",
            p.state,
            human_bytes(p.offset),
            human_bytes(p.total)
        ),
        _ => p.state.to_string(),
    }
}

/// The left part of a line: kind and short digest (or the reference being resolved).
fn label_of(p: &Progress) -> String {
    format!("{:<8} {:<12}", kind(&p.media_type), short_digest(&p.digest))
}

/// How the progress is shown.
pub enum Display {
    /// Live bars on a terminal.
    Live(Live),
    /// One line per state change.
    Plain(Plain),
    /// One JSON object per step.
    Json,
}

impl Display {
    /// Live bars when stdout is a terminal, plain lines otherwise; JSON with `json`.
    pub fn new(json: bool) -> Display {
        if json {
            Display::Json
        } else if std::io::stdout().is_terminal() {
            Display::Live(Live::new())
        } else {
            Display::Plain(Plain::default())
        }
    }

    /// One step.
    pub fn step(&mut self, p: &Progress) {
        match self {
            Display::Live(l) => l.step(p),
            Display::Plain(pl) => pl.step(p),
            Display::Json => {
                if let Ok(line) = serde_json::to_string(p) {
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
                }
            }
        }
    }

    /// The end: every live line drawn in its last state (`ok`: the transfer succeeded).
    pub fn finish(&mut self, ok: bool) {
        if let Display::Live(l) = self {
            l.finish(ok);
        }
    }
}

/// Plain lines: one per state change of a blob, at most one `downloading` line per blob.
#[derive(Default)]
pub struct Plain {
    last: HashMap<String, BlobState>,
    downloading: BTreeSet<String>,
}

impl Plain {
    /// The line for this step, if it is one to print.
    fn line(&mut self, p: &Progress) -> Option<String> {
        if self.last.get(&p.digest) == Some(&p.state) {
            return None;
        }
        self.last.insert(p.digest.clone(), p.state);
        if matches!(p.state, BlobState::Downloading | BlobState::Uploading)
            && !self.downloading.insert(p.digest.clone())
        {
            return None;
        }
        Some(if p.state == BlobState::Resolving {
            format!("resolving {}", p.digest)
        } else {
            format!("{} {}", label_of(p), state_text(p))
        })
    }

    fn step(&mut self, p: &Progress) {
        if let Some(line) = self.line(p) {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}").and_then(|()| out.flush());
        }
    }
}

/// A blob's line while it is not downloading.
const TEXT_TEMPLATE: &str = "{prefix} {msg}";
/// A blob's line while it downloads: bytes of total, and the rate.
const BAR_TEMPLATE: &str =
    "{prefix} {msg} [{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec}";

/// Live bars: one per blob, in the order they first appear.
pub struct Live {
    multi: MultiProgress,
    bars: HashMap<String, (ProgressBar, BlobState)>,
    order: Vec<String>,
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar())
}

impl Live {
    fn new() -> Live {
        Live {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stdout()),
            bars: HashMap::new(),
            order: Vec::new(),
        }
    }

    fn step(&mut self, p: &Progress) {
        let text_style = style(TEXT_TEMPLATE);
        let bar_style = style(BAR_TEMPLATE).progress_chars("=> ");
        let (bar, last) = match self.bars.get_mut(&p.digest) {
            Some(entry) => entry,
            None => {
                let prefix = if p.state == BlobState::Resolving {
                    format!("{:<8} {}", "ref", p.digest)
                } else {
                    label_of(p)
                };
                let bar = self.multi.add(
                    ProgressBar::new(p.total)
                        .with_style(text_style.clone())
                        .with_prefix(prefix),
                );
                self.order.push(p.digest.clone());
                self.bars
                    .entry(p.digest.clone())
                    .or_insert((bar, BlobState::Resolving))
            }
        };
        if bar.is_finished() {
            return;
        }
        let entering = *last != p.state;
        *last = p.state;
        match p.state {
            BlobState::Downloading | BlobState::Uploading => {
                if entering {
                    bar.set_style(bar_style);
                    bar.set_length(p.total);
                    bar.set_message(p.state.to_string());
                    bar.set_position(p.offset);
                    bar.reset_eta();
                } else {
                    bar.set_position(p.offset);
                }
            }
            state => {
                if entering {
                    bar.set_style(text_style);
                }
                bar.set_position(p.offset);
                if is_final(state) {
                    bar.finish_with_message(state_text(p));
                } else {
                    bar.set_message(state_text(p));
                }
            }
        }
    }

    fn finish(&mut self, ok: bool) {
        for digest in &self.order {
            if let Some((bar, _)) = self.bars.get(digest) {
                if bar.is_finished() {
                    continue;
                }
                if ok {
                    match self.bars.get(digest).map(|(_, s)| *s) {
                        Some(BlobState::Resolving) => bar.finish_with_message("resolved"),
                        _ => bar.finish(),
                    }
                } else {
                    bar.abandon();
                }
            }
        }
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        // An early return (an error) still leaves every line drawn.
        self.finish(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(digest: &str, media_type: &str, state: BlobState, offset: u64) -> Progress {
        Progress {
            digest: digest.into(),
            media_type: media_type.into(),
            state,
            offset,
            total: 2048,
        }
    }

    #[test]
    fn templates_parse() {
        for t in [TEXT_TEMPLATE, BAR_TEMPLATE] {
            assert!(ProgressStyle::with_template(t).is_ok(), "{t}");
        }
    }

    #[test]
    fn kinds_and_short_digests() {
        assert_eq!(kind(corral::MEDIA_OCI_INDEX), "index");
        assert_eq!(kind(corral::MEDIA_DOCKER_MANIFEST), "manifest");
        assert_eq!(kind(corral::MEDIA_OCI_CONFIG), "config");
        assert_eq!(kind(corral::MEDIA_DOCKER_LAYER_GZIP), "layer");
        assert_eq!(kind(corral::MEDIA_OCI_LAYER_ZSTD), "layer");
        assert_eq!(kind(""), "ref");
        let hex = "0123456789abcdef".repeat(4);
        assert_eq!(short_digest(&format!("sha256:{hex}")), "0123456789ab");
        assert_eq!(
            short_digest("sha512:00112233445566778899"),
            "sha512:001122334455"
        );
        assert_eq!(
            short_digest("docker.io/library/x:1"),
            "docker.io/library/x:1"
        );
    }

    /// One line per state change, one `downloading` line per blob however often it
    /// reports bytes or comes back to downloading.
    #[test]
    fn plain_lines_per_state_change() {
        let layer = corral::MEDIA_OCI_LAYER_GZIP;
        let d = format!("sha256:{}", "ab".repeat(32));
        let steps = [
            step("example.com/a:1", "", BlobState::Resolving, 0),
            step(&d, layer, BlobState::Waiting, 0),
            step(&d, layer, BlobState::Downloading, 0),
            step(&d, layer, BlobState::Downloading, 1024),
            step(&d, layer, BlobState::Waiting, 1024),
            step(&d, layer, BlobState::Downloading, 1500),
            step(&d, layer, BlobState::Verifying, 2048),
            step(&d, layer, BlobState::Done, 2048),
        ];
        let mut plain = Plain::default();
        let lines: Vec<String> = steps.iter().filter_map(|s| plain.line(s)).collect();
        assert_eq!(
            lines,
            [
                "resolving example.com/a:1",
                "layer    abababababab waiting",
                "layer    abababababab downloading 0B of 2.0KiB",
                "layer    abababababab waiting",
                "layer    abababababab verifying",
                "layer    abababababab done 2.0KiB",
            ]
        );
    }
}
