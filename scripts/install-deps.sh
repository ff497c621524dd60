#!/usr/bin/env bash
# Install what corral's tests and demo need on a Debian 12 machine (run as root):
#   runc, crun (tests/runtimes.rs), busybox-static (/bin/busybox), procps, iptables,
#   iproute2, and CRIU 4.2.1 built
#   from Debian's source into /usr/local/sbin/criu (Debian 12's criu 3.17 cannot run on
#   kernels >= 6.13, and 4.1.1 cannot dump a TCP socket on kernels >= 6.16, which allow
#   SO_PASSCRED/SO_PASSSEC only on unix and netlink sockets: CRIU's issue 2718, fixed in 4.2);
#   for the image tests: docker-registry (distribution 2.8, started privately by each test),
#   skopeo, zstd, apache2-utils (htpasswd), and containerd (started privately by a benchmark).
# docker-registry and containerd are installed with a policy-rc.d that forbids starting
# services, and are then stopped (if running anyway) and disabled: neither runs as a service.
# CRIU's source comes through apt's own configured sources: a deb-src entry derived from the
# host's main archive entry (written to /etc/apt/sources.list.d/corral-src.{list,sources} only
# when the host has no deb-src for it), then `apt-get source`; when the archive's source index
# has no criu ${CRIU_VERSION}, the upstream tarball from the same archive's pool. Either way the
# tarball's sha256 is checked. No mirror address is written here: a host with another mirror
# or a proxy configured for apt works as it is.
# Idempotent: when everything is present it only runs the final checks (well under 2 s).
# Env: CORRAL_SKIP_CRIU=1 skips building/checking CRIU.
#      CORRAL_CRIU_FETCH_ONLY=DIR only fetches and checks CRIU's source tarball into DIR
#      (installs nothing but the deb-src entry), then exits.
#      CORRAL_INSTALL_YOUKI=1 also builds youki ${YOUKI_VERSION} with `cargo install --locked`
#      into /usr/local/bin, with the cgroup drivers and seccomp (the crate enables no
#      feature by default: a plain `cargo install youki` cannot create a container on a v1
#      or hybrid host). Needs cargo and libseccomp-dev; about 250 crates: about 5 minutes
#      (291 s at load 5-7, without LTO as below). Off by default here;
#      scripts/test.sh (the README's test command, and CI) turns it on
#      (CORRAL_INSTALL_YOUKI=0 there skips it); tests/runtimes.rs skips youki when absent.
set -euo pipefail

CRIU_VERSION=4.2.1
CRIU_TARBALL="criu_${CRIU_VERSION}.orig.tar.xz"
CRIU_POOL_PATH="pool/main/c/criu/${CRIU_TARBALL}"
CRIU_SHA256=29ec0ee09e296479fe7048c80980e8ef1d0684d0b0204c2b101dfea19f6725b9
CRIU_BIN=/usr/local/sbin/criu

# iptables: CRIU locks a container's network with iptables-restore while it dumps.
# strace, curl and iproute2: the tests use them (a syscall delayed to hold a race open; a real
# HTTP client; `ip netns` and veth pairs for the TCP checkpoint tests).
RUNTIME_PKGS=(runc crun busybox-static procps iptables strace curl iproute2)
YOUKI_VERSION=0.7.0
# The image tests: a local registry, a reference client, zstd layers, bcrypt htpasswd files.
IMAGE_PKGS=(skopeo zstd apache2-utils)
# Packages whose maintainer scripts would start a system service: see apt_install_no_services.
SERVICE_PKGS=(docker-registry containerd)
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

POLICY_RC=/usr/sbin/policy-rc.d
POLICY_RC_SAVED=""
POLICY_RC_OURS=0

# Puts back the policy-rc.d that was there before apt_install_no_services (or none).
restore_policy_rc() {
  [[ $POLICY_RC_OURS -eq 1 ]] || return 0
  if [[ -n $POLICY_RC_SAVED ]]; then
    mv -f "$POLICY_RC_SAVED" "$POLICY_RC"
  else
    rm -f "$POLICY_RC"
  fi
  POLICY_RC_SAVED=""
  POLICY_RC_OURS=0
}

