#!/usr/bin/env bash
# The README's first command: on a fresh machine, installs what is missing, builds, starts
# corrald, runs a busybox container end to end (output, state, events) and cleans up.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ "$(id -u)" != 0 ]; then
  echo "demo.sh: corral drives runc and cgroups: run as root" >&2
  exit 1
fi
bash scripts/install-deps.sh
export PATH="$HOME/.cargo/bin:$PATH"
echo "demo.sh: building (release)"
cargo build --release --locked --bins 2>&1 | tail -n 1
bin=$PWD/target/x86_64-unknown-linux-gnu/release  # see .cargo/config.toml

work=$(mktemp -d /tmp/corral-demo.XXXXXX)
sock=$work/corrald.sock
ctl() { "$bin/corralctl" --socket "$sock" "$@"; }
cleanup() {
  [ -n "${events_pid:-}" ] && kill "$events_pid" 2>/dev/null && wait "$events_pid" 2>/dev/null || true
  [ -n "${daemon_pid:-}" ] && kill "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

"$bin/corralctl" bundle busybox "$work/bundle" -- \
  sh -c 'echo "hello from a corral container: $(hostname), pid $$"; ls /bin | wc -l | sed "s/^/applets: /"; exit 0'

echo "demo.sh: starting corrald (socket $sock)"
"$bin/corrald" --socket "$sock" --state-dir "$work/state" --root "$work/runc" 2>"$work/corrald.log" &
daemon_pid=$!
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.05; done
ctl version

"$bin/corralctl" --socket "$sock" events >"$work/events.txt" &  # not through ctl(): $! is corralctl itself
events_pid=$!
sleep 0.2

echo; echo "\$ corralctl run hello --bundle $work/bundle"
ctl run hello --bundle "$work/bundle"
echo "(exit code $?)"
echo; echo "\$ corralctl list"; ctl list
echo; echo "\$ corralctl state hello"; ctl state hello
echo; echo "\$ corralctl delete hello"; ctl delete hello
sleep 0.2
echo; echo "events seen by 'corralctl events':"; cat "$work/events.txt"
echo; echo "demo.sh: done; the state dir is empty again:"; find "$work/state" -mindepth 2 | grep -v '/_events' || echo "  (nothing left)"
