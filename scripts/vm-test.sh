#!/usr/bin/env bash
# Runs corral's tests on a real cgroup-v2 host with systemd: a Debian bookworm guest under
# qemu (KVM where it works, else TCG emulation), no network but loopback.
#   scripts/vm-test.sh            (as root)
# 1. installs what is missing (qemu-system-x86, debootstrap);
# 2. builds corral's binaries and the chosen test binaries on the host (debug);
# 3. builds the guest image once (scripts/vm/build-image.sh; cached in $CORRAL_VM_CACHE,
#    default /var/cache/corral-vm);
# 4. boots it with the repository shared by 9p at the same path as here (the test binaries
#    find corrald, corralctl and corral-shim by their compile-time absolute paths); the
#    guest runs scripts/vm/guest.sh: scripts/vm/systemd-checks.sh, then the test binaries;
# 5. prints the guest's results and exits non-zero if anything failed.
# The guest has runc and crun; the host's youki (CORRAL_YOUKI, else /usr/local/bin/youki),
# when there is one, is copied to target/vm/ at each run for tests/runtimes.rs.
# Environment: CORRAL_VM_TESTS (test binaries, default "lifecycle resources restart
# runtimes"),
# CORRAL_VM_SKIP (test names skipped, default the two that need strace or curl),
# CORRAL_VM_SYSTEMD (0 skips the systemd checks), CORRAL_VM_EXTRA (a script under the
# repository the guest runs first, e.g. to debug), CORRAL_VM_ACCEL (auto, kvm or tcg),
# CORRAL_VM_TEST_THREADS (default 2 under KVM, 1 under TCG), CORRAL_VM_TEST_TIMEOUT
# (seconds per test binary, default 1800), CORRAL_VM_SMP, CORRAL_VM_MEM (MiB, default 3072), CORRAL_VM_TIMEOUT (seconds for the
# whole guest run, default 5400), CORRAL_VM_CACHE, CORRAL_VM_MIRROR (a Debian archive URL;
# default: the host's own bookworm archive).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$(pwd -P)
log() { echo "vm-test: $*" >&2; }

if [ "$(id -u)" != 0 ]; then
  log "run as root (debootstrap, 9p passthrough and the guest's tests need it)"
  exit 1
fi
tests=${CORRAL_VM_TESTS-lifecycle resources restart runtimes}
systemd=${CORRAL_VM_SYSTEMD:-1}
accel=${CORRAL_VM_ACCEL:-auto}
mem=${CORRAL_VM_MEM:-3072}
guest_timeout=${CORRAL_VM_TIMEOUT:-5400}
cache=${CORRAL_VM_CACHE:-/var/cache/corral-vm}
# Tests that need what the guest lacks: strace and curl.
skip=${CORRAL_VM_SKIP-an_oom_kill_before_the_daemon_looks_is_still_reported the_metrics_endpoint_serves_prometheus_text}
t0=$(date +%s)

