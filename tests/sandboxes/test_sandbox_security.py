"""Hostile commands against both backends: each must be contained and leave the host as it was."""

from __future__ import annotations

import asyncio
import hashlib
import socket
import time
from pathlib import Path

import pytest
from sandbox_helpers import TEST_CONFIG, host_pids_of_uid, make_sandbox

from rowgym.sandboxes import SandboxPathError
from rowgym.sandboxes.base import Sandbox

UID = TEST_CONFIG.uid


async def _settled_pids(baseline: dict[int, str], wait_s: float = 5.0, *, bwrap: bool = False) -> dict[int, str]:
    """Host processes of the sandbox uid that were not there at ``baseline`` (after they die)."""
    deadline = time.monotonic() + wait_s
    while True:
        extra = {p: c for p, c in host_pids_of_uid(UID, skip_containers=bwrap).items() if p not in baseline}
        if not extra or time.monotonic() > deadline:
            return extra
        await asyncio.sleep(0.1)


def _is_bwrap(sb: Sandbox) -> bool:
    return type(sb).__name__ == "BwrapSandbox"


def _host_ip() -> str:
    # The address other machines would use to reach this host; no packet is sent.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("10.255.255.255", 1))
        return s.getsockname()[0]


async def test_runs_unprivileged(sb: Sandbox) -> None:
    res = await sb.exec("id -u; grep CapEff /proc/self/status", timeout=10)
    assert res.stdout.split()[0] == str(UID)
    assert res.stdout.split()[-1] == "0000000000000000"  # no capabilities at all


async def test_network_is_off(sb: Sandbox) -> None:
    hits: list[str] = []

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hits.append("connected")
        writer.close()

    server = await asyncio.start_server(on_connect, "0.0.0.0", 0)
    port = server.sockets[0].getsockname()[1]
    probe = f"""
import socket
for host in ("127.0.0.1", "{_host_ip()}", "1.1.1.1"):
    try:
        socket.create_connection((host, {port} if host != "1.1.1.1" else 53), timeout=1).close()
        print("REACHED", host)
    except OSError as e:
        print("blocked", host, type(e).__name__)
try:
    socket.getaddrinfo("deb.debian.org", 80)
    print("REACHED dns")
except OSError:
    print("blocked dns")
print(open("/proc/net/dev").read())
"""
    async with server:
        res = await sb.exec(["python3", "-c", probe], timeout=15)
    assert "REACHED" not in res.stdout, res.stdout
    assert res.stdout.count("blocked") == 4
    ifaces = [
        line.split(":")[0].strip() for line in res.stdout.splitlines() if ":" in line and "|" not in line
    ]
    assert ifaces == ["lo"], res.stdout  # no interface but loopback
    assert hits == []


async def test_pids_limit_caps_processes(sb: Sandbox) -> None:
    code = """
import os, time
n = 0
for _ in range(200):
    try:
        if os.fork() == 0:
            time.sleep(30); os._exit(0)
        n += 1
    except OSError:
        break
print(n)
"""
    res = await sb.exec(["python3", "-c", code], timeout=3)
    started = int(res.stdout.split()[0])
    assert started < TEST_CONFIG.pids_limit, res


async def test_fork_bomb_is_contained(sb: Sandbox) -> None:
    baseline = host_pids_of_uid(UID)
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    t0 = time.monotonic()
    res = await sb.exec(["python3", "-c", bomb], timeout=2)
    assert res.timed_out
    assert time.monotonic() - t0 < 15
    assert await _settled_pids(baseline, bwrap=_is_bwrap(sb)) == {}
    after = await sb.exec("echo alive", timeout=10)  # the box is usable again
    assert after.stdout == "alive\n"


async def test_memory_hog_is_killed(sb: Sandbox) -> None:
    hog = """
chunks = []
for _ in range(64):                      # 64 x 32 MiB = 2 GiB, limit is 256 MiB
    chunks.append(bytearray(32 << 20))   # bytearray touches every page
print("survived")
"""
    res = await sb.exec(["python3", "-c", hog], timeout=20)
    assert "survived" not in res.stdout
    assert res.exit_code != 0 and not res.timed_out, res


