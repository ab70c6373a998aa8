"""Boxes keeps warmed containers (pytest imported once, in the background): still fresh, never waited for."""

from __future__ import annotations

import asyncio

import pytest

from rowgym.envs.repopatch import grading as G
from rowgym.sandboxes import ExecResult, SandboxError


class _FakeBox:
    def __init__(self, fail: bool) -> None:
        self.fail, self.closed, self.cmds = fail, False, []

    async def exec(self, cmd, timeout=None, cwd=None, env=None):  # type: ignore[no-untyped-def]
        self.cmds.append((tuple(cmd), cwd))
        if self.fail:
            raise SandboxError("boom")
        return ExecResult(stdout="", stderr="", exit_code=0, timed_out=False, duration_s=0.0)

    async def close(self) -> None:
        self.closed = True


class _FakePool:
    closed = False

    def __init__(self, fail_at: int) -> None:
        self.made: list[_FakeBox] = []
        self.fail_at = fail_at

    async def acquire(self) -> _FakeBox:
        sb = _FakeBox(fail=len(self.made) == self.fail_at)
        self.made.append(sb)
        return sb


def _boxes(pool: _FakePool) -> G.Boxes:
    b = G.Boxes.__new__(G.Boxes)  # no backend probing: the pool is the fake above
    b.config, b.backend, b.pool_size, b.warm = None, "docker", 2, True
    b._pool, b._loop, b._dirs, b._cleanup, b._stages = pool, asyncio.get_running_loop(), {}, set(), set()
    b._warm, b._warming = [], set()
    return b


def test_warm_ups_run_the_image_pytest_only_and_failed_ones_are_never_handed_out() -> None:
    async def go():
        pool = _FakePool(fail_at=1)
        boxes = _boxes(pool)
        first = await boxes.acquire()  # nothing warmed yet: a plain pool box, warming starts
        assert first is pool.made[0] and not first.cmds
        await boxes.settle()
        failed = pool.made[1]
        assert failed.closed and failed not in boxes._warm, "a failed warm-up is closed, not handed out"
        assert len(boxes._warm) == 1
        warmed = await boxes.acquire()
        assert warmed is pool.made[2] and not warmed.closed
        assert warmed.cmds == [(G.WARMUP_ARGV, "/")]
        assert G.WARMUP_ARGV[:3] == ("python3", "-I", "-B"), "isolated, no bytecode written"
        assert not boxes._warming, "handing out a warmed box does not start a warm-up next to its run"
        boxes.defer(warmed)  # a box given back: replacements are warmed now
        assert boxes._warming
        await boxes.settle()
        await boxes.drain()
        assert warmed.closed and len(boxes._warm) == 2
    asyncio.run(go())


@pytest.mark.docker
def test_warmed_docker_box_is_fresh_and_grades_gold() -> None:
    from rowgym.envs.repopatch.corpus import corpus_tasks
    from rowgym.envs.repopatch.task import SnapshotCache

    async def go():
        try:
            boxes = G.Boxes("docker", pool_size=1)
        except SandboxError as e:
            pytest.skip(f"no docker: {e}")
        snaps = SnapshotCache()
        try:
            async with boxes:
                boxes.defer(await boxes.acquire())
                await boxes.settle()
                assert len(boxes._warm) == 1
                sb = await boxes.acquire()
                res = await sb.exec(["sh", "-c", "ls -A /workspace /tmp; ps -eo comm= | grep -c python3 || true"],
                                    timeout=30, cwd="/")
                assert res.ok and res.stdout.split() == ["/tmp:", "/workspace:", "0"], res.stdout
                boxes.defer(sb)
                task = corpus_tasks()[0]
                snap = snaps.get(task)
                await boxes.settle()
                assert boxes._warm, "a warmed box is waiting"
                g = await G.grade_changes(task, snap, G.gold_changes(task, snap), boxes)
                assert g.reward == 1.0 and "suspicious" not in g.flags, g.checks
        finally:
            snaps.close()
    asyncio.run(go())


# ------------------------------------------------ the harness's fingerprint (identity snapshot, C-level re-check)

@pytest.mark.redteam
@pytest.mark.parametrize("init,expect", [
    # a property's getter code swapped (the fingerprint follows property.fget)
    ("from _pytest.reports import BaseReport\nBaseReport.passed.fget.__code__ = (lambda self: True).__code__\n",
     "_pytest.reports.BaseReport.passed.__code__ changed"),
    # a module-level function of pytest removed (the re-check's missing-key path)
    ("import _pytest.runner as m\ndel m.show_test_item\n", "_pytest.runner.show_test_item changed"),
    # a function swapped in a class dict
    ("from _pytest.runner import CallInfo\nCallInfo.from_call = classmethod(lambda cls, *a, **k: None)\n",
     "_pytest.runner.CallInfo.from_call changed"),
    # an attribute added to a pytest class
    ("from _pytest.reports import TestReport\nTestReport.extra_flag = 1\n", "TestReport: attributes added or removed"),
    # the harness's own reporter patched through gc
    ("import gc\nfor o in gc.get_objects():\n    if type(o).__name__ == 'Reporter' and hasattr(type(o), 'check'):\n"
     "        type(o).check = lambda self, pm: None\n", "harness.Reporter.check changed"),
])
def test_fingerprint_detects(tmp_path, init: str, expect: str) -> None:
    from test_grader_harness import _repo, _run_harness_run

    run = _run_harness_run(_repo(tmp_path, init), ["pkg/__init__.py"])
    # the finding itself at the end of the run, or (the harness leaves at its first finding) an earlier one
    assert any(expect in t for t in run.tamper) or (run.finished is None and run.tamper), (run.tamper, run.finished)