# 1. Host tools. Debian 12's qemu-system-x86 (7.2) cannot be installed beside a newer
# qemu-utils from bookworm-backports (it Breaks qemu-system-common < 8): then take
# qemu-system-x86 from the same backports, through a private sources list.
install_tools() {
  local missing=()
  command -v qemu-system-x86_64 >/dev/null || missing+=(qemu-system-x86)
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  command -v mkfs.ext4 >/dev/null || missing+=(e2fsprogs)
  [ ${#missing[@]} = 0 ] && return 0
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq || true
  if apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then return 0; fi
  local mirror bpo=/var/cache/corral-vm-apt
  mirror=$(apt-get indextargets --no-release-info --format '$(RELEASE) $(REPO_URI)' 2>/dev/null |
    awk '$1 == "bookworm" && $2 ~ /^https?:/ { sub(/\/+$/, "", $2); print $2; exit }')
  [ -n "$mirror" ] || { log "cannot install ${missing[*]}"; exit 1; }
  log "retrying with bookworm-backports from $mirror (a newer qemu-utils is installed)"
  mkdir -p "$bpo/lists/partial"
  { cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | grep '^deb ' || true
    echo "deb $mirror bookworm-backports main"; } >"$bpo/sources.list"
  for f in /etc/apt/sources.list.d/*.sources; do [ -f "$f" ] && cp "$f" "$bpo/"; done
  local o=(-o "Dir::Etc::sourcelist=$bpo/sources.list" -o "Dir::Etc::sourceparts=$bpo" -o "Dir::State::lists=$bpo/lists")
  apt-get "${o[@]}" update -qq
  apt-get "${o[@]}" install -y -qq --no-install-recommends -t bookworm-backports "${missing[@]}" >/dev/null
}
install_tools

# 2. Host build: the binaries and the chosen test binaries.
export PATH=$HOME/.cargo/bin:$PATH
log "building corral and the test binaries: ${tests:-none}"
cargo build --bins --locked 2>&1 | tail -n 2 >&2
test_args=()
for t in $tests; do test_args+=(--test "$t"); done
declare -A exe=()
if [ ${#test_args[@]} -gt 0 ]; then
  while read -r name path; do
    exe[$name]=$path
  done < <(cargo test --no-run --locked "${test_args[@]}" 2>&1 |
    sed -n 's/^ *Executable tests\/\([a-z_0-9]*\)\.rs (\(.*\))$/\1 \2/p')
fi
bin=$repo/target/x86_64-unknown-linux-gnu/debug
t_build=$(date +%s)

# 3. The image.
image=$(bash scripts/vm/build-image.sh "$cache" "${CORRAL_VM_MIRROR:-}")
t_image=$(date +%s)
image_how=cached
[ "$(stat -c %Y "$image/done")" -lt "$t_build" ] || image_how="built now"

# 4. The plan, then the boot.
out=$repo/target/vm/out
rm -rf "$out"
mkdir -p "$out"
{
  echo "bin $bin"
  echo "systemd $systemd"
  [ -z "${CORRAL_VM_EXTRA:-}" ] || echo "extra $(realpath "$CORRAL_VM_EXTRA")"
  # youki is built on the host (it is not in bookworm): a copy under the shared repository
  # (the image needs no rebuild when it appears).
  youki=${CORRAL_YOUKI:-/usr/local/bin/youki}
  rm -f "$repo/target/vm/youki"
  if [ -x "$youki" ]; then
    cp "$youki" "$repo/target/vm/youki"
    echo "youki $repo/target/vm/youki"
    log "youki: $youki ($("$youki" --version 2>/dev/null | head -n 1))"
  else
    log "youki: none on the host ($youki): tests/runtimes.rs skips it"
  fi
  skip_args=""
  for s in $skip; do skip_args="$skip_args --skip $s"; done
  echo "args$skip_args"
  for t in $tests; do
    [ -n "${exe[$t]:-}" ] || { log "no test binary for $t (cargo test --no-run --test $t)"; exit 1; }
    echo "test $t $repo/${exe[$t]}"
  done
} >"$out/plan"

# KVM where it works: a short boot of the guest's kernel without a root filesystem must
# reach its panic (and power off) in time; a hang or an abort means TCG.
kvm_works() {
  [ -r /dev/kvm ] && [ -w /dev/kvm ] || return 1
  rm -f "$out/kvm-probe.console"
  echo "cpu $1:" >>"$out/kvm-probe.log"
  (timeout 30 qemu-system-x86_64 -accel kvm -cpu "$1" -m 256 -display none -nic none -no-reboot \
    -serial "file:$out/kvm-probe.console" -kernel "$image/vmlinuz" \
    -append "console=ttyS0 panic=-1 root=/dev/corral-vm-none"; echo "exit $?") >>"$out/kvm-probe.log" 2>&1
  grep -q 'Kernel panic' "$out/kvm-probe.console" 2>/dev/null
}
cpu=max
if [ "$accel" = auto ]; then
  accel=tcg
  for c in host max; do
    if kvm_works "$c"; then accel=kvm cpu=$c; break; fi
  done
  [ "$accel" = tcg ] && log "KVM does not boot the guest here (see target/vm/out/kvm-probe.log): TCG"
fi
if [ "$accel" = kvm ]; then
  smp=${CORRAL_VM_SMP:-2}
else
  # TCG: one vCPU per host thread; the host has few cores, shared.
  smp=${CORRAL_VM_SMP:-2}
  cpu=max
fi
# Under TCG one test at a time: the tests' own time bounds (a daemon accepting within
# 10 s, a container's allocation within 30 s) are tight for an emulated CPU.
threads=${CORRAL_VM_TEST_THREADS:-$([ "$accel" = kvm ] && echo 2 || echo 1)}
echo "threads $threads" >>"$out/plan"
echo "timeout ${CORRAL_VM_TEST_TIMEOUT:-1800}" >>"$out/plan"
log "booting the guest: accel $accel, cpu $cpu, $smp vCPU(s), $mem MiB (console: target/vm/out/console.log)"
tail -n +1 -F "$out/console.log" 2>/dev/null | grep --line-buffered '^corral-vm:' >&2 &
tailer=$!
set +e
timeout "$guest_timeout" qemu-system-x86_64 -accel "$accel" -cpu "$cpu" -smp "$smp" -m "$mem" \
  -nodefaults -display none -nic none -no-reboot \
  -serial "file:$out/console.log" \
  -kernel "$image/vmlinuz" -initrd "$image/initrd.img" \
  -append "root=/dev/vda rw console=ttyS0 panic=1 systemd.show_status=0 corral.repo=$repo" \
  -drive "file=$image/disk.img,format=raw,if=virtio,snapshot=on" \
  -virtfs "local,path=$repo,mount_tag=repo,security_model=passthrough,id=repo"
qemu_rc=$?
set -e
sleep 0.5
kill "$tailer" 2>/dev/null || true
t_guest=$(date +%s)

# 5. The report.
status=$(cat "$out/status" 2>/dev/null || echo missing)
echo
echo "vm-test: results (NAME SECONDS RESULT; logs in target/vm/out/):"
sed 's/^/  /' "$out/results" 2>/dev/null || echo "  (none: the guest wrote no results)"
echo "vm-test: host build $((t_build - t0))s, image $((t_image - t_build))s ($image_how), guest $((t_guest - t_image))s ($accel); total $((t_guest - t0))s"
if [ "$qemu_rc" != 0 ]; then
  echo "vm-test: qemu exited $qemu_rc$([ "$qemu_rc" = 124 ] && echo " (timeout after ${guest_timeout}s)"); the console's last lines:"
  tail -n 30 "$out/console.log" | sed 's/^/  /'
fi
echo "vm-test: guest status: $status"
[ "$qemu_rc" = 0 ] && [ "$status" = 0 ]