# The pids of docker-registry or containerd processes run as the system service would run
# them: docker-registry on the package's /etc/docker/registry config, containerd with no
# arguments. Private ones (a test's registry on its own config, a benchmark's containerd with
# its own --config/--address) are not the service's and are left alone.
service_pids() {
  local pid argv
  for pid in $(pgrep -x docker-registry 2>/dev/null) $(pgrep -x containerd 2>/dev/null); do
    argv="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || continue
    case "$argv" in
      *docker-registry*/etc/docker/registry/*) echo "$pid" ;;
      containerd\ | /usr/bin/containerd\ | /usr/sbin/containerd\ ) echo "$pid" ;;
    esac
  done
}

# Stops and disables the docker-registry and containerd services if their packages started
# them anyway (a host whose init ignores policy-rc.d).
stop_services() {
  local pids
  systemctl disable docker-registry containerd >/dev/null 2>&1 || true
  mapfile -t pids < <(service_pids)
  [[ ${#pids[@]} -gt 0 ]] || return 0
  warn "service processes running after install (pids ${pids[*]}): stopping them"
  systemctl stop docker-registry containerd >/dev/null 2>&1 || true
  mapfile -t pids < <(service_pids)
  [[ ${#pids[@]} -gt 0 ]] || return 0
  kill "${pids[@]}" 2>/dev/null || true
  sleep 1
  mapfile -t pids < <(service_pids)
  [[ ${#pids[@]} -gt 0 ]] || return 0
  kill -9 "${pids[@]}" 2>/dev/null || true
}

# apt_install for packages that start a system service on install: a policy-rc.d that
# exits 101 (no service may start) exists only for the duration of the apt-get install,
# then the previous one (if any) is put back; services are then stopped and disabled.
apt_install_no_services() {
  local missing
  mapfile -t missing < <(missing_pkgs "$@")
  [[ ${#missing[@]} -gt 0 ]] || return 0
  need_root "${missing[*]}"
  if [[ -e $POLICY_RC || -L $POLICY_RC ]]; then
    POLICY_RC_SAVED="$(mktemp "${POLICY_RC}.corral-saved.XXXXXX")"
    cp -a "$POLICY_RC" "$POLICY_RC_SAVED"
  fi
  POLICY_RC_OURS=1
  trap restore_policy_rc EXIT
  printf '#!/bin/sh\n# written by corral install-deps.sh for one apt-get install\nexit 101\n' \
    >"${POLICY_RC}.corral-tmp"
  chmod 0755 "${POLICY_RC}.corral-tmp"
  mv -f "${POLICY_RC}.corral-tmp" "$POLICY_RC"
  apt_install "${missing[@]}"
  restore_policy_rc
  trap - EXIT
  stop_services
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

# apt's index targets: "TARGET_OF RELEASE REPO_URI SOURCESENTRY" (deb or deb-src; the entry
# is FILE:LINE for a one-line .list, FILE:STANZA for a deb822 .sources file).
apt_targets() {
  apt-get indextargets --no-release-info \
    --format '$(TARGET_OF) $(RELEASE) $(REPO_URI) $(SOURCESENTRY)' 2>/dev/null | sort -u
}

host_codename() {
  # shellcheck disable=SC1091
  (. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}") || true
}

CORRAL_SRC_PREFIX=/etc/apt/sources.list.d/corral-src

# Makes sure apt has a deb-src entry for the host's main archive (the entry whose suite is
# the release's codename): derives one from that deb entry when there is none. Returns 1 if
# no entry could be derived.
ensure_deb_src() {
  local codename targets entry file n
  codename="$(host_codename)"
  [[ -n $codename ]] || { warn "no VERSION_CODENAME in /etc/os-release"; return 1; }
  targets="$(apt_targets)"
  if awk -v c="$codename" '$1 == "deb-src" && $2 == c { found = 1 } END { exit !found }' <<<"$targets"; then
    log "apt already has a deb-src entry for $codename"
    return 0
  fi
  entry="$(awk -v c="$codename" '$1 == "deb" && $2 == c && $3 ~ /^https?:\/\// { print $4; exit }' <<<"$targets")"
  [[ -n $entry ]] || { warn "no deb entry for $codename in apt's sources"; return 1; }
  file="${entry%:*}"
  n="${entry##*:}"
  need_root "a deb-src entry in ${CORRAL_SRC_PREFIX}.*"
  case "$file" in
    *.sources)
      # The n-th stanza (comment-only paragraphs do not count), as deb-src of the one suite.
      awk -v n="$n" -v c="$codename" '
        BEGIN { RS = ""; FS = "\n" }
        {
          out = ""; fields = 0
          for (i = 1; i <= NF; i++) {
            line = $i
            if (line ~ /^#/) continue
            fields++
            if (tolower(line) ~ /^types:/) line = "Types: deb-src"
            else if (tolower(line) ~ /^suites:/) line = "Suites: " c
            out = out line "\n"
          }
          if (fields == 0) next
          if (++k == n) { printf "%s", out; exit }
        }' "$file" >"${CORRAL_SRC_PREFIX}.sources.tmp"
      [[ -s ${CORRAL_SRC_PREFIX}.sources.tmp ]] || { rm -f "${CORRAL_SRC_PREFIX}.sources.tmp"; warn "stanza $n of $file not found"; return 1; }
      mv "${CORRAL_SRC_PREFIX}.sources.tmp" "${CORRAL_SRC_PREFIX}.sources"
      log "wrote ${CORRAL_SRC_PREFIX}.sources (deb-src of $file stanza $n)"
      ;;
    *)
      sed -n "${n}p" "$file" | sed -E 's/^[[:space:]]*deb([[:space:]])/deb-src\1/' >"${CORRAL_SRC_PREFIX}.list.tmp"
      grep -q '^deb-src[[:space:]]' "${CORRAL_SRC_PREFIX}.list.tmp" ||
        { rm -f "${CORRAL_SRC_PREFIX}.list.tmp"; warn "line $n of $file is not a deb line"; return 1; }
      mv "${CORRAL_SRC_PREFIX}.list.tmp" "${CORRAL_SRC_PREFIX}.list"
      log "wrote ${CORRAL_SRC_PREFIX}.list (deb-src of $file line $n)"
      ;;
  esac
  log "apt-get update (source indices)"
  apt_retry apt-get "${APT_OPTS[@]}" -qq update || die "apt-get update failed"
  APT_UPDATED=1
}

tarball_ok() {
  [[ -f $1 ]] && echo "$CRIU_SHA256  $1" | sha256sum -c --quiet - >/dev/null 2>&1
}

# Leaves $1/$CRIU_TARBALL, its sha256 checked: through `apt-get source` when the archive's
# source index has criu $CRIU_VERSION, else from the pool of an archive apt is configured with.
fetch_criu_source() {
  local dir=$1 version="" mirror
  mkdir -p "$dir"
  if tarball_ok "$dir/$CRIU_TARBALL"; then
    log "$dir/$CRIU_TARBALL already there, sha256 ok"
    return 0
  fi
  if ensure_deb_src; then
    version="$(apt-cache showsrc criu 2>/dev/null |
      awk -v v="$CRIU_VERSION" '$1 == "Version:" && index($2, v "-") == 1 { print $2; exit }')"
    if [[ -z $version ]]; then
      log "apt's source index has no criu ${CRIU_VERSION}-* (it has: $(apt-cache showsrc criu 2>/dev/null |
        awk '$1 == "Version:" { printf "%s ", $2 }')); falling back to the tarball from the archive's pool"
    else
      log "apt-get source --download-only criu=$version"
      if (cd "$dir" && apt-get "${APT_OPTS[@]}" -qq source --download-only "criu=$version" >/dev/null) &&
         tarball_ok "$dir/$CRIU_TARBALL"; then
        log "sha256 ok"
        return 0
      fi
      log "apt-get source criu=$version failed or sha256 mismatch; falling back to the tarball from the archive's pool"
    fi
  else
    log "no deb-src entry could be derived; falling back to the tarball from the archive's pool"
  fi
  rm -f "$dir/$CRIU_TARBALL"
  while read -r mirror; do
    [[ -n $mirror ]] || continue
    log "downloading $mirror/$CRIU_POOL_PATH"
    if curl -fsSL --retry 3 --connect-timeout 20 -o "$dir/$CRIU_TARBALL" "$mirror/$CRIU_POOL_PATH" &&
       tarball_ok "$dir/$CRIU_TARBALL"; then
      log "sha256 ok"
      return 0
    fi
    warn "download from $mirror failed or sha256 mismatch"
    rm -f "$dir/$CRIU_TARBALL"
  done < <(apt_mirrors)
  die "could not fetch $CRIU_TARBALL with sha256 $CRIU_SHA256 through apt's sources"
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
  fetch_criu_source "$tmp"

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

if [[ -n ${CORRAL_CRIU_FETCH_ONLY:-} ]]; then
  apt_install curl ca-certificates xz-utils
  fetch_criu_source "$CORRAL_CRIU_FETCH_ONLY"
  log "CORRAL_CRIU_FETCH_ONLY: $CORRAL_CRIU_FETCH_ONLY/$CRIU_TARBALL fetched and checked; nothing else done"
  exit 0
fi

apt_install "${RUNTIME_PKGS[@]}" "${IMAGE_PKGS[@]}"
apt_install_no_services "${SERVICE_PKGS[@]}"

if [[ ${CORRAL_SKIP_CRIU:-0} == 1 ]]; then
  log "CORRAL_SKIP_CRIU=1: skipping criu"
else
  install_criu
fi

if [[ ${CORRAL_INSTALL_YOUKI:-0} == 1 ]]; then
  if [[ -x /usr/local/bin/youki ]] && /usr/local/bin/youki --version 2>/dev/null | grep -q "$YOUKI_VERSION"; then
    log "youki $YOUKI_VERSION present"
  else
    command -v cargo >/dev/null || die "CORRAL_INSTALL_YOUKI=1 needs cargo in PATH"
    apt_install libseccomp-dev pkg-config
    log "cargo install youki $YOUKI_VERSION (about 5 minutes)"
    start=$SECONDS
    # LTO off and 16 codegen units: the build takes minutes less; youki's speed
    # is measured against itself (bare and through corral) in `bench.sh runtimes`.
    CARGO_PROFILE_RELEASE_LTO=off CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
      CARGO_TARGET_DIR=/var/cache/corral-youki-build \
      cargo install youki --version "$YOUKI_VERSION" --locked --features v1,v2,systemd,seccomp \
      --root /usr/local >/dev/null ||
      die "cargo install youki failed"
    log "installed youki to /usr/local/bin/youki in $((SECONDS - start)) s"
  fi
fi

# Final checks.
runc_version="$(runc --version 2>/dev/null | head -n1)" || die "runc --version failed"
log "$runc_version"
crun_version="$(crun --version 2>/dev/null | head -n1)" || die "crun --version failed"
log "$crun_version"
[[ -x /bin/busybox ]] || die "/bin/busybox missing (busybox-static)"
log "/bin/busybox present"
for tool in docker-registry skopeo zstd gzip htpasswd containerd; do
  command -v "$tool" >/dev/null || die "$tool missing"
done
log "$(skopeo --version), docker-registry $(docker-registry --version 2>/dev/null | awk '{ print $NF }')"
mapfile -t left < <(service_pids)
[[ ${#left[@]} -eq 0 ]] || die "docker-registry or containerd running as a service (pids ${left[*]})"
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
