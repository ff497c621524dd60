#!/usr/bin/env bash
# corral's benchmark (benches/corral.rs): corral against bare runc, side by side, as root.
# Prints the markdown report; with --save (or --save=FILE) also writes it to
# bench-results.md (or FILE). Other arguments pick sections: cycle start memory kill run
# stats checkpoint oom (the default: all of these), scale (only when named: BENCH_SCALE
# containers, default 1000, about two minutes), runtimes (only when named: runc, crun and
# youki as installed, each bare and through corral; BENCH_CRUN and BENCH_YOUKI name other
# binaries); or `hygiene [image]` alone for the create/start/wait/delete hygiene check
# (from an image with `image`); or `images [cold warm import big run]` for the image
# benchmark (benches/images.rs: pull and import against containerd and skopeo, about a
# minute; data on BENCH_TMP, default /tmp; see docs/operations.md); or
# `logs [throughput memory latency]` for the logs benchmark (benches/logs.rs: corral's log
# path against conmon and bare runc; installs conmon if missing; about a minute).
# Settings: BENCH_N (default 40), BENCH_CONTAINERS (100), BENCH_WARMUP (3),
# BENCH_RUNC (runc from PATH), BENCH_TMP (/dev/shm, a tmpfs like /run; /tmp for a disk).
# About two minutes after the release build.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

usage() { sed -n '2,16s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; }

save=""
sections=()
for arg in "$@"; do
  case "$arg" in
    --save) save=bench-results.md ;;
    --save=*) save="${arg#--save=}" ;;
    -h | --help) usage; exit 0 ;;
    -*) echo "bench.sh: unknown option $arg" >&2; usage >&2; exit 2 ;;
    *) sections+=("$arg") ;;
  esac
done

if [ "$(id -u)" != 0 ]; then
  echo "bench.sh: the benchmark drives real runc and cgroups: run as root" >&2
  exit 1
fi
bash scripts/install-deps.sh >&2
export PATH="$HOME/.cargo/bin:$PATH"

# `bench.sh hygiene`: the N-cycle hygiene check instead (benches/hygiene.rs, HYGIENE_N).
if [ "${sections[0]:-}" = hygiene ]; then
  if [ -n "$save" ]; then
    cargo bench --locked --bench hygiene -- "${sections[@]:1}" | tee "$save"
  else
    cargo bench --locked --bench hygiene -- "${sections[@]:1}"
  fi
  exit
fi

# `bench.sh images [SECTION...]`: the image benchmark instead (benches/images.rs; needs
# containerd, ctr, skopeo and docker-registry).
if [ "${sections[0]:-}" = images ]; then
  for tool in containerd ctr skopeo docker-registry; do
    command -v "$tool" >/dev/null || {
      echo "bench.sh: $tool is missing (apt-get install containerd skopeo docker-registry)" >&2
      exit 1
    }
  done
  if [ -n "$save" ]; then
    cargo bench --locked --bench images -- "${sections[@]:1}" | tee "$save"
    echo "bench.sh: report saved to $save" >&2
  else
    cargo bench --locked --bench images -- "${sections[@]:1}"
  fi
  exit
fi

# `bench.sh logs [SECTION...]`: the logs benchmark instead (benches/logs.rs; needs conmon).
if [ "${sections[0]:-}" = logs ]; then
  command -v conmon >/dev/null || apt-get install -y conmon >&2
  if [ -n "$save" ]; then
    cargo bench --locked --bench logs -- "${sections[@]:1}" | tee "$save"
    echo "bench.sh: report saved to $save" >&2
  else
    cargo bench --locked --bench logs -- "${sections[@]:1}"
  fi
  exit
fi

# The report is the bench's stdout; cargo's build output and the bench's progress go to
# stderr, so only the report is saved.
if [ -n "$save" ]; then
  cargo bench --locked --bench corral -- "${sections[@]}" | tee "$save"
  echo "bench.sh: report saved to $save" >&2
else
  cargo bench --locked --bench corral -- "${sections[@]}"
fi
