#!/usr/bin/env bash
# Builds the four Magnetar images from binaries already built on this host:
#
#   images/build.sh [release|debug]      (`make images PROFILE=...` builds the binaries first)
#
# release (the default) tags magnetar-{meta,bookie,broker}:{version} and :dev,
# and magnetar:{version} and :dev. debug tags :{version}-debug and :dev-debug:
# `make test` uses the debug binaries it has already built (their dependencies
# are compiled at opt-level 2) instead of paying for a cold release build.
# Binaries are stripped on the host, the base comes from images/base.sh, and
# each image must stay within the budget (80 MB) or the build fails.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
PROFILE=${1:-${PROFILE:-release}}
TARGET=${CARGO_TARGET_DIR:-$HOME/.cache/magnetar/target}
BIN_DIR=$TARGET/$PROFILE
CACHE=${MAGNETAR_IMAGE_CACHE:-$HOME/.cache/magnetar/images}
BUDGET_MB=${IMAGE_BUDGET_MB:-80}

case $PROFILE in
  release) SUFFIX="" ;;
  debug) SUFFIX="-debug" ;;
  *) echo "images/build: PROFILE must be release or debug, not $PROFILE" >&2; exit 2 ;;
esac

VERSION=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' "$ROOT/Cargo.toml" | head -1)
REVISION=$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)
CREATED=$(git -C "$ROOT" log -1 --format=%cI 2>/dev/null || date -u +%FT%TZ)

# service name -> binary
declare -A BIN=([meta]=magnetar-meta [bookie]=magnetar-bookie [broker]=magnetar-broker [magnetar]=magnetar)
SERVICES=(meta bookie broker magnetar)

CTX=$CACHE/context-$PROFILE
mkdir -p "$CTX"
for s in "${SERVICES[@]}"; do
  b=$BIN_DIR/${BIN[$s]}
  [[ -x $b ]] || { echo "images/build: $b is missing; build it first (make images PROFILE=$PROFILE does)" >&2; exit 1; }
  # Strip only when the binary changed (the context's mtime follows it).
  if [[ ! -f $CTX/${BIN[$s]} || $b -nt $CTX/${BIN[$s]} ]]; then
    strip --strip-all -o "$CTX/${BIN[$s]}.tmp" "$b"
    mv "$CTX/${BIN[$s]}.tmp" "$CTX/${BIN[$s]}"
  fi
done

BASE=$("$HERE/base.sh" "${BIN[@]/#/$CTX/}")

names=()
for s in "${SERVICES[@]}"; do
  name=${BIN[$s]}
  echo "images/build: $name:$VERSION$SUFFIX ($PROFILE) from $BASE" >&2
  # (The legacy builder: this engine has no buildx. Its deprecation notice is
  # shown only when the build fails, with the rest of its output.)
  out=$(docker build -q -f "$HERE/$s.Dockerfile" \
    --build-arg BASE="$BASE" --build-arg VERSION="$VERSION" --build-arg REVISION="$REVISION" \
    --build-arg CREATED="$CREATED" --build-arg PROFILE="$PROFILE" \
    -t "$name:$VERSION$SUFFIX" -t "$name:dev$SUFFIX" "$CTX" 2>&1) || {
    echo "images/build: docker build of $name failed:" >&2
    echo "$out" >&2
    exit 1
  }
  # The binary loads its libraries in the image and runs as the non-root user.
  out=$(docker run --rm --entrypoint /usr/local/bin/"$name" "$name:dev$SUFFIX" --version 2>&1) || {
    echo "images/build: $name does not run in its image: $out" >&2
    exit 1
  }
  names+=("$name")
done

over=0
printf '%-18s %-16s %8s\n' IMAGE TAG SIZE
for name in "${names[@]}"; do
  bytes=$(docker image inspect -f '{{.Size}}' "$name:dev$SUFFIX")
  mb=$(awk -v b="$bytes" 'BEGIN { printf "%.1f", b / 1e6 }')
  printf '%-18s %-16s %6s MB\n' "$name" "$VERSION$SUFFIX" "$mb"
  if (( bytes > BUDGET_MB * 1000000 )); then
    echo "images/build: $name is $mb MB, over the $BUDGET_MB MB budget" >&2
    over=1
  fi
done
exit $over
