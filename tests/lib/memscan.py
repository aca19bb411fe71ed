#!/usr/bin/env python3
"""memscan.py PID NEEDLE...: prints "NEEDLE MAPPING" for each needle found in
PID's writable mappings and its stack (read through /proc/PID/mem, so root),
"none" when there is none. Mappings over 64 MB are skipped: a sanitizer's
shadow or allocator space (ASan builds), reserved, not data. Fails when it
could read almost nothing, so an unreadable process never passes for clean.
Used by the init-in-place tests (sandbox_init_inplace.sh, escape3_inplace.sh)."""
import sys

pid, needles = int(sys.argv[1]), [s.encode() for s in sys.argv[2:]]
hits, scanned = [], 0
with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as mem:
    for line in maps:
        f = line.split()
        lo, hi = (int(x, 16) for x in f[0].split("-"))
        name = f[5] if len(f) > 5 else "anon"
        if ("w" not in f[1] and name != "[stack]") or hi - lo > 64 << 20:
            continue
        data = b""
        for off in range(lo, hi, 1 << 20):
            try:
                mem.seek(off)
                data += mem.read(min(1 << 20, hi - off))
            except OSError:
                break
        scanned += len(data)
        hits += [f"{n.decode()} {name}" for n in needles if n in data]
if scanned < 4096:
    sys.exit(f"scanned only {scanned} bytes of {pid}")
print("\n".join(hits) if hits else "none")
