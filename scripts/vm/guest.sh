#!/usr/bin/env bash
# Runs inside the guest of scripts/vm-test.sh (started by the image's corral-vm.service
# after multi-user.target; the repository is mounted by 9p at the host's path). Reads the
# plan the host wrote in target/vm/out/plan, runs the systemd checks and the host-built test
# binaries it names, writes each one's output and a summary to target/vm/out/, and leaves
# its exit status in target/vm/out/status. The boot stub powers the guest off afterwards.
set -uo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
out=$repo/target/vm/out
bin=$(sed -n 's/^bin //p' "$out/plan")
threads=$(sed -n 's/^threads //p' "$out/plan")
read -r -a test_args <<<"$(sed -n 's/^args//p' "$out/plan")"
systemd_checks=$(sed -n 's/^systemd //p' "$out/plan")
exec > >(tee -a "$out/guest.log") 2>&1
say() { echo "corral-vm: $*"; }
results=$out/results
: >"$results"
# NAME SECONDS ok|FAIL [detail]
result() { echo "$*" >>"$results"; say "$*"; }

say "kernel $(uname -r), PID 1 $(cat /proc/1/comm), $(nproc) cpu(s), $(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo) MiB"
say "/sys/fs/cgroup: $(stat -fc %T /sys/fs/cgroup), controllers: $(cat /sys/fs/cgroup/cgroup.controllers 2>/dev/null)"
say "our cgroup: $(cat /proc/self/cgroup); runc: $(runc --version | head -n 1); crun: $(crun --version 2>/dev/null | head -n 1 || echo none); criu: $(/usr/local/sbin/criu --version 2>/dev/null | head -n 1 || echo none)"
if [ "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ]; then
  result host 0 ok "pure cgroup v2, systemd PID 1"
else
  result host 0 FAIL "/sys/fs/cgroup is $(stat -fc %T /sys/fs/cgroup), not cgroup2fs"
fi

cd "$repo" || exit 1
# The binaries come through 9p: read them once, so that the first test's daemon does not
# pay for it inside its start-up bound.
cat "$bin/corrald" "$bin/corralctl" "$bin/corral-shim" >/dev/null
test_timeout=$(sed -n 's/^timeout //p' "$out/plan")

if [ "$systemd_checks" = 1 ]; then
  start=$(date +%s)
  bash "$repo/scripts/vm/systemd-checks.sh" "$bin" "$out" 2>&1 | tee "$out/systemd.log"
  rc=${PIPESTATUS[0]}
  secs=$(($(date +%s) - start))
  fails=$(grep -c '^corral-vm: check FAIL' "$out/systemd.log")
  checks=$(grep -c '^corral-vm: check ' "$out/systemd.log")
  if [ "$rc" = 0 ]; then
    result systemd "$secs" ok "$checks checks"
  else
    result systemd "$secs" FAIL "$fails of $checks checks failed (exit $rc)"
  fi
fi
# The host's youki, copied by vm-test.sh: tests/runtimes.rs runs it when it runs here.
youki=$(sed -n 's/^youki //p' "$out/plan")
if [ -n "$youki" ]; then
  if version=$("$youki" --version 2>&1 | head -n 1) && [ -n "$version" ]; then
    export CORRAL_YOUKI=$youki
    result youki 0 ok "the host's youki runs here ($version)"
  else
    result youki 0 FAIL "the host's youki does not run here: $version $(ldd "$youki" 2>&1 | grep 'not found' | tr '\n' ' ')"
  fi
fi
extra=$(sed -n 's/^extra //p' "$out/plan")
if [ -n "$extra" ]; then
  say "running $extra (CORRAL_VM_EXTRA)"
  bash "$extra" >"$out/extra.log" 2>&1
  result extra 0 "$([ $? = 0 ] && echo ok || echo FAIL)" "$extra (output in extra.log)"
fi
while read -r kind name path; do
  [ "$kind" = test ] || continue
  say "running $name ($path --test-threads=$threads ${test_args[*]})"
  start=$(date +%s)
  cat "$path" >/dev/null
  RUST_BACKTRACE=1 timeout "${test_timeout:-1800}" "$path" --test-threads="$threads" "${test_args[@]}" >"$out/$name.log" 2>&1
  rc=$?
  secs=$(($(date +%s) - start))
  summary=$(grep -E '^test result:' "$out/$name.log" | tail -n 1)
  if [ "$rc" = 0 ]; then
    result "$name" "$secs" ok "$summary"
  else
    grep -E '^test .* FAILED$|^---- ' "$out/$name.log" | sed 's/^/  /'
    result "$name" "$secs" FAIL "exit $rc; ${summary:-no summary (timeout or crash)}"
  fi
done <"$out/plan"

if grep -q ' FAIL' "$results"; then echo 1 >"$out/status"; else echo 0 >"$out/status"; fi
sync
exit 0
