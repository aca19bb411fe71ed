#!/usr/bin/env bash
# Escape campaign (issue #10): terminal injection. CVE-2017-5226 (bubblewrap:
# TIOCSTI from the sandbox pushed commands into the caller's shell; fixed with
# setsid), CVE-2016-9016 / CVE-2016-7545 (firejail, SELinux sandbox, same
# class), CVE-2023-1523 (snapd, TIOCLINUX). `shed run` is started on a real
# terminal (a pty the test makes, as the controlling terminal of its session,
# like a login shell); the probe inside tries to inject input, steal the
# terminal, or become its foreground group. The test then reads the terminal's
# input queue: nothing may be there. A positive control on the host side
# (TIOCSTI from the terminal's own session) proves the check can see injected
# input.
# timeout: 60
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/sandbox.sh"
sb_probe
sb_policies "$SB_PROBE_MOUNT"

cat >"$T/ptyrun.py" <<'PY'
# usage: ptyrun.py control | tty.py run CMD...
# Makes a pty; a child becomes a session leader with the slave as its
# controlling terminal (stdin/out/err) and runs CMD (or, for "control",
# injects "C" itself). Afterwards the parent drains the terminal's input
# queue (raw mode, non-blocking) and prints what was queued, then the
# child's output.
import os, sys, termios, tty, fcntl, select, time
master, slave = os.openpty()
tty.setraw(slave)
os.chmod(os.ttyname(slave), 0o666)
pid = os.fork()
if pid == 0:
    os.setsid()
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    os.close(master)
    if sys.argv[1] == "control":
        try:
            fcntl.ioctl(0, termios.TIOCSTI, b"C")
        except OSError as e:
            os.write(1, ("control TIOCSTI failed: %s\n" % e).encode())
        os._exit(0)
    os.execvp(sys.argv[2], sys.argv[2:])
out, st = b"", None
while True:
    r, _, _ = select.select([master], [], [], 0.2)
    if r:
        try:
            d = os.read(master, 65536)
        except OSError:
            d = b""
        out += d
    if st is None:
        wp, ws = os.waitpid(pid, os.WNOHANG)  # reaped once: a second waitpid is ECHILD
        if wp:
            st = ws
    if st is not None and not r:
        break
# what is queued for the terminal's readers (the caller's shell would get it)
fl = fcntl.fcntl(slave, fcntl.F_GETFL)
fcntl.fcntl(slave, fcntl.F_SETFL, fl | os.O_NONBLOCK)
try:
    queued = os.read(slave, 4096)
except BlockingIOError:
    queued = b""
print("QUEUED[%s]" % queued.decode(errors="replace"))
print(out.decode(errors="replace").replace("\r", ""))
print("STATUS %d" % os.waitstatus_to_exitcode(st))
PY

step "positive control: TIOCSTI from the terminal's own session lands in its input queue"
out=$(python3 "$T/ptyrun.py" control)
echo "$out" | sed 's/^/    /'
if [[ "$out" == *"control TIOCSTI failed"* ]]; then
    echo "    (this kernel refuses TIOCSTI even to the terminal's own session: dev.tty.legacy_tiocsti=0)"
else
    expect_contains "$out" "QUEUED[C]" "the check sees injected input"
fi

for mode in "${MODES[@]}"; do
    step "[$mode] shed run on a terminal: TIOCSTI, TIOCLINUX, TIOCCONS, tcsetpgrp, /dev/tty, setsid+TIOCSCTTY"
    if [ "$mode" = root ]; then
        out=$(python3 "$T/ptyrun.py" run "$SHED" run --policy "$T/root.json" -- /opt/probe/probe tty)
    else
        out=$(python3 "$T/ptyrun.py" run setpriv --reuid=65534 --regid=65534 --clear-groups \
            "$SHED" run --policy "$T/unpriv.json" -- /opt/probe/probe tty)
    fi
    echo "$out" | sed "s/^/    [$mode] /"
    expect_contains "$out" "QUEUED[]" "nothing was pushed into the caller's terminal"
    expect_contains "$out" "OK isatty(0)" "the probe ran on the terminal (control)"
    expect_contains "$out" "BLOCKED ioctl(0, TIOCSTI)" "TIOCSTI"
    expect_contains "$out" "BLOCKED setsid + TIOCSCTTY" "stealing the terminal"
    expect_not_contains "$out" "ESCAPE" "terminal escapes"
    expect_contains "$out" "OK session: sid=1 " "the command is in init's session, not the caller's"
    expect_contains "$out" "STATUS 0" "probe exit status"

    step "[$mode] a shell inside pushing input with TIOCSTI through bash/python"
    cmd='python3 -c "import fcntl,termios; fcntl.ioctl(0, termios.TIOCSTI, b\"id\\n\")" 2>&1 | tail -n1; echo done'
    if [ "$mode" = root ]; then
        out=$(python3 "$T/ptyrun.py" run "$SHED" run --policy "$T/root.json" -- /bin/sh -c "$cmd")
    else
        out=$(python3 "$T/ptyrun.py" run setpriv --reuid=65534 --regid=65534 --clear-groups \
            "$SHED" run --policy "$T/unpriv.json" -- /bin/sh -c "$cmd")
    fi
    echo "$out" | sed "s/^/    [$mode] /"
    expect_contains "$out" "QUEUED[]" "nothing was pushed into the caller's terminal"
    expect_contains "$out" "done" "the shell ran"
done
echo "escape_tty ok (${MODES[*]})"
