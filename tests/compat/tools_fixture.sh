#!/usr/bin/env bash
# Builds the conformance suite's work directory in DIR (which must be empty
# or absent): text, unicode, CRLF, invalid UTF-8, binary, large files, a
# FIFO, dot and skipped directories, symlinks pointing in, out, dangling and
# in a loop. Every mtime is set so that glob's newest-first order is fixed.
# usage: tools_fixture.sh DIR
set -euo pipefail
d=$1
mkdir -p "$d"
cd "$d"
printf 'hello world\n' > hello.txt
for i in $(seq 1 10); do echo "line $i"; done > lines.txt
printf 'h\xc3\xa9llo \xf0\x9f\x8e\x89 \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\nzweite Zeile \xc3\xbc\n' > unicode.txt
printf 'one\r\ntwo\r\nthree' > crlf.txt
printf 'caf\xe9 \xff\xfe ok\n' > latin1.txt
printf 'bin\0ary\0data\nneedle in binary\n' > binary.dat
printf 'needle first\nmore\0zero\nneedle second\npartial needle' > nul_late.txt
# 300 KB: over read's 256 KiB limit
awk 'BEGIN { for (i = 1; i <= 20000; i++) printf "row %05d needle-%d ........\n", i, i % 7 }' > big.txt
# one 300 KB line, then two short ones
{ head -c 300000 /dev/zero | tr '\0' 'x'; printf '\nsecond\nthird\n'; } > bigline.txt
# long lines for grep's 2000-unit line cap
{ head -c 1999 /dev/zero | tr '\0' 'n'; printf 'X\n'; head -c 2000 /dev/zero | tr '\0' 'n'; printf 'X\n'; } > longlines.txt
printf '\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89' > pixel.png
printf '%%PDF-1.4\n%%\xe2\xe3\xcf\xd3\n1 0 obj << >> endobj\ntrailer << >>\n%%%%EOF\n' > doc.pdf
mkdir -p src/lib src/empty .hidden node_modules/pkg .git deep/a/b/c/d
printf 'function alpha() {\n  return 1;\n}\n' > src/a.js
printf 'const beta = () => 2; // needle\n' > src/b.js
printf 'export const gamma = 3;\n' > src/lib/c.ts
printf 'needle in hidden\n' > .hidden/h.txt
printf 'needle in node_modules\n' > node_modules/pkg/index.js
printf '[core]\nneedle = git\n' > .git/config
printf 'deep needle\n' > deep/a/b/c/d/deep.txt
printf 'x = 1\ny = 2\nx = 3\n' > dup.txt
printf 'price: $5 and $& and $1\n' > dollars.txt
mkfifo fifo
ln -s hello.txt link_in
ln -s /etc/passwd link_out
ln -s /etc link_dir_out
ln -s /nonexistent-shed-dir/file dangling_out
ln -s src link_dir_in
ln -s loop_b loop_a
ln -s loop_a loop_b
# 250 files for glob's 200-result cap, each with its own mtime
mkdir many
python3 -c 'import os
for i in range(250):
    p = "many/f%03d.dat" % i
    open(p, "w").write("x\n")
    os.utime(p, (1600000000 + i, 1600000000 + i))'

# ripgrep's own rules (grep with rg on PATH): .gitignore (the fixture is a git
# work tree: .git exists), .ignore, .rgignore, negation, hidden files, and
# binary files as rg reads them (a NUL late in a file, early, explicit)
mkdir -p rg/build rg/sub/a rg/.hdir
printf 'ignored.md\n*.log\n!keep.log\nbuild/\n/rooted.md\nsub/**/deepign.md\n!.shown.md\n' > rg/.gitignore
printf 'fromignore.md\n' > rg/.ignore
printf 'rgign.md\n' > rg/sub/.rgignore
for f in ignored.md a.log keep.log build/x.md rooted.md sub/rooted.md sub/deepign.md sub/a/deepign.md \
    fromignore.md sub/rgign.md .hidden.md .shown.md .hdir/x.md; do
    printf 'needle in %s\n' "$f" > "rg/$f"
done
python3 -c 'import sys
w = lambda p, b: open("rg/" + p, "wb").write(b)
w("late_nul.md", b"".join(b"line %d needle\n" % i for i in range(20000)) + b"x\0y\nneedle after nul\n")
w("early_nul.md", b"needle a\nneedle b\0\nneedle c\n")
w("crlf.md", b"needle one\r\nneedle two\r\n")
w("bom.md", b"\xef\xbb\xbfneedle bom\nneedle two\n")
w("uni.md", "\u00dcn\u00efc\u00f6d\u00e9 w\u00f6rd 123 \u0663\nplain ascii 7\n".encode())
w("bad.md", b"needle caf\xe9 \xff ok\n")
w("many.md", b"".join(b"needle %05d ........................................\n" % i for i in range(5000)))
w("long.md", b"y" * 300000 + b"needle x\n")'
# fixed mtimes, oldest first in this list
t=1700000000
for f in hello.txt lines.txt unicode.txt crlf.txt latin1.txt binary.dat nul_late.txt big.txt bigline.txt \
    longlines.txt pixel.png doc.pdf src/a.js src/b.js src/lib/c.ts .hidden/h.txt node_modules/pkg/index.js \
    .git/config deep/a/b/c/d/deep.txt dup.txt dollars.txt \
    $(cd rg && find . -type f | sort | sed 's|^\./|rg/|'); do
    touch -h -d "@$t" "$f"
    t=$((t + 60))
done