async def test_infinite_loop_times_out_and_tree_dies(sb: Sandbox) -> None:
    baseline = host_pids_of_uid(UID)
    # Children in the same group, and one that left it with setsid: all must die.
    cmd = "sleep 300 & setsid sleep 301 >/dev/null 2>&1 & while :; do :; done"
    t0 = time.monotonic()
    res = await sb.exec(cmd, timeout=1)
    elapsed = time.monotonic() - t0
    assert res.timed_out and res.exit_code != 0
    assert 1 <= elapsed < 5
    assert await _settled_pids(baseline, bwrap=_is_bwrap(sb)) == {}
    quick = await sb.exec("true", timeout=5)
    assert quick.ok and not quick.timed_out


async def test_writes_outside_workdir_fail(sb: Sandbox, tmp_path: Path) -> None:
    canary = tmp_path / "host" / "canary.txt"
    canary.parent.mkdir()
    canary.write_text("untouched")
    targets = [
        "/etc/evil",
        "/usr/evil",
        "/evil",
        "/root/evil",
        "/var/evil",
        str(canary),
        "/workspace/../evil",
    ]
    script = "; ".join(f"(echo x > {t}) 2>/dev/null && echo WROTE {t}" for t in targets)
    res = await sb.exec(script + "; echo scratch > /tmp/sandbox-scratch && echo tmp-ok", timeout=10)
    assert "WROTE" not in res.stdout, res.stdout
    assert "tmp-ok" in res.stdout  # /tmp is writable, but it is the sandbox's own
    assert not Path("/tmp/sandbox-scratch").exists()
    assert canary.read_text() == "untouched"
    seen = await sb.exec(f"ls {tmp_path} 2>&1 || echo hidden", timeout=10)
    assert "hidden" in seen.stdout  # no other host path is even visible


async def test_file_api_refuses_symlink_escapes(sb: Sandbox, tmp_path: Path) -> None:
    canary = tmp_path / "canary.txt"
    canary.write_text("secret")
    await sb.exec(f"ln -s {canary} link; ln -s / rootlink; mkdir d; ln -s ../.. d/up", timeout=10)
    for path in ("link", "rootlink/etc/passwd", "d/up/canary.txt"):
        with pytest.raises(SandboxPathError):
            await sb.read_file(path)
        with pytest.raises(SandboxPathError):
            await sb.write_file(path, "pwned")
    with pytest.raises(SandboxPathError):
        await sb.write_file("/etc/passwd", "pwned")
    with pytest.raises(SandboxPathError):
        await sb.copy_in(tmp_path, "../outside")
    out = tmp_path / "out"
    await sb.copy_out("/workspace", out)
    assert not (out / "link").exists() and not (out / "rootlink").exists()
    assert canary.read_text() == "secret"


async def test_host_unchanged_after_close(backend: str, tmp_path: Path) -> None:
    canary = tmp_path / "canary.bin"
    canary.write_bytes(b"\x00" * 1024)
    digest = hashlib.sha256(canary.read_bytes()).hexdigest()
    baseline = host_pids_of_uid(UID)
    box = make_sandbox(backend, tmp_path / "ws")
    async with box:
        await box.exec("setsid sleep 300 >/dev/null 2>&1 & echo x > /tmp/leftover; echo done", timeout=10)
        container = getattr(box, "container", None)
    assert await _settled_pids(baseline, bwrap=backend == "bwrap") == {}
    assert hashlib.sha256(canary.read_bytes()).hexdigest() == digest
    assert not Path("/tmp/leftover").exists()
    if container is not None:
        from rowgym.sandboxes.docker_backend import docker_client

        ids = [c.id for c in docker_client().containers.list(all=True)]
        assert container.id not in ids
    else:
        assert box._tmp is not None and not box._tmp.exists()
