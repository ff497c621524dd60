#!/usr/bin/env bash
# The README's first command: on a fresh machine, installs what is missing, builds, starts
# corrald, runs a busybox container end to end (output, state, events), takes an image of
# busybox through a private loopback registry (import, push, remove, pull, list), runs a
# container from it, and cleans up.
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
  [ -n "${registry_pid:-}" ] && kill "$registry_pid" 2>/dev/null && wait "$registry_pid" 2>/dev/null || true
  [ -n "${daemon_pid:-}" ] && kill "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

"$bin/corralctl" bundle busybox "$work/bundle" -- \
  sh -c 'echo "hello from a corral container: $(hostname), pid $$"; ls /bin | wc -l | sed "s/^/applets: /"; exit 0'

echo "demo.sh: starting corrald (socket $sock)"
"$bin/corrald" --socket "$sock" --state-dir "$work/state" --root "$work/runc" \
  --data-dir "$work/data" 2>"$work/corrald.log" &
daemon_pid=$!
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.05; done
ctl version

"$bin/corralctl" --socket "$sock" events >"$work/events.txt" &  # not through ctl(): $! is corralctl itself
events_pid=$!
sleep 0.2

echo; echo "\$ corralctl run hello --bundle $work/bundle"
ctl run hello --bundle "$work/bundle"
echo "(exit code $?)"
echo; echo "\$ corralctl logs --timestamps hello   # its output, as its shim logged it"
ctl logs --timestamps hello
echo; echo "\$ corralctl list"; ctl list
echo; echo "\$ corralctl state hello"; ctl state hello
echo; echo "\$ corralctl delete hello"; ctl delete hello
sleep 0.2
echo; echo "events seen by 'corralctl events':"; cat "$work/events.txt"
echo; echo "demo.sh: the state dir is empty again:"; find "$work/state" -mindepth 2 | grep -v '/_events' || echo "  (nothing left)"

# An image: busybox's rootfs as one gzip layer in an OCI image layout, made here with tar,
# gzip and sha256sum (no image tool needed), imported, pushed to a private registry on
# 127.0.0.1, removed, and pulled back.
blob() {  # FILE MEDIA-TYPE: files FILE as a blob of the layout, prints its descriptor
  local d s
  d=$(sha256sum "$1" | cut -d' ' -f1); s=$(stat -c %s "$1")
  mv "$1" "$work/layout/blobs/sha256/$d"
  printf '{"mediaType":"%s","digest":"sha256:%s","size":%s}' "$2" "$d" "$s"
}
mkdir -p "$work/layout/blobs/sha256"
echo '{"imageLayoutVersion":"1.0.0"}' >"$work/layout/oci-layout"
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$work/bundle/rootfs" -cf "$work/layer.tar" .
diff_id=$(sha256sum "$work/layer.tar" | cut -d' ' -f1)
gzip -n "$work/layer.tar"
layer=$(blob "$work/layer.tar.gz" application/vnd.oci.image.layer.v1.tar+gzip)
printf '{"architecture":"%s","os":"linux","config":{"Cmd":["sh"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
  "$(dpkg --print-architecture)" "$diff_id" >"$work/config.json"
config=$(blob "$work/config.json" application/vnd.oci.image.config.v1+json)
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":%s,"layers":[%s]}' \
  "$config" "$layer" >"$work/manifest.json"
manifest=$(blob "$work/manifest.json" application/vnd.oci.image.manifest.v1+json)
printf '{"schemaVersion":2,"manifests":[%s,"annotations":{"org.opencontainers.image.ref.name":"demo.local/busybox:1"}}]}' \
  "${manifest%\}}" >"$work/layout/index.json"
tar -C "$work/layout" -cf "$work/busybox.tar" .

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p "$work/registry"
cat >"$work/registry.yml" <<YML
version: 0.1
log: {level: warn, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $work/registry}}
http: {addr: 127.0.0.1:$port}
YML
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
registry_pid=$!
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/v2/" >/dev/null && break; sleep 0.05; done
ref=127.0.0.1:$port/demo/busybox:1

echo; echo "\$ corralctl image import busybox.tar"; ctl image import "$work/busybox.tar"
echo; echo "\$ corralctl image tag demo.local/busybox:1 $ref"; ctl image tag demo.local/busybox:1 "$ref"
echo; echo "\$ corralctl image push --plain-http $ref"; ctl image push --plain-http "$ref"
echo; echo "\$ corralctl image rm demo.local/busybox:1 $ref"; ctl image rm demo.local/busybox:1 "$ref"
echo; echo "\$ corralctl content ls"; ctl content ls
echo; echo "\$ corralctl image pull --plain-http $ref"; ctl image pull --plain-http "$ref"
echo; echo "\$ corralctl images"; ctl images
echo; echo "\$ corralctl run --rm $ref from-image -- echo hello from an image, as \$(id -u) in \$(pwd)"
ctl run --rm "$ref" from-image -- sh -c 'echo "hello from an image, as $(id -u) in $(pwd)"'
echo; echo "\$ corralctl image rm $ref"; ctl image rm "$ref"
echo; echo "demo.sh: done"
