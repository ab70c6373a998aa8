"""Red-team: an agent that attacks the host side of the sandbox (races, links, leftovers, disk).

Each test plays what an adversarial policy can do from inside the box (it controls the
work dir and the processes it starts) against the host-side file tools, on both backends.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from pathlib import Path

import pytest
from sandbox_helpers import TEST_CONFIG, host_pids_of_uid, make_sandbox

from rowgym.sandboxes import SandboxConfig, SandboxPathError, SandboxQuotaError
from rowgym.sandboxes.base import Sandbox

pytestmark = pytest.mark.redteam
ROOT = os.geteuid() == 0

# Swaps d <-> d_link and w <-> w_link (links to host dirs) with renameat2(RENAME_EXCHANGE)
# until /workspace/stop exists; prints how many rounds it did.
SWAPPER = r"""
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD, RENAME_EXCHANGE = -100, 2
os.chdir("/workspace")
open("ready", "w").close()
n = 0
while not os.path.exists("stop"):
    for a, b in ((b"d", b"d_link"), (b"w", b"w_link")):
        if libc.renameat2(AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE) != 0:
            raise SystemExit("renameat2 failed: errno %d" % ctypes.get_errno())
    n += 1
print(n)
"""


def _host_dirs(tmp_path: Path) -> tuple[Path, Path, str]:
    """A root-only secret dir (canary 0600) and an empty target dir, both on the host."""
    secret = secrets.token_hex(16)
    sdir, tdir = tmp_path / "host-secret", tmp_path / "host-target"
    sdir.mkdir()
    tdir.mkdir()
    for name in ("canary.txt", "host-only-marker"):
        (sdir / name).write_text(f"HOST-SECRET-{secret}")
        (sdir / name).chmod(0o600)
    return sdir, tdir, secret


async def _wait_for(sb: Sandbox, path: str, task: asyncio.Task) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            await sb.read_file(path)
            return
        except FileNotFoundError:
            if task.done():
                raise AssertionError(f"swapper ended early: {task.result()}") from None
            await asyncio.sleep(0.05)
    raise AssertionError("the swapper never started")


async def test_swap_race_reads_and_writes_nothing_outside(sb: Sandbox, tmp_path: Path) -> None:
    sdir, tdir, secret = _host_dirs(tmp_path)
    await sb.write_file("d/canary.txt", "inside")
    await sb.write_file("w/keep", "")
    await sb.write_file("swap.py", SWAPPER)
    res = await sb.exec(f"ln -s {sdir} d_link && ln -s {tdir} w_link", timeout=10)
    assert res.ok, res.stderr
    # The swapper runs in a concurrent exec (processes do not outlive their exec).
    swapper = asyncio.ensure_future(sb.exec("python3 swap.py", timeout=300))
    await _wait_for(sb, "ready", swapper)
    outcomes = {"read_ok": 0, "read_refused": 0, "write_ok": 0, "write_refused": 0}
    out = tmp_path / "out"
    for i in range(400):
        try:
            data = await sb.read_file("d/canary.txt")
            assert data == b"inside", data
            outcomes["read_ok"] += 1
        except (SandboxPathError, FileNotFoundError, NotADirectoryError) as e:
            assert str(sdir) not in str(e) and "rowgym-" not in str(e), e
            outcomes["read_refused"] += 1
        try:
            await sb.write_file(f"w/x{i}.txt", "pwned")
            outcomes["write_ok"] += 1
        except (SandboxPathError, FileNotFoundError, NotADirectoryError) as e:
            assert str(tdir) not in str(e), e
            outcomes["write_refused"] += 1
        if i % 4 == 0:
            try:
                listed = await sb.list_files("d")
                assert listed == ["canary.txt"], listed
            except (SandboxPathError, NotADirectoryError):
                pass
            try:
                await sb.copy_out("d", out / str(i))
            except (SandboxPathError, NotADirectoryError):
                pass
    await sb.write_file("stop", "")
    res = await swapper
    assert res.ok, res.stderr
    assert int(res.stdout) > 0
    # The attack was live (some calls met the link) and nothing crossed it.
    print("race outcomes:", outcomes)
    assert outcomes["read_refused"] > 0 and outcomes["write_refused"] > 0, outcomes
    assert list(tdir.iterdir()) == [], "a file was created in the host dir"
    for f in out.rglob("*"):
        assert f.is_dir() or f.read_text() == "inside", f
        assert f.name != "host-only-marker"
    assert all(p.read_text() == f"HOST-SECRET-{secret}" for p in sdir.iterdir())


async def test_symlink_tricks_on_every_file_op(sb: Sandbox, tmp_path: Path) -> None:
    sdir, tdir, secret = _host_dirs(tmp_path)
    script = (f"mkdir -p real/sub && echo inside > real/sub/f && ln -s {sdir} hostdir && ln -s {sdir}/canary.txt hostfile"
              " && ln -s real/sub inlink && ln -s . self && ln -s self/self/.. up && ln -s up/.. upup && mkfifo fifo")
    res = await sb.exec(script, timeout=10)
    assert res.ok, res.stderr
    for path in ("hostdir/canary.txt", "hostfile", "inlink/f", "up/canary.txt", "self/real/sub/f"):
        with pytest.raises(SandboxPathError, match="symbolic link") as e:
            await sb.read_file(path)
        assert str(sb.host_workdir) not in str(e.value) and "rowgym-" not in str(e.value)
        with pytest.raises(SandboxPathError, match="symbolic link"):
            await sb.write_file(path, "pwned")
        with pytest.raises(SandboxPathError, match="symbolic link"):
            await sb.list_files(path)
        with pytest.raises(SandboxPathError, match="symbolic link"):
            await sb.copy_out(path, tmp_path / "o")
    with pytest.raises(SandboxPathError, match="symbolic link"):
        await sb.copy_in(tmp_path / "host-target", "hostdir/sub")
    with pytest.raises(SandboxPathError, match="not a regular file"):
        await sb.read_file("fifo")  # would block a plain open()
    with pytest.raises(SandboxPathError, match="not a regular file"):
        await sb.write_file("fifo", "x")
    assert await sb.read_file("real/sub/f") == b"inside\n"
    # list_files names links but never walks through them.
    listed = await sb.list_files(".")
    assert listed is not None and "real/sub/f" in listed and "hostdir" in listed
    assert not any("canary" in p or "marker" in p for p in listed), listed
    # copy_out keeps links that stay inside, drops the ones that leave (chains included).
    out = tmp_path / "copy"
    await sb.copy_out(".", out)
    assert (out / "inlink").is_symlink() and (out / "self").is_symlink()
    for gone in ("hostdir", "hostfile", "up", "upup", "fifo"):
        assert not os.path.lexists(out / gone), gone
    for p in out.rglob("*"):
        real = os.path.realpath(p)
        assert os.path.commonpath([real, os.path.realpath(out)]) == os.path.realpath(out), p
    assert list(tdir.iterdir()) == [] and (sdir / "canary.txt").read_text() == f"HOST-SECRET-{secret}"


async def test_hard_links_cannot_reach_host_files(sb: Sandbox, tmp_path: Path) -> None:
    sdir, _, secret = _host_dirs(tmp_path)
    res = await sb.exec("ln /etc/passwd pw 2>&1; ln /tmp x 2>&1; echo done", timeout=10)
    assert "done" in res.stdout
    with pytest.raises(FileNotFoundError):
        await sb.read_file("pw")
    if sb.quota_mounted:
        # The work dir is its own filesystem: a host file cannot be linked into it at all.
        with pytest.raises(OSError, match="cross-device|Invalid cross-device"):
            os.link(sdir / "canary.txt", sb.host_workdir / "linked")
        assert os.stat(sb.host_workdir).st_dev != os.stat(sb.host_workdir.parent).st_dev
    else:
        assert not ROOT, "as root the work dir must carry its quota (its own filesystem)"
    assert (sdir / "canary.txt").read_text() == f"HOST-SECRET-{secret}"


async def test_background_processes_die_with_their_exec(sb: Sandbox) -> None:
    marker = f"rowgym-bg-{secrets.token_hex(4)}"
    baseline = host_pids_of_uid(TEST_CONFIG.uid)
    cmd = (f"python3 -c 'while True: pass' {marker}-a >/dev/null 2>&1 & "
           f"setsid python3 -c 'import time; time.sleep(600)' {marker}-b >/dev/null 2>&1 & "
           f"nohup sh -c 'sleep 600; echo {marker}-c' >/dev/null 2>&1 & "
           f"(python3 -c 'import os, time; os.fork() or time.sleep(600)' {marker}-d &) ; echo started")
    res = await sb.exec(cmd, timeout=20)
    assert res.stdout == "started\n" and not res.timed_out, res
    deadline = time.monotonic() + 5
    while True:
        left = {p: c for p, c in host_pids_of_uid(TEST_CONFIG.uid).items() if p not in baseline and marker in c}
        if not left or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    assert left == {}, f"outlived their exec: {left}"
    again = await sb.exec("echo alive", timeout=10)
    assert again.stdout == "alive\n"


async def test_concurrent_exec_is_not_killed_by_another_ending(sb: Sandbox) -> None:
    long = asyncio.ensure_future(sb.exec(
        "while [ ! -e go ]; do sleep 0.05; done; echo survived", timeout=120))
    short = await sb.exec("echo short", timeout=10)
    assert short.stdout == "short\n"
    assert not long.done()
    await sb.write_file("go", "")
    res = await long
    assert res.stdout == "survived\n" and res.ok, res


@pytest.mark.skipif(not ROOT, reason="the work-dir quota is a tmpfs, mounted only by root")
async def test_workdir_quota_stops_the_agent_and_the_host_stays_small(backend: str, tmp_path: Path) -> None:
    cfg = SandboxConfig(**{**TEST_CONFIG.__dict__, "workdir_mb": 8, "workdir_inodes": 300})
    ws = tmp_path / "ws"
    async with make_sandbox(backend, ws, cfg) as sb:
        assert sb.quota_mounted
        res = await sb.exec("dd if=/dev/zero of=big bs=1M count=64", timeout=60)
        assert res.exit_code != 0 and "No space left on device" in res.stderr, res
        res = await sb.exec("i=0; while [ $i -lt 1000 ]; do touch f$i 2>/dev/null || break; i=$((i+1)); done; "
                            "echo $i; touch more", timeout=60)
        assert int(res.stdout.split()[0]) < 300 and "No space left on device" in res.stderr, res
        with pytest.raises(SandboxQuotaError, match=r"No space left on device \(work dir quota 8 MiB, 300 files\)"):
            await sb.write_file("more/big2.bin", b"\0" * (16 << 20))
        await sb.exec("rm -f f* big", timeout=30)
        with pytest.raises(SandboxQuotaError, match="work dir quota 8 MiB"):
            await sb.write_file("big2.bin", b"\0" * (16 << 20))
        used = sum(p.stat().st_size for p in ws.rglob("*") if p.is_file() and not p.is_symlink())
        assert used <= 8 << 20
        st = os.statvfs(ws)
        assert st.f_blocks * st.f_frsize <= 8 << 20  # the host sees an 8 MiB filesystem there
        assert os.stat(ws).st_dev != os.stat(tmp_path).st_dev
    assert not sb.quota_mounted and list(ws.iterdir()) == []  # unmounted: nothing reached the host dir
    with open("/proc/self/mountinfo") as f:
        assert str(ws) not in f.read()
