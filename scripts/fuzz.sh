#!/usr/bin/env bash
# Coverage-guided fuzzing of what corral reads from untrusted bytes (fuzz/: cargo-fuzz and
# libFuzzer, on stable Rust through RUSTC_BOOTSTRAP=1). Not run by CI.
#
#   scripts/fuzz.sh [TARGET|all] [SECONDS]    (default: all, 120 s each)
#
# Targets: frame (the RPC framing, both readers), request (a request's payload and the
# checks of its strings), log_line (CRI log lines, --since/--until times), config (the
# corrald.toml file). Each run starts from fuzz/seeds/TARGET (committed) plus
# fuzz/corpus/TARGET (kept between runs, not committed); a crash stops the run and leaves
# its input in fuzz/artifacts/TARGET/. `FUZZ_JOBS` runs that many workers (default 1),
# `FUZZ_ASAN=1` adds AddressSanitizer (slower; the code under test has no unsafe), and
# `FUZZ_MINIMIZE=1` afterwards merges the corpus into fuzz/seeds/TARGET, minimized.
# cargo-fuzz is installed with `cargo install` if missing; CARGO_TARGET_DIR is honoured.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../fuzz"
export PATH="$HOME/.cargo/bin:$PATH"
# cargo-fuzz passes nightly flags (-Z sanitizer, -C passes=sancov-module): stable rustc
# takes them with RUSTC_BOOTSTRAP.
export RUSTC_BOOTSTRAP=1

targets=(frame request log_line config)
which="${1:-all}"
seconds="${2:-120}"
if [ "$which" != all ]; then
  printf '%s\n' "${targets[@]}" | grep -qx -- "$which" || {
    echo "fuzz.sh: unknown target $which (one of: ${targets[*]} all)" >&2
    exit 2
  }
  targets=("$which")
fi

command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz

sanitizer=(--sanitizer none)
[ "${FUZZ_ASAN:-0}" = 1 ] && sanitizer=(--sanitizer address)
# libFuzzer forks workers (logging to fuzz-N.log) only when asked for more than one.
jobs=()
[ "${FUZZ_JOBS:-1}" -gt 1 ] && jobs=(-jobs="$FUZZ_JOBS" -workers="$FUZZ_JOBS")

for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "seeds/$t"
  echo "== fuzz $t for ${seconds}s" >&2
  # -rss_limit_mb: a frame may be 4 MiB; 2 GiB is far past anything legitimate.
  cargo fuzz run "${sanitizer[@]}" --debug-assertions "$t" "corpus/$t" "seeds/$t" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=65536 \
    ${jobs[@]+"${jobs[@]}"} -print_final_stats=1
  if [ "${FUZZ_MINIMIZE:-0}" = 1 ]; then
    # Merge what was found into a fresh, minimized seeds dir.
    rm -rf "seeds/$t.new" && mkdir -p "seeds/$t.new"
    cargo fuzz run "${sanitizer[@]}" --debug-assertions "$t" "seeds/$t.new" "seeds/$t" \
      "corpus/$t" -- -merge=1 -max_len=65536
    rm -rf "seeds/$t" && mv "seeds/$t.new" "seeds/$t"
    echo "seeds/$t: $(ls "seeds/$t" | wc -l) inputs" >&2
  fi
done
