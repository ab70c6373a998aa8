"""The Docker warm pool and the env-up script."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest
from sandbox_helpers import TEST_CONFIG, require_backend

from rowgym.sandboxes import SandboxClosed, open_sandbox

pytestmark = [pytest.mark.docker, pytest.mark.sandbox]
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _docker() -> None:
    require_backend("docker")


def _pool_containers(pool_id: str) -> list[str]:
    from rowgym.sandboxes.docker_backend import POOL_LABEL, docker_client

    return [
        c.id for c in docker_client().containers.list(all=True, filters={"label": f"{POOL_LABEL}={pool_id}"})
    ]


async def test_pool_hands_out_fresh_isolated_sandboxes(tmp_path: Path) -> None:
    from rowgym.sandboxes.docker_backend import DockerPool

    async with DockerPool(size=2, config=TEST_CONFIG, root=str(tmp_path)) as pool:
        assert pool.ready == 2
        a, b = await pool.acquire(), await pool.acquire()
        assert a.host_workdir != b.host_workdir and a.container.id != b.container.id
        await a.write_file("note.txt", "from a")
        res = await b.exec("ls -A /workspace; echo $(id -u)", timeout=10)
        assert res.stdout == "1000\n"  # b sees nothing of a
        ra, rb = await asyncio.gather(a.exec("cat note.txt", timeout=10), b.exec("echo b", timeout=10))
        assert (ra.stdout, rb.stdout) == ("from a", "b\n")
        workdir, cid = a.host_workdir, a.container.id
        await a.close()
        assert not workdir.exists() and cid not in _pool_containers(pool.pool_id)
        with pytest.raises(SandboxClosed):
            await a.exec("true", timeout=5)
        for _ in range(100):  # the pool refills in the background
            if pool.ready == 2:
                break
            await asyncio.sleep(0.1)
        assert pool.ready == 2
        pool_id = pool.pool_id
    assert _pool_containers(pool_id) == []  # closing the pool removes ready and in-use ones
    assert list(tmp_path.iterdir()) == []


async def test_pool_cold_starts_when_empty(tmp_path: Path) -> None:
    from rowgym.sandboxes.docker_backend import DockerPool

    async with DockerPool(size=0, config=TEST_CONFIG, root=str(tmp_path)) as pool:
        async with await pool.acquire() as sb:
            assert (await sb.exec("echo cold", timeout=10)).stdout == "cold\n"


async def test_open_sandbox_auto_prefers_docker(tmp_path: Path) -> None:
    from rowgym.sandboxes.docker_backend import DockerSandbox

    box = open_sandbox("auto", workdir=tmp_path / "ws", config=TEST_CONFIG)
    assert isinstance(box, DockerSandbox)
    async with box:
        assert (await box.exec("echo hi", timeout=10)).stdout == "hi\n"


def test_env_up_is_idempotent_and_fast() -> None:
    proc = subprocess.run([str(REPO / "scripts" / "env_up.sh")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "is current" in proc.stdout and "[env-up] done" in proc.stdout
