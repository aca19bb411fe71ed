#!/usr/bin/env bash
# Observability costs: metric updates, /metrics rendering, audit records
# (caller side and end to end) and verification, beside same-run anchors.
set -euo pipefail
cd "$(dirname "$0")/.."
B=${SHED_BUILD:-$PWD/build}
[ -f "$B/libshed.a" ] || make -s all
pkgs=$(sed -n "s/^PKGS *:= *//p" Makefile)
tmp=$(mktemp -d /tmp/shed-bench-obs.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
cc -std=gnu11 -D_GNU_SOURCE -O2 -Isrc $(pkg-config --cflags $pkgs) -o "$tmp/obs_bench" \
    bench/obs_bench.c "$B/libshed.a" $(pkg-config --libs $pkgs) -lm -pthread
"$tmp/obs_bench" "$tmp"
