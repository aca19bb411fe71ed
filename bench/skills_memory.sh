#!/usr/bin/env bash
# Skills extraction against its anchor, GNU tar -xzf / unzip of the same
# archive (what the reference worker shells out to; the reference also lists
# the archive twice and walks it to reset modes, so the anchor flatters it);
# and the memory-store engine's own cost for a store of 2000 memories (the
# API's per-store cap) against an in-process remote: full pull, a sync with
# nothing changed (first walk, then with the hash cache), a sync with a tenth
# of the files edited. Medians of 5 runs for extraction.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${SHED_BUILD:-$PWD/build}
[ -f "$build/libshed.a" ] || { echo "build/libshed.a missing: run make"; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
bin="$work/skills_memory"
cc -std=gnu11 -D_GNU_SOURCE -O2 -Isrc bench/skills_memory.c "$build/libshed.a" \
    $(pkg-config --cflags --libs jansson libcrypto libarchive libcurl) -lm -pthread -o "$bin"

# A skill of 2000 files, ~24 MiB: text, scripts, some binary-ish data.
src="$work/src/pdf"
mkdir -p "$src"
python3 - "$src" <<'EOF'
import os, sys, random
root = sys.argv[1]; random.seed(7)
for d in range(40):
    os.makedirs(f"{root}/d{d}", exist_ok=True)
    for f in range(50):
        size = random.choice([200, 2000, 20000, 50000])
        with open(f"{root}/d{d}/f{f}.txt", "wb") as fh:
            fh.write(bytes(random.getrandbits(8) % 64 + 32 for _ in range(size)))
EOF
(cd "$work/src" && tar -czf "$work/skill.tar.gz" pdf && zip -qr "$work/skill.zip" pdf 2>/dev/null || true)
echo "archive: $(du -k "$work/skill.tar.gz" | cut -f1) KiB tar.gz, $(find "$src" -type f | wc -l) files, $(du -sk "$src" | cut -f1) KiB"

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ms() { local t0 t1; t0=$(date +%s%N); "$@" >/dev/null; t1=$(date +%s%N); echo $(((t1 - t0) / 1000000)); }

for fmt in tar.gz zip; do
    arc="$work/skill.$fmt"
    [ -f "$arc" ] || { echo "$fmt: skipped (no zip CLI)"; continue; }
    shed_runs=() anchor_runs=()
    for i in 1 2 3 4 5; do
        rm -rf "$work/out" && mkdir -p "$work/out"
        shed_runs+=("$("$bin" extract "$arc" "$work/out" s | awk '{print $2}')")
        rm -rf "$work/out" && mkdir -p "$work/out/s"
        if [ "$fmt" = zip ]; then anchor_runs+=("$(ms unzip -oq "$arc" -d "$work/out/s")")
        else anchor_runs+=("$(ms tar -xzf "$arc" -C "$work/out/s" --no-same-owner --no-same-permissions)")
        fi
    done
    s=$(printf '%s\n' "${shed_runs[@]}" | median)
    a=$(printf '%s\n' "${anchor_runs[@]}" | median)
    anchor=$([ "$fmt" = zip ] && echo "unzip" || echo "tar -xzf")
    echo "extract $fmt: shed ${s} ms, $anchor ${a} ms, ratio $(awk -v s="$s" -v a="$a" 'BEGIN{printf "%.2f", (a>0? s/a : 0)}')"
done

mkdir -p "$work/mem"
"$bin" sync "$work/mem" 2000 | sed 's/^/memory (2000 memories): /'

# The worker's set-up and teardown cost for skills and memory stores, end to
# end (needs a host that can make sandboxes; otherwise it says so).
SHED=${SHED:-$PWD/build/shed} python3 bench/skills_memory_worker.py
