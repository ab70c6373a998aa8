"""Sandboxes for repo-patch episodes and the hidden-test grader.

>>> import asyncio
>>> from rowgym.envs.repopatch.corpus import corpus_tasks
>>> async def demo():                                   # doctest: +SKIP
...     task = corpus_tasks()[0]
...     async with Boxes() as boxes:
...         snaps = SnapshotCache()
...         return (await grade_changes(task, snaps.get(task), gold_changes(task, snaps.get(task)), boxes)).reward
>>> asyncio.run(demo())                                  # doctest: +SKIP
1.0

Grading never trusts the agent's sandbox: the agent's final tree is copied out
(links that leave it are skipped), compared file by file with the pristine snapshot
kept on the host (the agent controls ``.git``, so its history is not trusted either),
changes to tests and test configuration are dropped and flagged ``edited_tests``,
and what is left is written over a fresh copy of the snapshot in a *fresh* sandbox.
Only then are the hidden test files added, and pytest runs them with a per-test
summary (``-rA``). Reward 1 iff every FAIL_TO_PASS and every PASS_TO_PASS test passed.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from rowgym.envs.repopatch.task import (
    RepoPatchTask,
    changed_files,
    parse_pytest_summary,
    pytest_argv,
    read_tree,
    split_test_edits,
    write_tree,
)
from rowgym.errors import RowgymError
from rowgym.rows import Check, Verdict
from rowgym.sandboxes import Sandbox, SandboxConfig, SandboxError, open_sandbox, pick_backend

VERIFIER = "hidden_tests"
VERIFIER_VERSION = "1"
GRADE_TIMEOUT_S = 300.0


class RepoPatchError(RowgymError):
    """Base of repo-patch infrastructure errors (never the agent's fault)."""

    failure_kind = "env"


class SandboxFailure(RepoPatchError):
    """A sandbox could not be started or a command could not run; start Docker with `make env-up`."""

    failure_kind = "sandbox"


class GraderFailure(RepoPatchError):
    """The grader could not produce per-test results (bad task data or a broken test run)."""

    failure_kind = "grader"


class Boxes:
    """Hands out started sandboxes with an empty work dir: a warm Docker pool, or bubblewrap.

    Args:
        backend: ``auto``, ``docker`` or ``bwrap``.
        pool_size: Containers kept warm (Docker only).
        config: Sandbox limits.
    """

    def __init__(self, backend: str = "auto", pool_size: int = 2, config: SandboxConfig | None = None) -> None:
        self.config = config or SandboxConfig(max_output_bytes=512 * 1024, memory_mb=1024)
        try:
            self.backend = pick_backend(backend, self.config)  # type: ignore[arg-type]
        except SandboxError as e:
            raise SandboxFailure(str(e)) from e
        self.pool_size = pool_size
        self._pool = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._dirs: dict[int, Path] = {}

    async def __aenter__(self) -> Boxes:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def acquire(self) -> Sandbox:
        """A started sandbox; close it when done (its work dir goes with it)."""
        try:
            if self.backend == "docker" and self.pool_size > 0:
                loop = asyncio.get_running_loop()
                if self._pool is None or self._loop is not loop:
                    from rowgym.sandboxes.docker_backend import DockerPool

                    self._drop_foreign_pool()
                    self._pool = DockerPool(size=self.pool_size, config=self.config)
                    self._loop = loop
                    await self._pool.start()
                return await self._pool.acquire()
            from rowgym.sandboxes.cleanup import owned_mkdtemp

            sb = open_sandbox(self.backend, owned_mkdtemp("rp"), self.config)  # type: ignore[arg-type]
            await sb.start()
            return _Owned(sb)
        except SandboxError as e:
            raise SandboxFailure(f"could not start a sandbox: {e}") from e

    def _drop_foreign_pool(self) -> None:
        """A pool made on another (now finished) event loop: remove its containers synchronously."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close_sync()

    async def close(self) -> None:
        if self._pool is not None:
            if self._loop is asyncio.get_running_loop():
                await self._pool.close()
                self._pool = None
            else:
                self._drop_foreign_pool()

    def close_sync(self) -> None:
        self._drop_foreign_pool()


class _Owned(Sandbox):
    """Wraps a non-pooled sandbox so that closing it also removes its temp work dir."""

    def __init__(self, inner: Sandbox) -> None:
        super().__init__(inner.host_workdir, inner.config)
        self.inner = inner

    async def start(self) -> None:
        await self.inner.start()

    async def exec(self, cmd, timeout=None, cwd=None, env=None):  # type: ignore[no-untyped-def]
        return await self.inner.exec(cmd, timeout=timeout, cwd=cwd, env=env)

    async def read_file(self, path: str) -> bytes:
        return await self.inner.read_file(path)

    async def close(self) -> None:
        if not self.closed:
            self.closed = True
            await self.inner.close()
            await asyncio.to_thread(shutil.rmtree, self.host_workdir, True)


def pythonpath_env(task: RepoPatchTask) -> dict[str, str]:
    if not task.pythonpath:
        return {}
    return {"PYTHONPATH": ":".join(f"/workspace/{p}".rstrip("/.") for p in task.pythonpath)}


@dataclass
class Grade:
    """What grading found (the Verdict is built from it)."""

    reward: float
    results: dict[str, str]
    checks: list[Check]
    flags: list[str] = field(default_factory=list)
    diff: str = ""
    dropped: list[str] = field(default_factory=list)

    def verdict(self) -> Verdict:
        return Verdict(reward=self.reward, success=self.reward == 1.0, verifier=VERIFIER,
                       verifier_version=VERIFIER_VERSION, checks=self.checks, flags=self.flags,
                       breakdown={f"{VERIFIER}@{VERIFIER_VERSION}": self.reward})


def gold_changes(task: RepoPatchTask, snapshot: Path) -> dict[str, bytes | None]:
    """The gold patch as file changes: replay ``task.gold``'s edit calls on a copy of the snapshot."""
    import json

    files: dict[str, bytes | None] = {}
    for c in task.gold:
        args = json.loads(c.arguments)
        if c.name == "write_file":
            files[args["path"]] = args["content"].encode()
        elif c.name == "replace_in_file":
            cur = files.get(args["path"])
            text = (cur if cur is not None else (snapshot / args["path"]).read_bytes()).decode()
            if text.count(args["old"]) != 1:
                raise GraderFailure(f"{task.instance_id}: gold edit of {args['path']} does not match exactly once")
            files[args["path"]] = text.replace(args["old"], args["new"]).encode()
    return files


async def agent_changes(sb: Sandbox, snapshot: Path) -> dict[str, bytes | None]:
    """The agent's final edits: its work dir copied out and compared with the pristine snapshot."""
    with tempfile.TemporaryDirectory(prefix="rowgym-rp-out-") as out:
        try:
            await sb.copy_out(".", out)
        except SandboxError as e:
            raise SandboxFailure(f"could not copy the agent's work dir out: {e}") from e
        after = await asyncio.to_thread(read_tree, Path(out))
    base = await asyncio.to_thread(read_tree, snapshot)
    return changed_files(base, after)


async def grade_changes(task: RepoPatchTask, snapshot: Path, changes: dict[str, bytes | None], boxes: Boxes,
                        timeout: float = GRADE_TIMEOUT_S) -> Grade:
    """Grade file ``changes`` against ``task``'s hidden tests in a fresh sandbox (see module docstring)."""
    base = await asyncio.to_thread(read_tree, snapshot)
    kept, dropped = split_test_edits(base, changes)
    flags = ["edited_tests"] if dropped else []
    from rowgym.envs.repopatch.task import unified_diff

    diff = unified_diff(base, kept)
    stage = Path(tempfile.mkdtemp(prefix="rowgym-rp-grade-"))
    try:
        try:
            await asyncio.to_thread(_stage, snapshot, stage, kept, task.hidden_files)
        except (OSError, ValueError) as e:
            raise GraderFailure(f"{task.instance_id}: could not stage the grading copy: {e}") from e
        sb = await boxes.acquire()
        try:
            await sb.copy_in(stage)
            res = await sb.exec(pytest_argv(task.test_paths), timeout=timeout, env=pythonpath_env(task))
        except SandboxError as e:
            raise SandboxFailure(f"grading sandbox failed: {e}") from e
        finally:
            await sb.close()
    finally:
        await asyncio.to_thread(shutil.rmtree, stage, True)
    if res.exit_code == 126 and "could not start" in res.stderr:
        raise SandboxFailure(f"grading command did not start: {res.stderr.strip()[:300]}")
    results = parse_pytest_summary(res.stdout)
    if not results and not res.timed_out and res.exit_code not in (1, 2):
        raise GraderFailure(f"{task.instance_id}: pytest reported no per-test results (exit {res.exit_code}): "
                            f"{(res.stdout + res.stderr)[-500:]}")
    checks = []
    for kind, ids in (("FAIL_TO_PASS", task.fail_to_pass), ("PASS_TO_PASS", task.pass_to_pass)):
        for node in ids:
            status = results.get(node, "timeout" if res.timed_out else "missing")
            checks.append(Check(name=node, passed=status == "passed", detail=f"{kind}: {status}"))
    if dropped:
        checks.append(Check(name="edited_tests", passed=True,
                            detail="not graded (test files or test config): " + ", ".join(dropped[:20])))
    ok = all(c.passed for c in checks)
    return Grade(1.0 if ok else 0.0, results, checks, flags, diff, dropped)


def _stage(snapshot: Path, stage: Path, kept: dict[str, bytes | None], hidden: dict[str, str]) -> None:
    shutil.copytree(snapshot, stage, dirs_exist_ok=True, symlinks=False)
    write_tree(stage, kept)
    write_tree(stage, dict(hidden))
    os.chmod(stage, 0o755)
