"""Red-team: what a killed run leaves behind (containers, temp dirs, mounted quotas) is swept."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from sandbox_helpers import TEST_CONFIG, require_backend

from rowgym.sandboxes import quota
from rowgym.sandboxes.cleanup import (
    OWNER_LABEL,
    Owner,
    boot_id,
    owned_mkdtemp,
    parse_dir_owner,
    sweep_containers,
    sweep_dirs,
)

pytestmark = pytest.mark.redteam
REPO = Path(__file__).resolve().parents[2]


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _mounted(path: Path) -> bool:
    return bool(quota.mounts_under(path))


def test_owner_identity_survives_pid_reuse() -> None:
    me = Owner.current()
    assert me.alive() and Owner.from_labels(me.labels()) == me
    assert not Owner(me.host, me.pid, me.start + 1, me.boot).alive()  # same pid, another process
    assert not Owner(me.host, me.pid, me.start, "another-boot").alive()
    assert not Owner(me.host, _dead_pid(), 1, boot_id()).alive()
    d = owned_mkdtemp("rp-grade")
    try:
        assert d.name.startswith(f"rowgym-rp-grade-{me.pid}-{me.start}-")
        assert parse_dir_owner(d.name) == (me.pid, me.start)
    finally:
        d.rmdir()
    assert parse_dir_owner("rowgym-pool-abc") is None and parse_dir_owner("other-1-2-x") is None


def test_sweep_dirs_removes_dead_owners_only(tmp_path: Path) -> None:
    me, dead = Owner.current(), _dead_pid()
    names = {
        "dead_pool": f"rowgym-pool-{dead}-777-abc",
        "dead_snap": f"rowgym-repopatch-snap-{dead}-777-def",
        "reused_pid": f"rowgym-rp-grade-{me.pid}-{me.start + 5}-ghi",  # our pid, but not us
        "live": f"rowgym-bwrap-tmp-{me.pid}-{me.start}-jkl",
        "untagged": "rowgym-rp-grade-legacy",
        "foreign": f"other-{dead}-777-x",
    }
    for n in names.values():
        (tmp_path / n / "sub").mkdir(parents=True)
        (tmp_path / n / "sub" / "f").write_text("x")
    quota_dir = tmp_path / names["dead_pool"] / "ws-1"
    quota_dir.mkdir()
    mounted = quota.mount_tmpfs(quota_dir, size_mb=1, inodes=100, uid=TEST_CONFIG.uid)
    assert mounted == (os.geteuid() == 0)
    removed = sweep_dirs(tmp_path)
    assert sorted(p.name for p in removed) == sorted([names["dead_pool"], names["dead_snap"], names["reused_pid"]])
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted([names["live"], names["untagged"], names["foreign"]])
    assert not _mounted(quota_dir)


@pytest.mark.docker
@pytest.mark.sandbox
def test_sweep_containers_removes_dead_owners_only(tmp_path: Path) -> None:
    require_backend("docker")
    from rowgym.sandboxes.docker_backend import _create_container, docker_client

    me, client = Owner.current(), docker_client()
    dead = Owner(me.host, _dead_pid(), 4242, boot_id())
    other_boot = Owner(me.host, me.pid, me.start, "an-earlier-boot")
    other_host = Owner("another-host", _dead_pid(), 1, boot_id())
    made = {}
    for name, owner in (("live", me), ("dead", dead), ("other_boot", other_boot), ("other_host", other_host)):
        (tmp_path / name).mkdir()
        made[name] = _create_container(TEST_CONFIG, tmp_path / name, owner.labels()).id
    try:
        removed = sweep_containers(client)
        assert made["dead"] in removed and made["other_boot"] in removed
        ids = {c.id for c in client.containers.list(all=True)}
        assert made["live"] in ids and made["other_host"] in ids  # alive, or not ours to judge
        assert made["dead"] not in ids and made["other_boot"] not in ids
        assert client.containers.get(made["live"]).labels[OWNER_LABEL] == me.label
    finally:
        for cid in made.values():
            try:
                client.containers.get(cid).remove(force=True)
            except Exception:
                pass


_VICTIM = """
import asyncio, sys
from rowgym.sandboxes.bwrap_backend import BwrapSandbox
from rowgym.sandboxes.docker_backend import DockerPool
from rowgym.sandboxes.cleanup import owned_mkdtemp
async def main():
    pool = DockerPool(size=1)
    await pool.start()
    sb = await pool.acquire()
    await sb.exec("nohup sh -c 'while :; do :; done' >/dev/null 2>&1 &", timeout=10)
    bw = BwrapSandbox(owned_mkdtemp("rp"))
    await bw.start()
    print(pool.pool_id, sb.host_workdir, bw.host_workdir, bw._tmp, flush=True)
    await asyncio.sleep(3600)
asyncio.run(main())
"""


@pytest.mark.docker
@pytest.mark.sandbox
def test_sigkilled_owner_leaves_nothing_after_a_sweep() -> None:
    require_backend("docker")
    require_backend("bwrap")
    from rowgym.sandboxes.docker_backend import POOL_LABEL, docker_client

    proc = subprocess.Popen([sys.executable, "-c", _VICTIM], stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert line, "the victim did not start"
    pool_id, *dirs = line.split()
    paths = [Path(d) for d in dirs]
    tmp = Path(tempfile.gettempdir())
    tops = {tmp / p.relative_to(tmp).parts[0] for p in paths}  # rowgym-pool-<pid>-..., rowgym-rp-<pid>-...
    client = docker_client()

    def pool_containers() -> list[str]:
        return [c.id for c in client.containers.list(all=True, filters={"label": f"{POOL_LABEL}={pool_id}"})]

    assert pool_containers() and all(p.exists() for p in paths)  # SIGKILL cleaned nothing up
    assert any(_mounted(p) for p in paths) == (os.geteuid() == 0)
    out = subprocess.run([sys.executable, "-m", "rowgym.sandboxes.cleanup"], capture_output=True, text=True,
                         cwd=REPO, timeout=120)
    assert out.returncode == 0 and "removed" in out.stdout, out
    assert pool_containers() == []
    assert not any(p.exists() for p in tops), tops
    with open("/proc/self/mountinfo") as f:
        table = f.read()
    assert not any(str(p) in table for p in paths)


def test_snapshot_cache_names_its_dir_and_removes_it() -> None:
    from rowgym.envs.repopatch.task import Base, RepoPatchTask, SnapshotCache

    task = RepoPatchTask(instance_id="t", source="corpus", repo="r", base=Base(files={"a.py": "x = 1\n"}),
                         problem_statement="p", fail_to_pass=["t.py::t"])
    cache = SnapshotCache()
    snap = cache.get(task)
    root = cache.root
    assert (snap / "a.py").read_text() == "x = 1\n"
    assert parse_dir_owner(root.name) == (os.getpid(), Owner.current().start)
    assert root.name.startswith("rowgym-repopatch-snap-")
    cache.close()
    assert not root.exists()
    dropped = SnapshotCache()
    dropped.get(task)
    root = dropped.root
    del dropped
    gc.collect()
    assert not root.exists()  # a cache nobody closed still removes its dir
