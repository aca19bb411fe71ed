#!/usr/bin/env bash
# Agent toolset benchmark (issue #4). In one warm sandbox, through the
# control channel (`shed tool --repeat --timing`: request sent → result
# received, as the worker sees it), p50/p99 over N calls each of: bash
# `echo hello` (a builtin: pure protocol cost), bash `/bin/true` (adds fork
# and exec), `read` of a 10 KB file, `grep` over a small tree (ripgrep when
# installed, then shed's walker), the same tree as a git repository with a
# .gitignore (rg on PATH: shed then starts rg to list the files, as the
# reference starts rg to search them), and an unknown tool (no work at all: the
# hop itself, creator → init → creator). Anchors, measured in the same run:
# the reference toolset (@anthropic-ai/sdk under node 22) running the same
# calls in-process on the host. Also init's RSS with an idle bash.
# BENCH_N=calls per kind (default 1000).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${SHED:=$PWD/build/shed}"
: "${SHED_BUILD:=$PWD/build}"
N=${BENCH_N:-1000}
NODE=$PWD/node_modules/.bin/node
B=$PWD/tests/compat/tools_bench.mjs
T=$(mktemp -d /tmp/shed-bench-tools.XXXXXX)
trap 'rm -rf "$T"' EXIT
chmod 755 "$T"

mk_tree() { # DIR
    mkdir -p "$1/tree/a/b" "$1/tree/c"
    head -c 10240 /dev/urandom | base64 -w 80 | head -c 10240 > "$1/file10k.txt"
    for i in $(seq 1 20); do
        awk -v i="$i" 'BEGIN { for (l = 1; l <= 50; l++) printf "file %d line %d %s\n", i, l, (l % 10 == 0 ? "needle" : "hay") }' \
            > "$1/tree/$( [ $((i % 3)) = 0 ] && echo a/b || ([ $((i % 3)) = 1 ] && echo c || echo a))/f$i.txt"
    done
    # the same tree as a git repository with a .gitignore: rg's listing then
    # depends on ignore rules, so shed asks rg for it (docs/toolset.md, grep)
    cp -a "$1/tree" "$1/gtree"
    mkdir "$1/gtree/.git"
    printf '*.log\n' > "$1/gtree/.gitignore"
    printf 'needle ignored\n' > "$1/gtree/a/x.log"
}
cat > "$T/calls.json" <<'J'
[{"label":"hop (unknown tool)","name":"nope","input":{}},
 {"label":"bash echo hello","name":"bash","input":{"command":"echo hello"}},
 {"label":"bash /bin/true","name":"bash","input":{"command":"/bin/true"}},
 {"label":"read 10 KB","name":"read","input":{"file_path":"file10k.txt"}},
 {"label":"grep small tree","name":"grep","input":{"pattern":"needle","path":"tree"}},
 {"label":"grep small git tree","name":"grep","input":{"pattern":"needle","path":"gtree"}}]
J
"$NODE" -e 'const c=JSON.parse(require("fs").readFileSync(process.argv[1]));
  process.stdout.write(JSON.stringify(c.filter(x=>x.label==="grep small tree").map(x=>({...x,label:"grep small tree (walker)"}))))' \
  "$T/calls.json" > "$T/walker.json"

# the module alone, in-process (no sandbox, no channel): the tool's own cost
cc -std=gnu11 -D_GNU_SOURCE -O2 -I"$PWD/src" -o "$T/inproc" bench/tools_inproc.c "$SHED_BUILD/libshed.a" \
    $(pkg-config --libs libcurl jansson libseccomp libmicrohttpd sqlite3 libcrypto libarchive libpcre2-8) -lm -pthread

run_side() { # OUTFILE CALLS PATH
    local ref=$T/ref shd=$T/shd
    rm -rf "$ref" "$shd"; mk_tree "$ref"; cp -a "$ref" "$shd"
    PATH=$3 "$NODE" "$B" ref --workdir "$ref" --calls "$2" --repeat "$N" > "$1.ref"
    PATH=$3 "$T/inproc" "$ref" "$2" "$N" > "$1.mod"
    # one extra round to warm up, dropped below
    "$SHED" tool --workspace "$shd" --env "PATH=$3" --calls "$2" --repeat $((N + 1)) --timing \
        > "$1.shed" 2> "$1.rss" || { cat "$1.rss" >&2; return 1; }
}
run_side "$T/main" "$T/calls.json" "/usr/local/bin:/usr/bin:/bin"
run_side "$T/walk" "$T/walker.json" "/nonexistent"

