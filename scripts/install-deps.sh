#!/usr/bin/env bash
# Install what corral's tests and demo need on a Debian 12 machine (run as root):
#   runc, busybox-static (/bin/busybox), procps, iptables, and CRIU 4.1.1 built from Debian's pool
#   tarball into /usr/local/sbin/criu (Debian 12's criu 3.17 cannot run on kernels >= 6.13).
# Idempotent: when everything is present it only runs the final checks (well under 2 s).
# Env: CORRAL_SKIP_CRIU=1 skips building/checking CRIU.
set -euo pipefail

CRIU_VERSION=4.1.1
CRIU_TARBALL="criu_${CRIU_VERSION}.orig.tar.xz"
CRIU_POOL_PATH="pool/main/c/criu/${CRIU_TARBALL}"
CRIU_SHA256=f80a66cb3726bb2116266d4759ce3bcbfab7abdb6b6d430bf20dd41911717afe
CRIU_BIN=/usr/local/sbin/criu

# iptables: CRIU locks a container's network with iptables-restore while it dumps.
# strace and curl: the tests use them (a syscall delayed to hold a race open; a real HTTP client).
RUNTIME_PKGS=(runc busybox-static procps iptables strace curl)
CRIU_BUILD_PKGS=(build-essential pkg-config curl ca-certificates xz-utils
  libprotobuf-dev libprotobuf-c-dev protobuf-c-compiler protobuf-compiler
  libnl-3-dev libcap-dev libnet1-dev libbsd-dev libgnutls28-dev libnftables-dev uuid-dev)

export DEBIAN_FRONTEND=noninteractive
APT_OPTS=(-o DPkg::Lock::Timeout=300 -o Dpkg::Use-Pty=0)

log() { echo "install-deps: $*"; }
warn() { echo "install-deps: WARNING: $*" >&2; }
die() { echo "install-deps: ERROR: $*" >&2; exit 1; }

need_root() {
  [[ $EUID -eq 0 ]] || die "must run as root to install: $*"
}

# Packages from the arguments that are not fully installed.
missing_pkgs() {
  local p
  for p in "$@"; do
    if [[ "$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null)" != "ii "* ]]; then
      echo "$p"
    fi
  done
}

# Retry an apt command a few times: another apt/dpkg process may hold a lock
# (DPkg::Lock::Timeout covers the dpkg lock, not always the lists lock).
apt_retry() {
  local i
  for i in 1 2 3 4 5 6; do
    if "$@"; then return 0; fi
    [[ $i -lt 6 ]] || break
    log "'$*' failed (attempt $i), retrying in 10 s"
    sleep 10
  done
  return 1
}

APT_UPDATED=0
apt_install() {
  local missing
  mapfile -t missing < <(missing_pkgs "$@")
  [[ ${#missing[@]} -gt 0 ]] || return 0
  need_root "${missing[*]}"
  if [[ $APT_UPDATED -eq 0 ]]; then
    log "apt-get update"
    apt_retry apt-get "${APT_OPTS[@]}" -qq update || die "apt-get update failed"
    APT_UPDATED=1
  fi
  log "apt-get install ${missing[*]}"
  apt_retry apt-get "${APT_OPTS[@]}" -y -qq --no-install-recommends install "${missing[@]}" \
    >/dev/null || die "apt-get install ${missing[*]} failed"
}

# Base URLs of the archives apt is configured with (http/https only), main archive
# first and -security last. Derived from the machine's apt sources, never hard-coded.
apt_mirrors() {
  {
    apt-get indextargets --no-release-info --format '$(RELEASE) $(REPO_URI)' 2>/dev/null || true
    # Fallback: parse the sources files directly (one-line and deb822 formats).
    cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
      awk '$1 ~ /^deb(-src)?$/ { for (i = 2; i <= NF; i++) if ($i ~ /:\/\//) { print $(i+1), $i; break } }'
    cat /etc/apt/sources.list.d/*.sources 2>/dev/null |
      awk 'tolower($1) == "uris:" { for (i = 2; i <= NF; i++) print "x", $i }'
  } | awk '$2 ~ /^https?:\/\// { sub(/\/+$/, "", $2); sec = ($1 ~ /security/ || $2 ~ /security/); print sec, $2 }' |
    sort -s -k1,1n | awk '!seen[$2]++ { print $2 }'
}

criu_ok() {
  [[ -x $CRIU_BIN ]] && "$CRIU_BIN" --version 2>/dev/null | grep -q "Version: ${CRIU_VERSION}\$"
}

install_criu() {
  if criu_ok; then
    log "criu ${CRIU_VERSION} already installed at $CRIU_BIN"
    return 0
  fi
  need_root "criu ${CRIU_VERSION}"
  local start=$SECONDS
  log "building criu ${CRIU_VERSION} (about 1 minute)"
  apt_install "${CRIU_BUILD_PKGS[@]}"

  local tmp
  tmp="$(mktemp -d /tmp/corral-criu-build.XXXXXX)"
  # shellcheck disable=SC2064
  trap "rm -rf '$tmp'" EXIT

  local mirror got=0
  while read -r mirror; do
    [[ -n $mirror ]] || continue
    log "downloading $mirror/$CRIU_POOL_PATH"
    if curl -fsSL --retry 3 --connect-timeout 20 -o "$tmp/$CRIU_TARBALL" "$mirror/$CRIU_POOL_PATH" &&
       echo "$CRIU_SHA256  $tmp/$CRIU_TARBALL" | sha256sum -c --quiet - >/dev/null 2>&1; then
      got=1
      break
    fi
    warn "download from $mirror failed or sha256 mismatch"
    rm -f "$tmp/$CRIU_TARBALL"
  done < <(apt_mirrors)
  [[ $got -eq 1 ]] || die "could not download $CRIU_TARBALL with sha256 $CRIU_SHA256 from the apt mirrors"
  log "sha256 ok"

  mkdir "$tmp/src"
  tar -xJf "$tmp/$CRIU_TARBALL" -C "$tmp/src" --strip-components=1
  log "make -j2 criu (log: $tmp/build.log while running)"
  if ! make -C "$tmp/src" -j2 criu >"$tmp/build.log" 2>&1; then
    tail -n 40 "$tmp/build.log" >&2
    die "criu build failed"
  fi
  install -D -m 0755 "$tmp/src/criu/criu" "$CRIU_BIN"
  rm -rf "$tmp"
  trap - EXIT
  criu_ok || die "$CRIU_BIN does not report version ${CRIU_VERSION} after install"
  log "installed criu ${CRIU_VERSION} to $CRIU_BIN in $((SECONDS - start)) s"
}

apt_install "${RUNTIME_PKGS[@]}"

if [[ ${CORRAL_SKIP_CRIU:-0} == 1 ]]; then
  log "CORRAL_SKIP_CRIU=1: skipping criu"
else
  install_criu
fi

# Final checks.
runc_version="$(runc --version 2>/dev/null | head -n1)" || die "runc --version failed"
log "$runc_version"
[[ -x /bin/busybox ]] || die "/bin/busybox missing (busybox-static)"
log "/bin/busybox present"
if [[ ${CORRAL_SKIP_CRIU:-0} != 1 ]]; then
  [[ -x $CRIU_BIN ]] || die "$CRIU_BIN missing"
  if check_out="$("$CRIU_BIN" check 2>&1)" && grep -q "Looks good" <<<"$check_out"; then
    log "criu check: Looks good."
  else
    warn "'$CRIU_BIN check' did not say 'Looks good':"
    echo "$check_out" | tail -n 20 >&2
  fi
fi
log "done"
