#!/usr/bin/env bash
# Makes the base image every Magnetar image starts FROM, without a registry:
#
#   1. `debootstrap --variant=minbase $SUITE` (plus tini and ca-certificates)
#      into $CACHE/debootstrap-$SUITE, once; Debian's package mirror is the
#      only download.
#   2. A minimal root file system is staged from it: the shared libraries the
#      given binaries load (their ldd closure, taken from the Debian root, not
#      from the host), tini-static, the CA bundle, passwd/group with the
#      non-root user `magnetar` (uid/gid 10001), /tmp, /data, and our static
#      health probe (images/healthcheck.c).
#   3. The staged tree is `docker import`ed as magnetar-base:<hash>, where
#      <hash> is a sha256 over every staged file's path, mode and content: an
#      unchanged base is not imported again.
#
#   images/base.sh BINARY...     prints the base image's tag on stdout
#
# The full minbase root (~220 MB) stays on the host; only what the binaries
# need goes into the image (~7 MB), which is what keeps each image under
# the 80 MB budget (docs/CONTAINERS.md).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=${MAGNETAR_IMAGE_CACHE:-$HOME/.cache/magnetar/images}
# The binaries are built on this host, so the base is the host's Debian
# release: the glibc they were linked against is the one they get.
SUITE=${SUITE:-$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
MAGNETAR_UID=10001

log() { echo "images/base: $*" >&2; }

[[ $# -ge 1 ]] || { echo "usage: $0 BINARY..." >&2; exit 2; }
[[ $(id -u) = 0 ]] || { echo "images/base: debootstrap and chroot need root" >&2; exit 1; }

ROOTFS=$CACHE/debootstrap-$SUITE
if [[ ! -f $ROOTFS/.complete ]]; then
  command -v debootstrap >/dev/null || {
    log "installing debootstrap"
    # A fresh machine may have no package lists yet.
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
  }
  log "debootstrap --variant=minbase $SUITE into $ROOTFS (once)"
  rm -rf "$ROOTFS"
  mkdir -p "$CACHE"
  debootstrap --variant=minbase --include=tini,ca-certificates "$SUITE" "$ROOTFS" "$MIRROR" \
    >"$CACHE/debootstrap-$SUITE.log" 2>&1 || {
    log "debootstrap failed; see $CACHE/debootstrap-$SUITE.log"
    tail -5 "$CACHE/debootstrap-$SUITE.log" >&2
    exit 1
  }
  touch "$ROOTFS/.complete"
fi

STAGE=$(mktemp -d "$CACHE/stage.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT

# usr-merged layout, as in Debian since bookworm.
mkdir -p "$STAGE"/usr/{bin,lib/x86_64-linux-gnu,lib64,local/bin} "$STAGE"/etc/ssl/certs \
  "$STAGE"/data "$STAGE"/tmp "$STAGE"/proc "$STAGE"/sys "$STAGE"/dev
ln -s usr/bin "$STAGE/bin"
ln -s usr/bin "$STAGE/sbin"
ln -s usr/lib "$STAGE/lib"
ln -s usr/lib64 "$STAGE/lib64"
chmod 1777 "$STAGE/tmp"

# Shared libraries: what the binaries load on this host, copied from the
# Debian root (the same release), each as a regular file under its soname.
libs=$(for b in "$@"; do ldd "$b"; done | grep -oE '/[^ ]+\.so[^ ]*' | sort -u)
for lib in $libs; do
  real=$(chroot "$ROOTFS" /usr/bin/readlink -f "$lib" 2>/dev/null || true)
  if [[ -z $real || ! -f $ROOTFS$real ]]; then
    log "$lib (needed by a binary) is not in the $SUITE minbase root; add its package to --include in $0"
    exit 1
  fi
  case $lib in
    /lib64/*) dest=$STAGE/usr/lib64/$(basename "$lib") ;;
    /lib/*) dest=$STAGE/usr/lib/${lib#/lib/} ;;
    /usr/*) dest=$STAGE$lib ;;
  esac
  mkdir -p "$(dirname "$dest")"
  cp -L "$ROOTFS$real" "$dest"
done

# PID 1: tini forwards SIGTERM to the service and reaps zombies.
cp "$ROOTFS/usr/bin/tini-static" "$STAGE/usr/bin/tini"
cp "$ROOTFS/etc/ssl/certs/ca-certificates.crt" "$STAGE/etc/ssl/certs/"
# The health probe: static, so it needs nothing from the image.
cc -static -Os -s -o "$STAGE/usr/local/bin/healthcheck" "$HERE/healthcheck.c"

cat >"$STAGE/etc/passwd" <<EOF
root:x:0:0:root:/root:/usr/sbin/nologin
magnetar:x:$MAGNETAR_UID:$MAGNETAR_UID:magnetar:/data:/usr/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
EOF
cat >"$STAGE/etc/group" <<EOF
root:x:0:
magnetar:x:$MAGNETAR_UID:
nogroup:x:65534:
EOF
printf 'hosts: files dns\n' >"$STAGE/etc/nsswitch.conf"
printf '%s\n' "$SUITE minbase subset made by images/base.sh" >"$STAGE/etc/magnetar-base"
chown "$MAGNETAR_UID:$MAGNETAR_UID" "$STAGE/data"

# Content hash: paths, modes, owners and bytes of everything staged.
hash=$(cd "$STAGE" && find . -print0 | LC_ALL=C sort -z |
  xargs -0 stat -c '%n %a %u %g %F' | sha256sum | cut -c1-16)
hash=$(printf '%s %s' "$hash" "$(cd "$STAGE" && find . -type f -print0 | LC_ALL=C sort -z |
  xargs -0 sha256sum | sha256sum | cut -c1-16)" | sha256sum | cut -c1-12)
TAG=magnetar-base:$hash
if docker image inspect "$TAG" >/dev/null 2>&1; then
  log "$TAG exists (unchanged)"
else
  log "importing $TAG ($(du -sh "$STAGE" | cut -f1))"
  tar -C "$STAGE" --numeric-owner -c . | docker import \
    -c 'USER magnetar' -c 'WORKDIR /data' \
    -m "Magnetar base: $SUITE minbase subset (images/base.sh)" - "$TAG" >/dev/null
fi
echo "$TAG"