ref=$("$NODE" "$B" stats "$T/main.ref" "$T/walk.ref")
shd=$("$NODE" "$B" stats --calls "$T/calls.json" --skip 1 "$T/main.shed")
shw=$("$NODE" "$B" stats --calls "$T/walker.json" --skip 1 "$T/walk.shed")
mod=$("$NODE" "$B" stats "$T/main.mod" "$T/walk.mod")
rss=$(grep -h init_rss_kb "$T/main.rss" | tail -1)
# grep on realistic trees (rg on PATH: rg lists, shed opens and searches):
# the module in-process against rg itself run directly, same run
if command -v rg >/dev/null; then
    cc -std=gnu11 -D_GNU_SOURCE -O2 -I"$PWD/src" -o "$T/grepb" bench/tools_grep.c "$SHED_BUILD/libshed.a" \
        $(pkg-config --libs libcurl jansson libseccomp libmicrohttpd sqlite3 libcrypto libarchive libpcre2-8) -lm -pthread
    mkdir -p "$T/g"; cp -a src "$T/g/src"
    python3 - "$T/g/big" <<'PY'
import os, random, sys
random.seed(7)
words = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau".split()
for d in range(100):
    dp = os.path.join(sys.argv[1], f"d{d:03d}", f"sub{d % 7}")
    os.makedirs(dp, exist_ok=True)
    for f in range(50):
        lines = []
        for l in range(200):
            w = " ".join(random.choice(words) for _ in range(6))
            if random.random() < 0.002: w += " needle"
            if random.random() < 0.05: w = f"fn_{random.choice(words)}({l}) {w}"
            lines.append(w)
        open(os.path.join(dp, f"f{f:02d}.txt"), "w").write("\n".join(lines) + "\n")
PY
    cat > "$T/g.json" <<'J'
[{"label":"src/ (123 files) needle","input":{"pattern":"needle","path":"src"}},
 {"label":"src/ json_[a-z]+\\(","input":{"pattern":"json_[a-z]+\\(","path":"src"}},
 {"label":"5000 files 45 MB, no match","input":{"pattern":"zzqx","path":"big"}},
 {"label":"5000 files, fn_pi\\(1\\d\\d\\) alpha","input":{"pattern":"fn_pi\\(1\\d\\d\\) alpha","path":"big"}},
 {"label":"5000 files, \\bmu nu\\b.*needle$","input":{"pattern":"\\bmu nu\\b.*needle$","path":"big"}}]
J
    grepfig=$(cd "$T/g" && PATH=/usr/local/bin:/usr/bin:/bin "$T/grepb" "$T/g" "$T/g.json" "${BENCH_GREP_N:-10}")
fi

"$NODE" -e '
const [ref, shd, shw, rss, n, mod] = process.argv.slice(1);
const R = JSON.parse(ref), S = {...JSON.parse(shd), ...JSON.parse(shw)}, M = JSON.parse(rss), D = JSON.parse(mod);
const rg = require("child_process").spawnSync("sh", ["-c", "command -v rg"]).status === 0;
console.log(`calls per kind: ${n}; ripgrep ${rg ? "installed" : "not installed"}; times in microseconds`);
console.log("call".padEnd(28) + "shed p50".padStart(9) + "shed p99".padStart(9) + "ref p50".padStart(9) + "ref p99".padStart(9) + "  shed/ref" + "   module p50 p99 (in-process)");
for (const k of Object.keys(S)) {
  const s = S[k], r = R[k] || {}, d = D[k] || {};
  const ratio = r.p50_us ? (s.p50_us / r.p50_us).toFixed(2) + "x" : "-";
  console.log(k.padEnd(28) + String(s.p50_us).padStart(9) + String(s.p99_us).padStart(9) +
    String(r.p50_us ?? "-").padStart(9) + String(r.p99_us ?? "-").padStart(9) + ("  " + ratio).padStart(10) +
    String(d.p50_us ?? "-").padStart(10) + String(d.p99_us ?? "-").padStart(7));
}
const hop = S["hop (unknown tool)"];
console.log(`hop (creator -> init -> creator, no tool work): p50 ${hop.p50_us} us, p99 ${hop.p99_us} us`);
console.log(`init RSS with an idle bash: init ${M.init_rss_kb} KiB, bash (${M.children} child of init) ${M.children_rss_kb} KiB`);
' "$ref" "$shd" "$shw" "$rss" "$N" "$mod"
[ -z "${grepfig:-}" ] || { echo; echo "grep on realistic trees, module in-process vs rg run directly (${BENCH_GREP_N:-10} calls each):"; echo "$grepfig"; }
