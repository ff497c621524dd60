#!/usr/bin/env bash
# Builds the guest image of scripts/vm-test.sh once and prints its directory: a Debian
# bookworm root filesystem made by debootstrap (systemd as PID 1, the unified cgroup
# hierarchy, Debian's kernel, runc, crun, busybox-static, iptables, dbus, libseccomp2 for a
# host-built youki, the host's CRIU and its libraries) as a raw ext4 disk, with the kernel
# and initrd beside it.
#   scripts/vm/build-image.sh CACHE_DIR [MIRROR]
# The image lives in CACHE_DIR/image-<key>, where the key is a hash of this file and of the
# host's CRIU version: a change to either builds a new image (older ones are removed). The
# boot stub in the image only mounts the repository (9p) and runs its scripts/vm/guest.sh,
# so changes to the guest's tests need no new image.
set -euo pipefail

cache=${1:?usage: build-image.sh CACHE_DIR [MIRROR]}
mirror=${2:-}
criu=/usr/local/sbin/criu
log() { echo "vm-image: $*" >&2; }

key=$( { cat "${BASH_SOURCE[0]}"; [ -x "$criu" ] && "$criu" --version; } 2>/dev/null | sha256sum | cut -c1-16)
dir=$cache/image-$key
if [ -f "$dir/done" ]; then
  echo "$dir"
  exit 0
fi

if [ -z "$mirror" ]; then
  # The host's main archive (the entry whose suite is bookworm), never hard-coded here.
  mirror=$(apt-get indextargets --no-release-info --format '$(RELEASE) $(REPO_URI)' 2>/dev/null |
    awk '$1 == "bookworm" && $2 ~ /^https?:/ { sub(/\/+$/, "", $2); print $2; exit }')
fi
[ -n "$mirror" ] || { log "no bookworm archive in apt's sources: give a mirror (CORRAL_VM_MIRROR)"; exit 1; }

mkdir -p "$cache/debs"
work=$cache/build.tmp
rm -rf "$work"
mkdir -p "$work"
root=$work/root
start=$(date +%s)
log "debootstrap bookworm from $mirror into $root (a few minutes; the .debs are kept in $cache/debs)"
packages=(
  systemd-sysv udev kmod linux-image-amd64 procps runc busybox-static iptables
  # The other runtimes of tests/runtimes.rs: crun, and youki (copied from the host at each
  # run by vm-test.sh when it has one; it links libseccomp). dbus: the system bus that
  # crun's and youki's systemd cgroup drivers talk to (runc uses systemd's private socket).
  crun libseccomp2 dbus
  # CRIU's runtime libraries (the host's /usr/local/sbin/criu is copied in).
  libprotobuf-c1 libnl-3-200 libnet1 libbsd0 libgnutls30 libnftables1 libjansson4
  libmnl0 libnftnl11 libxtables12
)
debootstrap --variant=minbase --cache-dir="$cache/debs" \
  --include="$(IFS=,; echo "${packages[*]}")" bookworm "$root" "$mirror" >"$work/debootstrap.log" 2>&1 || {
  tail -n 30 "$work/debootstrap.log" >&2
  log "debootstrap failed (log: $work/debootstrap.log)"
  exit 1
}

log "configuring the guest"
echo corral-vm >"$root/etc/hostname"
printf '/dev/vda / ext4 rw,relatime 0 1\n' >"$root/etc/fstab"
printf '9p\n9pnet_virtio\n' >"$root/etc/modules-load.d/corral-vm.conf"
# No login prompt on the console: only the boot and the tests' output.
ln -sf /dev/null "$root/etc/systemd/system/serial-getty@ttyS0.service"
ln -sf /dev/null "$root/etc/systemd/system/getty@tty1.service"
# Nothing to wait for on a guest without network.
ln -sf /dev/null "$root/etc/systemd/system/systemd-networkd-wait-online.service"
if [ -x "$criu" ]; then
  install -m 0755 "$criu" "$root/usr/local/sbin/criu"
  if chroot "$root" /usr/local/sbin/criu --version >/dev/null 2>&1; then
    log "CRIU: the host's $criu runs in the guest"
  else
    log "CRIU: the host's $criu does not run in the guest (missing libraries?): removed"
    chroot "$root" ldd /usr/local/sbin/criu 2>&1 | grep 'not found' >&2 || true
    rm -f "$root/usr/local/sbin/criu"
  fi
fi

# The boot stub: mounts the repository at the host's path (corral.repo= on the kernel
# command line) and runs its scripts/vm/guest.sh, which powers the guest off.
cat >"$root/usr/local/sbin/corral-vm-boot" <<'STUB'
#!/bin/sh
arg() { tr ' ' '\n' </proc/cmdline | sed -n "s/^$1=//p" | tail -n 1; }
repo=$(arg corral.repo)
echo "corral-vm: guest up ($(uname -r)); mounting $repo"
if [ -n "$repo" ] && mkdir -p "$repo" &&
  mount -t 9p -o trans=virtio,version=9p2000.L,msize=524288,cache=loose repo "$repo" &&
  [ -x "$repo/scripts/vm/guest.sh" ]; then
  "$repo/scripts/vm/guest.sh"
  echo "corral-vm: guest.sh exited $?"
else
  echo "corral-vm: cannot mount the repository at '$repo' or run its scripts/vm/guest.sh"
fi
systemctl poweroff --no-block
STUB
chmod 0755 "$root/usr/local/sbin/corral-vm-boot"
cat >"$root/etc/systemd/system/corral-vm.service" <<'UNIT'
[Unit]
Description=corral guest tests (scripts/vm/guest.sh from the repository)
After=multi-user.target

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/corral-vm-boot
StandardOutput=journal+console
StandardError=journal+console

[Install]
WantedBy=multi-user.target
UNIT
ln -sf /etc/systemd/system/corral-vm.service "$root/etc/systemd/system/multi-user.target.wants/corral-vm.service"

log "packing the disk (raw ext4, sparse)"
mkdir -p "$work/out"
kernel=$(find "$root/boot" -name 'vmlinuz-*' | sort -V | tail -n 1)
[ -n "$kernel" ] && [ -f "$root/boot/initrd.img-${kernel##*/vmlinuz-}" ] || { log "no kernel or initrd in $root/boot"; exit 1; }
cp "$kernel" "$work/out/vmlinuz"
cp "$root/boot/initrd.img-${kernel##*/vmlinuz-}" "$work/out/initrd.img"
rm -rf "$root/var/cache/apt/archives/"*.deb
truncate -s 8G "$work/out/disk.img"
mkfs.ext4 -q -F -L corral-vm -d "$root" "$work/out/disk.img"
rm -rf "$root"
rm -rf "$cache"/image-*
mv "$work/out" "$dir"
echo "$(($(date +%s) - start))" >"$dir/build-seconds"
touch "$dir/done"
rm -rf "$work"
log "image built in $(cat "$dir/build-seconds")s: $dir"
echo "$dir"
