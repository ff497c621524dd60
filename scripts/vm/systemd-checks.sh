#!/usr/bin/env bash
# The systemd checks of scripts/vm-test.sh, run in the guest by guest.sh:
#   systemd-checks.sh BIN_DIR OUT_DIR
# `corrald unit install`, `systemctl start corrald` returns once corrald sent READY=1, a few
# containers run, and `systemctl restart corrald`, `systemctl kill corrald` (SIGTERM to every
# process of the unit) and `systemctl stop` + `start` each leave every container running with
# the same pid, adopted by the new corrald; shims sit outside corrald's cgroup. Then runc's
# systemd cgroup driver (a runtimes entry with options.systemd-cgroup): two containers as
# scopes in corral.slice (one in a namespace with a `-`), stats, update (the scope's files
# and systemd's MemoryMax), pause, resume, exec, `systemctl restart corrald` adopting them,
# kill and wait (137), an OOM kill reported, and delete removing the scopes. Prints one
# "corral-vm: check ok|FAIL NAME" line per check; exits 1 if any failed.
set -uo pipefail
bin=${1:?BIN_DIR}
out=${2:?OUT_DIR}
ctl=$bin/corralctl
failed=0
say() { echo "corral-vm: $*"; }
ok() { say "check ok $1"; }
fail() {
  say "check FAIL $1: $2"
  failed=1
}
# check NAME COMMAND...: ok if COMMAND succeeds.
check() {
  local name=$1
  shift
  local output
  if output=$("$@" 2>&1); then ok "$name"; else fail "$name" "$* -> $output"; fi
}
show() { systemctl show corrald -p "$1" --value; }
main_pid() { show MainPID; }
# "ID STATUS PID" of every container, sorted.
containers() { "$ctl" list --format id,status,pid | awk 'NR > 1 { print $1, $2, $3 }' | sort; }
shims() { pgrep -x corral-shim | sort -n | tr '\n' ' '; }
# Waits until corrald is active with a main pid other than $1.
wait_new_main() {
  local old=$1 i
  for i in $(seq 1 300); do
    local pid
    pid=$(main_pid)
    if [ "$(show ActiveState)" = active ] && [ "$pid" != 0 ] && [ "$pid" != "$old" ]; then
      return 0
    fi
    sleep 0.1
  done
  return 1
}
# The unit's cgroup, and every listed pid's cgroup outside it.
outside_unit() {
  local what=$1
  shift
  local unit_cg pid cg bad=""
  [ $# -gt 0 ] || { fail "$what outside corrald's cgroup" "no $what to look at"; return; }
  unit_cg=$(show ControlGroup)
  for pid in "$@"; do
    cg=$(sed -n 's/^0:://p' "/proc/$pid/cgroup" 2>/dev/null)
    case "$cg/" in
    "$unit_cg"/*) bad="$bad $what $pid in $cg;" ;;
    esac
  done
  if [ -z "$bad" ]; then ok "$what outside corrald's cgroup ($unit_cg)"; else fail "$what outside corrald's cgroup ($unit_cg)" "$bad"; fi
}
# After an event ($1): the same containers, running with the same pids, adopted by the new
# corrald (its list answers them), their processes alive, the same shims.
same_containers() {
  local when=$1 now pid
  now=$(containers)
  if [ "$now" = "$before" ]; then ok "$when: corralctl list shows every container with the same status and pid"; else fail "$when: corralctl list shows every container with the same status and pid" "before: $(echo $before) after: $(echo $now)"; fi
  for pid in $pids; do
    if ! kill -0 "$pid" 2>/dev/null; then fail "$when: container pid $pid alive" "gone"; fi
  done
  if [ "$(shims)" = "$shims_before" ]; then ok "$when: the same shims run ($shims_before)"; else fail "$when: the same shims run" "before: $shims_before after: $(shims)"; fi
  check "$when: exec in a container through the new corrald" "$ctl" exec vm-a -- true
}

export CORRAL_SOCKET=/run/corral/corrald.sock
# A second runc entry with runc's systemd cgroup driver, for the checks at the end.
mkdir -p /etc/corral
printf '[runtimes.runc-systemd]\nbinary = "runc"\noptions = { systemd-cgroup = true }\n' >/etc/corral/corrald.toml
check "corrald unit install" "$bin/corrald" unit install
check "the unit is Type=notify with ExecStart=$bin/corrald" \
  grep -qx "ExecStart=$bin/corrald" /etc/systemd/system/corrald.service
systemctl daemon-reload
start=$(date +%s%N)
check "systemctl start corrald (returns once READY=1 is sent)" timeout 120 systemctl start corrald
say "systemctl start took $((($(date +%s%N) - start) / 1000000)) ms"
state="$(show ActiveState)/$(show SubState) status=\"$(show StatusText)\" type=$(show Type)"
if [ "$state" = 'active/running status="serving" type=notify' ]; then ok "corrald active, notified READY ($state)"; else fail "corrald active, notified READY" "$state"; fi
check "delegated cgroup (Delegate=yes)" test "$(show Delegate)" = yes

tmp=$(mktemp -d /tmp/corral-vm.XXXXXX)
for c in vm-a vm-b vm-c; do
  check "bundle $c" "$ctl" bundle busybox "$tmp/$c" -- sleep 100000
  check "run -d $c" "$ctl" run -d --bundle "$tmp/$c" "$c"
done
check "pause vm-c (cgroup.freeze)" "$ctl" pause vm-c
before=$(containers)
say "containers: $(echo $before)"
pids=$(echo "$before" | awk '{ print $3 }')
shims_before=$(shims)
if [ "$(echo "$before" | awk '{ print $2 }' | tr '\n' ' ')" = "running running paused " ]; then ok "three containers: two running, one paused"; else fail "three containers: two running, one paused" "$(echo $before)"; fi
# shellcheck disable=SC2086
outside_unit "container pid" $pids
# shellcheck disable=SC2086
outside_unit shim $shims_before

# cgroup v2 through corral under systemd: stats, update, pause.
cg_of() { echo "/sys/fs/cgroup$(sed -n 's/^0:://p' "/proc/$1/cgroup")"; }
pid_a=$(echo "$before" | awk '$1 == "vm-a" { print $3 }')
pid_c=$(echo "$before" | awk '$1 == "vm-c" { print $3 }')
check "vm-c frozen: cgroup.freeze is 1" grep -qx 1 "$(cg_of "$pid_c")/cgroup.freeze"
check "update vm-a --memory 64M --pids-limit 50 --cpu-quota 50000" "$ctl" update vm-a --memory 64M --pids-limit 50 --cpu-quota 50000
check "vm-a's memory.max is 64 MiB" grep -qx 67108864 "$(cg_of "$pid_a")/memory.max"
check "vm-a's pids.max is 50" grep -qx 50 "$(cg_of "$pid_a")/pids.max"
check "vm-a's cpu.max is 50000 100000" grep -qx "50000 100000" "$(cg_of "$pid_a")/cpu.max"
stats=$("$ctl" stats vm-a --json 2>&1)
echo "$stats" >"$out/stats-vm-a.json"
flat=$(echo "$stats" | tr -d ' \n')
# Every v2 field corral reads that this kernel (6.1) has, non-zero where a running
# container's is (memory.swap.peak came in 6.5; io.stat is empty without disk io).
missing=""
for field in '"total":[1-9]' '"user":[1-9]' '"kernel":[1-9]' '"usage":[1-9]' '"max":[1-9]' \
  '"limit":67108864' '"periods":' '"current":1,' '"limit":50' '"anon":[1-9]' '"file":' '"pgfault":[1-9]'; do
  echo "$flat" | grep -q "$field" || missing="$missing $field"
done
if [ -z "$missing" ]; then ok "stats vm-a --json has every v2 field"; else fail "stats vm-a --json has every v2 field" "missing:$missing (target/vm/out/stats-vm-a.json)"; fi

old=$(main_pid)
check "systemctl restart corrald" timeout 120 systemctl restart corrald
if wait_new_main "$old"; then ok "restart: a new corrald is active ($old -> $(main_pid))"; else fail "restart: a new corrald is active" "$(show ActiveState) pid $(main_pid)"; fi
same_containers "after systemctl restart"

old=$(main_pid)
check "systemctl kill corrald (SIGTERM to every process of the unit)" systemctl kill corrald
if wait_new_main "$old"; then ok "kill: Restart=always started a new corrald ($old -> $(main_pid))"; else fail "kill: Restart=always started a new corrald" "$(show ActiveState) pid $(main_pid)"; fi
same_containers "after systemctl kill"

old=$(main_pid)
check "systemctl stop corrald" timeout 120 systemctl stop corrald
alive=0
for pid in $pids; do kill -0 "$pid" 2>/dev/null && alive=$((alive + 1)); done
if [ "$alive" = 3 ]; then ok "stopped: the three containers still run"; else fail "stopped: the three containers still run" "$alive of 3 alive"; fi
check "systemctl start corrald again" timeout 120 systemctl start corrald
same_containers "after systemctl stop and start"

check "resume vm-c" "$ctl" resume vm-c
check "delete -f the containers" "$ctl" delete -f vm-a vm-b vm-c

# runc's systemd cgroup driver (the runtime entry runc-systemd of /etc/corral/corrald.toml):
# the container is a scope systemd owns, corral.slice:corral-<namespace>:<id>, through
# every verb, a restart of corrald, and delete.
sd_checks() {
  local ns=$1 id=$2 unit=$3
  local c=("$ctl" -n "$ns")
  check "bundle $id" "${c[@]}" bundle busybox "$tmp/$id" -- sleep 100000
  check "run -d --runtime runc-systemd $id (namespace $ns)" "${c[@]}" run -d --runtime runc-systemd --bundle "$tmp/$id" "$id"
  local pid
  pid=$("${c[@]}" list --format id,pid | awk -v id="$id" '$1 == id { print $2 }')
  check "systemd: $unit is active" systemctl is-active --quiet "$unit"
  check "systemd: $unit is in corral.slice" test "$(systemctl show -p Slice --value "$unit")" = corral.slice
  check "systemd: $id's pid ${pid:-?} is in /corral.slice/$unit" \
    grep -qxF "0::/corral.slice/$unit" "/proc/${pid:-0}/cgroup"
  check "systemd: $unit's cgroup.procs holds $id's pid" \
    grep -qx "${pid:-0}" "/sys/fs/cgroup/corral.slice/$unit/cgroup.procs"
  local dir=/sys/fs/cgroup/corral.slice/$unit
  local stats flat missing="" field
  stats=$("${c[@]}" stats "$id" --json 2>&1)
  flat=$(echo "$stats" | tr -d ' \n')
  for field in '"total":[1-9]' '"usage":[1-9]' '"current":[1-9]' '"anon":[1-9]'; do
    echo "$flat" | grep -q "$field" || missing="$missing $field"
  done
  if [ -z "$missing" ]; then ok "systemd: stats $id read the scope's files"; else fail "systemd: stats $id read the scope's files" "missing:$missing in: $stats"; fi
  check "systemd: update $id --memory 48M --pids-limit 40" "${c[@]}" update "$id" --memory 48M --pids-limit 40
  check "systemd: $unit's memory.max is 48 MiB" grep -qx 50331648 "$dir/memory.max"
  check "systemd: $unit's pids.max is 40" grep -qx 40 "$dir/pids.max"
  check "systemd: systemd's MemoryMax of $unit is 48 MiB" test "$(systemctl show -p MemoryMax --value "$unit")" = 50331648
  systemctl daemon-reload
  check "systemd: memory.max is still 48 MiB after daemon-reload" grep -qx 50331648 "$dir/memory.max"
  check "systemd: pause $id" "${c[@]}" pause "$id"
  check "systemd: $unit frozen (cgroup.freeze 1)" grep -qx 1 "$dir/cgroup.freeze"
  check "systemd: $id listed paused" test "$("${c[@]}" list --format id,status | awk -v id="$id" '$1 == id { print $2 }')" = paused
  check "systemd: resume $id" "${c[@]}" resume "$id"
  check "systemd: $unit thawed (cgroup.freeze 0)" grep -qx 0 "$dir/cgroup.freeze"
  local got rc
  got=$("${c[@]}" exec "$id" -- sh -c 'echo from-exec; exit 3' 2>&1)
  rc=$?
  if [ "$rc" = 3 ] && [ "$got" = from-exec ]; then ok "systemd: exec in $id (its output, exit 3)"; else fail "systemd: exec in $id (its output, exit 3)" "exit $rc, output: $got"; fi
  sd_pids="$sd_pids $pid"
}
sd_pids=""
sd_checks default vm-s corral-default-vm-s.scope
# A `-` in the namespace is escaped in the scope's name (as systemd-escape does).
sd_checks vm-ns vm-t 'corral-vm\x2dns-vm-t.scope'
old=$(main_pid)
check "systemd: systemctl restart corrald" timeout 120 systemctl restart corrald
wait_new_main "$old" || fail "systemd: restart: a new corrald is active" "$(show ActiveState) pid $(main_pid)"
sd_list="$("$ctl" list --format id,status,pid | awk '$1 == "vm-s" { print $2, $3 }') $("$ctl" -n vm-ns list --format id,status,pid | awk '$1 == "vm-t" { print $2, $3 }')"
if [ "$sd_list" = "$(echo $sd_pids | awk '{ print "running", $1, "running", $2 }')" ]; then ok "systemd: after restart, both adopted, running, same pids ($sd_list)"; else fail "systemd: after restart, both adopted, running, same pids" "pids:$sd_pids list: $sd_list"; fi
check "systemd: exec in vm-s through the new corrald" "$ctl" exec vm-s -- true
stats=$("$ctl" stats vm-s --json 2>&1)
if echo "$stats" | tr -d ' \n' | grep -q '"limit":50331648'; then ok "systemd: stats of the adopted vm-s (memory limit 48 MiB)"; else fail "systemd: stats of the adopted vm-s (memory limit 48 MiB)" "$stats"; fi
check "systemd: update the adopted vm-s --memory 40M" "$ctl" update vm-s --memory 40M
check "systemd: its memory.max is 40 MiB" grep -qx 41943040 /sys/fs/cgroup/corral.slice/corral-default-vm-s.scope/memory.max
check "systemd: kill -s KILL vm-s" "$ctl" kill -s KILL vm-s
got=$("$ctl" wait vm-s 2>&1)
rc=$?
if [ "$rc" = 137 ] && [ "$got" = 137 ]; then ok "systemd: wait vm-s gives 137"; else fail "systemd: wait vm-s gives 137" "exit $rc, output: $got"; fi
check "systemd: delete vm-s" "$ctl" delete vm-s
check "systemd: delete -f vm-t (running)" "$ctl" -n vm-ns delete -f vm-t
# OOM kills in scopes, three in a row under corral.slice: systemd stops a scope once it is
# empty and removes its cgroup, often before corrald reads its memory.events; corrald then
# takes the kill from corral.slice's counter (one each: none counted twice), and delete
# works on a container whose scope is gone.
oom_ids="vm-o1 vm-o2 vm-o3"
for id in $oom_ids; do
  check "systemd: bundle $id" "$ctl" bundle busybox "$tmp/$id" -- \
    sh -c 'while [ ! -e /go ]; do sleep 0.1; done; exec dd if=/dev/zero of=/dev/null bs=64M count=1'
  check "systemd: run -d --runtime runc-systemd $id" "$ctl" run -d --runtime runc-systemd --bundle "$tmp/$id" "$id"
  check "systemd: update $id --memory 16M" "$ctl" update "$id" --memory 16M
done
for id in $oom_ids; do
  check "systemd: exec in $id: touch /go (dd asks for 64 MiB)" "$ctl" exec "$id" -- touch /go
done
for id in $oom_ids; do
  got=$(timeout 120 "$ctl" wait "$id" 2>&1)
  rc=$?
  if [ "$rc" = 137 ] && [ "$got" = 137 ]; then ok "systemd: wait $id gives 137 (OOM)"; else fail "systemd: wait $id gives 137 (OOM)" "exit $rc, output: $got"; fi
  got=$("$ctl" state "$id" --json 2>&1)
  flat=$(echo "$got" | tr -d ' \n')
  if echo "$flat" | grep -q '"oom_kills":1,' && echo "$flat" | grep -q '"exit_oom_killed":true'; then
    ok "systemd: $id's state says OOM-killed, one kill"
  else
    fail "systemd: $id's state says OOM-killed, one kill" "$got"
  fi
  check "systemd: delete $id" "$ctl" delete "$id"
done
say "OOM kills taken from corral.slice's counter (the scope gone first): $(journalctl -u corrald --no-pager | grep -c 'OOM kill no container claimed') of 3"
for unit in corral-default-vm-s.scope 'corral-vm\x2dns-vm-t.scope' corral-default-vm-o1.scope corral-default-vm-o2.scope corral-default-vm-o3.scope; do
  state="$(systemctl show -p LoadState --value "$unit")/$(systemctl show -p ActiveState --value "$unit")"
  if [ ! -e "/sys/fs/cgroup/corral.slice/$unit" ] && [ "$state" = not-found/inactive ]; then
    ok "systemd: delete removed $unit"
  else
    fail "systemd: delete removed $unit" "systemd: $state; $(ls -d "/sys/fs/cgroup/corral.slice/$unit" 2>&1)"
  fi
done
check "systemctl stop corrald at the end" timeout 120 systemctl stop corrald
sleep 0.5
if [ -z "$(shims)" ]; then ok "no shim left"; else fail "no shim left" "$(shims)"; fi
journalctl -u corrald --no-pager -o short-monotonic >"$out/corrald.journal" 2>&1 || true
if [ "$failed" != 0 ]; then
  {
    ps -eo pid,ppid,stat,wchan:32,cgroup:64,args | grep -v ' \[.*\]$'
    for pid in $(pgrep -x runc); do echo "== runc $pid: $(tr '\0' ' ' <"/proc/$pid/cmdline")"; cat "/proc/$pid/stack"; done
    find /run/corral /run/corral-runc -maxdepth 4 2>/dev/null | head -n 100
  } >"$out/systemd-diagnostics.txt" 2>&1
  say "failures: processes and runc stacks in target/vm/out/systemd-diagnostics.txt"
fi
rm -rf "$tmp"
exit "$failed"
