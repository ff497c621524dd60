#!/usr/bin/env bash
# The README's test command (and CI's): installs what is missing, checks formatting, lints
# (clippy -D warnings) and docs (rustdoc -D warnings), builds once, runs every test against
# real runc as root, then checks that the suite left no zombies, shims, daemons, test
# registries or mounts, then runs the lifecycle, resources and restart tests and the systemd
# checks in a guest VM (scripts/vm-test.sh; CORRAL_VM=0 skips it).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ "$(id -u)" != 0 ]; then
  echo "test.sh: the tests drive real runc and cgroups: run as root" >&2
  exit 1
fi
# youki too (a cargo build of a few minutes, once per machine): tests/runtimes.rs runs the
# lifecycle under runc, crun and youki, here and in the guest. CORRAL_INSTALL_YOUKI=0 skips.
export PATH="$HOME/.cargo/bin:$PATH"
CORRAL_INSTALL_YOUKI=${CORRAL_INSTALL_YOUKI:-1} bash scripts/install-deps.sh

echo "test.sh: format, lints and docs"
cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings 2>&1 | tail -n 3
RUSTDOCFLAGS=-Dwarnings cargo doc --no-deps --locked 2>&1 | tail -n 3
echo "test.sh: building"
cargo build --all-targets --locked 2>&1 | tail -n 3
echo "test.sh: running tests"
cargo test --locked -- --test-threads="${CORRAL_TEST_THREADS:-2}"

echo "test.sh: checking for leftovers"
fail=0
zombies=$(ps -eo pid=,ppid=,stat=,comm= | awk '$3 ~ /^Z/')
if [ -n "$zombies" ]; then
  echo "test.sh: zombie processes after the suite:" >&2
  echo "$zombies" >&2
  fail=1
fi
if pgrep -x corral-shim >/dev/null; then
  echo "test.sh: corral-shim processes still running after the suite:" >&2
  ps -o pid=,args= -p "$(pgrep -d, -x corral-shim)" >&2
  fail=1
fi
if pgrep -x corrald >/dev/null; then
  echo "test.sh: corrald still running after the suite:" >&2
  pgrep -a -x corrald >&2
  fail=1
fi
# The tests' private registries (docker-registry serve <their temp config>), not a system one.
if pgrep -f "docker-registry serve /tmp/" >/dev/null; then
  echo "test.sh: test registries still running after the suite:" >&2
  pgrep -a -f "docker-registry serve /tmp/" >&2
  fail=1
fi
# Mounts the tests made (overlay snapshots, small tmpfs data dirs) live under /tmp/corral-*.
if awk '$5 ~ /^\/tmp\/corral-/ {found=1} END {exit !found}' /proc/self/mountinfo; then
  echo "test.sh: mounts left under /tmp/corral-* after the suite:" >&2
  awk '$5 ~ /^\/tmp\/corral-/ {print "  " $5}' /proc/self/mountinfo >&2
  fail=1
fi
[ "$fail" = 0 ] && echo "test.sh: no zombies, no leftover shims, daemons, registries or mounts"
[ "$fail" = 0 ] || exit "$fail"

# A real cgroup-v2 host with systemd as PID 1: a qemu guest (scripts/vm-test.sh, about 4 to
# 20 minutes: the image is built once and cached). CORRAL_VM=0 skips it.
if [ "${CORRAL_VM:-1}" != 0 ]; then
  echo "test.sh: the guest VM (pure cgroup v2, systemd)"
  bash scripts/vm-test.sh
fi
