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
changes to test *tooling* (``conftest.py``, ``pytest.py``, ``_pytest/``, ``*.dist-info``,
``*.pth``, bytecode, ...) are dropped and flagged ``suspicious``, and what is left is
written over a fresh copy of the snapshot in a *fresh* sandbox. Only then are the hidden
test files added. pytest runs under :mod:`harness <rowgym.envs.repopatch.harness>`
(``python3 -I`` outside the repository, pytest imported from the image, the repository on
``sys.path`` after site-packages, plugin autoload off), which writes a report signed with a
per-run key; stdout is never parsed. Reward 1 iff every FAIL_TO_PASS and every
PASS_TO_PASS test passed and the harness saw no tampering with pytest.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from rowgym.envs.repopatch.task import (
    RepoPatchTask,
    changed_files,
    graded_module_names,
    read_tree,
    split_guarded,
    write_tree,
)
from rowgym.errors import GraderError
from rowgym.rows import Check, Verdict
from rowgym.sandboxes import ExecResult, Sandbox, SandboxConfig, SandboxError, open_sandbox, pick_backend
from rowgym.sandboxes.cleanup import owned_mkdtemp
from rowgym.sandboxes.errors import SandboxCopyDepth, SandboxCopyLimit, SandboxQuotaError
from rowgym.sandboxes.hostfs import rmtree
from rowgym.tools import clean_text

VERIFIER = "hidden_tests"
VERIFIER_VERSION = "2"
GRADE_TIMEOUT_S = 300.0
WORKSPACE = "/workspace"
HARNESS_SOURCE = Path(__file__).with_name("harness.py").read_text()
PYTEST_ARGS = ("-q", "--tb=short", "-rfE", "-p", "no:cacheprovider", "-o", "addopts=",
               "--rootdir", WORKSPACE, "--import-mode=append")
# Run once in every pooled container before it is handed out (in the background, like the pool's
# container start): the first ``import pytest`` in a fresh container costs ~0.2 s more than the next
# one (measured in docs/repopatch.md), and grading is always the first run in its container. Only
# the image's Python and pytest run (``-I``, no bytecode written, cwd ``/``, empty work dir), before
# anything of a task or an agent is copied in: the container is as fresh as before.
WARMUP_ARGV = ("python3", "-I", "-B", "-c",
               "import pytest, _pytest.config as c\n"
               "for n in c.default_plugins: __import__(n if '.' in n else '_pytest.' + n)")
_RECORD_RE = re.compile(r"^@@rowgym-harness (started|finished|tamper) ([0-9a-f]{64}) ([A-Za-z0-9+/=]+)$")


class Boxes:
    """Hands out started sandboxes with an empty work dir: a warm Docker pool, or bubblewrap.

    With ``warm`` (Docker only), ``pool_size`` containers are also kept *warmed*: taken from
    the pool in the background and run :data:`WARMUP_ARGV` once (the image's pytest
    imported, nothing written), so the first pytest run in a handed-out container (grading's
    only run) does not pay the fresh container's first-import cost. :meth:`acquire` takes a
    warmed container when one is ready and an unwarmed one from the pool otherwise; it
    never waits for a warm-up. Replacements are warmed when a used sandbox is given back
    (:meth:`defer`), so a warm-up does not compete with the run that just started.

    Args:
        backend: ``auto``, ``docker`` or ``bwrap``.
        pool_size: Containers kept ready (Docker only), and as many warmed ones.
        config: Sandbox limits.
        warm: Keep warmed containers (Docker pool only).
    """

    def __init__(self, backend: str = "auto", pool_size: int = 2, config: SandboxConfig | None = None,
                 warm: bool = True) -> None:
        self.config = config or SandboxConfig(max_output_bytes=512 * 1024, memory_mb=1024)
        try:
            self.backend = pick_backend(backend, self.config)  # type: ignore[arg-type]
        except SandboxError as e:
            raise SandboxError(str(e)) from e
        self.pool_size = pool_size
        self._pool = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._dirs: dict[int, Path] = {}
        self._cleanup: set[asyncio.Task] = set()
        self._stages: set[Path] = set()
        self.warm = warm and pool_size > 0
        self._warm: list[Sandbox] = []
        self._warming: set[asyncio.Task] = set()

    def defer(self, sb: Sandbox, stage: Path | None = None) -> None:
        """Close a used sandbox (and remove a stage dir) off the caller's path; :meth:`close` waits for it.

        A sandbox is never handed out twice, so nothing waits for its removal but the pool's
        close; on Docker that removal (``docker rm -f``, 0.1-0.2 s) was a share of every reset
        and of every grading.
        """
        if stage is not None:
            self._stages.add(stage)
        task = asyncio.ensure_future(self._discard(sb, stage))
        self._cleanup.add(task)
        task.add_done_callback(self._cleanup.discard)
        if self.warm and self._pool is not None and self._loop is asyncio.get_running_loop():
            # Warm replacements now that this sandbox's work is done, not when it was handed out:
            # a warm-up (~0.2-0.4 s of CPU) next to a grading run slows that run on a small machine.
            self._warm_more()

    async def drain(self) -> None:
        """Wait for deferred clean-up (errors are ignored: a pool's close or the owner sweep catches leftovers)."""
        loop = asyncio.get_running_loop()
        while pending := [t for t in self._cleanup if t.get_loop() is loop]:
            await asyncio.gather(*pending, return_exceptions=True)
        self._cleanup.clear()  # tasks of a loop that is gone never run: their stages go below
        for stage in list(self._stages):
            await asyncio.to_thread(shutil.rmtree, stage, True)
            self._stages.discard(stage)

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
                if not self.warm:
                    return await self._pool.acquire()
                if self._warm:
                    return self._warm.pop(0)
                if not self._warming:
                    self._warm_more()  # first use, or callers that close sandboxes without defer()
                return await self._pool.acquire()

            sb = open_sandbox(self.backend, owned_mkdtemp("rp"), self.config)  # type: ignore[arg-type]
            await sb.start()
            return _Owned(sb)
        except SandboxError as e:
            raise SandboxError(f"could not start a sandbox: {e}") from e

    def _warm_more(self) -> None:
        """Start warming containers until ``pool_size`` are warmed or warming."""
        for _ in range(self.pool_size - len(self._warm) - len(self._warming)):
            task = asyncio.ensure_future(self._warm_one(self._pool))
            self._warming.add(task)
            task.add_done_callback(self._warming.discard)

    async def _warm_one(self, pool) -> None:  # type: ignore[no-untyped-def]
        try:
            sb = await pool.acquire()
        except Exception:  # a closed pool, Docker failing: acquire() reports it on the caller's path
            return
        try:
            res = await sb.exec(list(WARMUP_ARGV), timeout=60, cwd="/")
        except SandboxError:
            res = None
        if res is None or res.timed_out or pool is not self._pool or pool.closed:
            await sb.close()  # not handed out: a failed warm-up, or the pool went away meanwhile
        else:
            self._warm.append(sb)

    async def settle(self) -> None:
        """Wait for the warm-ups in flight (benchmarks: the state between episodes, when the pool has refilled)."""
        loop = asyncio.get_running_loop()
        while pending := [t for t in self._warming if t.get_loop() is loop]:
            await asyncio.gather(*pending, return_exceptions=True)

    def _drop_foreign_pool(self) -> None:
        """A pool made on another (now finished) event loop: remove its containers synchronously."""
        self._warm.clear()  # they belong to that pool, which removes them
        self._warming.clear()
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close_sync()

    async def _discard(self, sb: Sandbox, stage: Path | None) -> None:
        try:
            await sb.close()
        finally:
            if stage is not None:
                await asyncio.to_thread(shutil.rmtree, stage, True)
                self._stages.discard(stage)

    async def close(self) -> None:
        await self.settle()
        await self.drain()
        if self._pool is not None:
            if self._loop is asyncio.get_running_loop():
                self._warm.clear()  # still the pool's (in use, not ready): its close removes them
                await self._pool.close()
                self._pool = None
            else:
                self._drop_foreign_pool()

    def close_sync(self) -> None:
        self._drop_foreign_pool()
        for stage in list(self._stages):  # clean-up deferred on a loop that is gone
            shutil.rmtree(stage, True)
            self._stages.discard(stage)


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


def path_dirs(task: RepoPatchTask) -> list[str]:
    """The sandbox dirs the task's code imports from (the repository root, or its ``pythonpath``)."""
    return [f"{WORKSPACE}/{p}".rstrip("/.") for p in task.pythonpath] or [WORKSPACE]


def pythonpath_env(task: RepoPatchTask) -> dict[str, str]:
    """Environment of the agent's commands: the task's PYTHONPATH, no bytecode written."""
    env = {"PYTHONDONTWRITEBYTECODE": "1"}
    if task.pythonpath:
        env["PYTHONPATH"] = ":".join(f"{WORKSPACE}/{p}".rstrip("/.") for p in task.pythonpath)
    return env


@dataclass
class HarnessRun:
    """What one harness run reported. ``finished`` is None when it exited before reporting."""

    res: ExecResult
    started: bool
    finished: dict | None
    forged: int
    notes: list[str] = field(default_factory=list)  # tamper findings the harness signed as they happened

    @property
    def outcomes(self) -> dict[str, str]:
        return dict((self.finished or {}).get("outcomes") or {})

    @property
    def tamper(self) -> list[str]:
        return list(dict.fromkeys(self.notes + [str(t) for t in (self.finished or {}).get("tamper") or []]))

    def output(self, limit: int = 2000) -> str:
        """pytest's output without the harness records (for observations and check details)."""
        err = "\n".join(line for line in self.res.stderr.splitlines() if not line.startswith("@@rowgym-harness "))
        return (self.res.stdout.strip()[-limit:] + ("\n" + err.strip()[-limit // 2:] if err.strip() else "")).strip()


class HarnessCall:
    """One pytest run under the harness: a fresh key, a config file, the hardened command line.

    The config file (key, paths, pytest args) goes into the work dir under a random name;
    the harness reads and deletes it before any code of the repository runs.

    Args:
        task: The task (its ``pythonpath`` dirs go on ``sys.path`` after site-packages).
        paths: Test paths given to pytest.
        agent_files: Repository files the agent changed (a test whose code lives in one is flagged).
        hide_tests: After reading the graded test files, the harness leaves only their line count on disk (grading:
            the hidden tests; never the agent's own visible run, whose files are its work dir's).
    """

    def __init__(self, task: RepoPatchTask, paths: list[str], agent_files: list[str] = (),  # type: ignore[assignment]
                 hide_tests: bool = False) -> None:
        self.key = secrets.token_bytes(32)
        self.conf_name = f".rowgym-harness-{secrets.token_hex(12)}.json"
        self.env = {**pythonpath_env(task), "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", "PYTEST_ADDOPTS": ""}
        self.conf = {"key": self.key.hex(), "root": WORKSPACE, "paths": path_dirs(task),
                     "args": [*PYTEST_ARGS, *paths], "agent_files": sorted(agent_files),
                     "test_files": sorted({p.split("::", 1)[0] for p in paths}), "hide_tests": hide_tests}

    def conf_bytes(self) -> bytes:
        return json.dumps(self.conf).encode()

    def argv(self) -> list[str]:
        return ["python3", "-I", "-B", "-c", HARNESS_SOURCE, f"{WORKSPACE}/{self.conf_name}"]

    async def run(self, sb: Sandbox, timeout: float, *, write_conf: bool = True) -> HarnessRun:
        """Run it in ``sb`` (its work dir holds the repository); ``write_conf=False`` when it is staged already."""
        if write_conf:
            await sb.write_file(self.conf_name, self.conf_bytes())
        res = await sb.exec(self.argv(), timeout=timeout, cwd="/", env=self.env)
        return self.parse(res)

    def parse(self, res: ExecResult) -> HarnessRun:
        started, finished, forged, notes = False, None, 0, []
        for line in res.stderr.splitlines():
            m = _RECORD_RE.match(line.strip())
            if not m:
                forged += line.startswith("@@rowgym-harness")
                continue
            kind, mac, body = m.groups()
            want = hmac.new(self.key, f"{kind}:{body}".encode(), hashlib.sha256).hexdigest()
            if not hmac.compare_digest(mac, want):
                forged += 1
                continue
            try:
                payload = json.loads(base64.b64decode(body))
            except ValueError:
                forged += 1
                continue
            if kind == "started":
                forged += started
                started = True
            elif kind == "tamper":  # written the moment the harness saw it: a later forged record cannot hide it
                notes.append(str(payload.get("note") if isinstance(payload, dict) else payload)[:500])
            else:
                forged += finished is not None
                finished = payload
        return HarnessRun(res, started, finished if started else None, forged, notes)


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
        # Check details name the agent's files: a non-UTF-8 file name reads as lone surrogates, which no
        # JSON row can hold (clean_text makes them U+FFFD).
        checks = [Check(name=clean_text(c.name), passed=c.passed, detail=clean_text(c.detail)) for c in self.checks]
        return Verdict(reward=self.reward, success=self.reward == 1.0, verifier=VERIFIER,
                       verifier_version=VERIFIER_VERSION, checks=checks, flags=self.flags,
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
                raise GraderError(f"{task.instance_id}: gold edit of {args['path']} does not match exactly once")
            files[args["path"]] = text.replace(args["old"], args["new"]).encode()
    return files


async def agent_changes(sb: Sandbox, snapshot: Path) -> dict[str, bytes | None]:
    """The agent's final edits: its work dir copied out and compared with the pristine snapshot.

    Bytecode, ``__pycache__`` and ``*.egg-info`` are kept in the comparison (they are dropped
    and flagged later, never graded).

    Raises:
        SandboxCopyLimit: the work dir's files add up to more than the sandbox's copy-out limit, or its
            dirs nest deeper than it (:class:`SandboxCopyDepth`): the agent's doing, graded by
            :func:`oversize_grade`, never a sandbox failure.
        SandboxError: the copy failed otherwise.
    """
    out = owned_mkdtemp("rp-out")
    try:
        try:
            await sb.copy_out(".", out)
        except SandboxCopyLimit:
            raise
        except SandboxError as e:
            raise SandboxError(f"could not copy the agent's work dir out: {e}") from e
        after = await asyncio.to_thread(read_tree, Path(out), planted=True)
    finally:
        await asyncio.to_thread(rmtree, out)  # iterative: any depth the copy holds
    base = await asyncio.to_thread(read_tree, snapshot, planted=True)
    return changed_files(base, after)


def oversize_grade(task: RepoPatchTask, limit: SandboxCopyLimit) -> Grade:
    """The grade of a submission whose work dir was too large to copy out: 0, flagged ``oversize_workdir``
    (``deep_workdir`` for dirs nested past the copy's depth limit).

    Sparse files and hard links can hold far more bytes than the work dir's disk quota; were this
    a sandbox failure, a policy could end any episode it is losing that way, and RL (which drops
    infrastructure failures from its groups) would never see the loss.
    """
    if isinstance(limit, SandboxCopyDepth):
        return unplaced_grade(task, "deep_workdir", "workdir_depth",
                              f"the work dir's dirs nest deeper than the copy-out limit ({limit})")
    return unplaced_grade(task, "oversize_workdir", "workdir_size",
                          f"the work dir's files add up to more than the copy-out limit ({limit})")


def unplaced_grade(task: RepoPatchTask, flag: str, check: str, detail: str) -> Grade:
    """Reward 0, flagged ``flag``: the agent's work dir could not be graded because of what the agent made of it
    (too large, too deep, a tree the grading copy cannot hold). Never a grader or sandbox failure: those
    leave the episode out of RL's groups, so a losing policy could opt out of any episode that way."""
    checks = [Check(name=node, passed=False, detail=f"{kind}: not run") for kind, ids in
              (("FAIL_TO_PASS", task.fail_to_pass), ("PASS_TO_PASS", task.pass_to_pass)) for node in ids]
    checks.append(Check(name=check, passed=False, detail=clean_text(detail)[:500]))
    return Grade(0.0, {}, checks, [flag])


class _AgentTreeError(Exception):
    """Writing the agent's files into the grading copy failed (its reason, without host paths)."""


def _roots(task: RepoPatchTask) -> tuple[str, ...]:
    return ("", *(p for p in task.pythonpath if p not in ("", ".")))


async def grade_changes(task: RepoPatchTask, snapshot: Path, changes: dict[str, bytes | None], boxes: Boxes,
                        timeout: float = GRADE_TIMEOUT_S) -> Grade:
    """Grade file ``changes`` against ``task``'s hidden tests in a fresh sandbox (see module docstring)."""
    base = await asyncio.to_thread(read_tree, snapshot)
    kept, tests, tooling = split_guarded(base, changes, roots=_roots(task),
                                         test_modules=graded_module_names(task.test_paths))
    dropped = sorted(tests + [p for p, _ in tooling])
    flags = ["edited_tests"] if dropped else []
    if tooling:
        flags.append("suspicious")
    from rowgym.envs.repopatch.task import unified_diff

    diff = clean_text(unified_diff(base, kept))
    call = HarnessCall(task, task.test_paths, [p for p, d in kept.items() if d is not None], hide_tests=True)
    stage = Path(owned_mkdtemp("rp-grade"))
    try:
        try:
            conflicts = await asyncio.to_thread(_stage, snapshot, stage, kept, task.hidden_files)
            (stage / call.conf_name).write_bytes(call.conf_bytes())
        except _AgentTreeError as e:
            return unplaced_grade(task, "unstageable_workdir", "workdir_tree",
                                  f"the work dir's files could not be written into the grading copy: {e}")
        except (OSError, ValueError) as e:  # the snapshot or the hidden tests: ours (no host path in the message)
            raise GraderError(f"{task.instance_id}: could not stage the grading copy: {_reason(e)}") from e
        sb = await boxes.acquire()
        try:
            try:
                await sb.copy_in(stage)
            except SandboxQuotaError as e:
                # The snapshot fits the agent's sandbox with room to spare: only the agent's own files can fill
                # an equal grading sandbox (a work dir filled to its quota, plus the hidden tests).
                return unplaced_grade(task, "oversize_workdir", "workdir_size",
                                      f"the grading copy (the work dir's files and the hidden tests) does not fit "
                                      f"the sandbox's work dir: {e}")
            run = await call.run(sb, timeout, write_conf=False)
        except SandboxError as e:
            raise SandboxError(f"grading sandbox failed: {e}") from e
        finally:
            # Removing the container and the stage does not change the grade: do it off the
            # grading path (Boxes.close waits for it).
            defer = getattr(boxes, "defer", None)  # any object with acquire() may hand out boxes
            if defer is not None:
                defer(sb, stage)
                stage = None
            else:
                await sb.close()
    finally:
        if stage is not None:
            await asyncio.to_thread(shutil.rmtree, stage, True)
    res = run.res
    if res.exit_code == 126 and "could not start" in res.stderr and not run.started:
        # (after a signed `started` record the repository's code ran: exit 126 and that text are its own doing,
        # a loss it would otherwise turn into a sandbox failure that RL drops)
        raise SandboxError(f"grading command did not start: {res.stderr.strip()[:300]}")
    if not run.started:
        # Nothing of the repository had run yet: the harness itself (or the image) failed.
        raise GraderError(f"{task.instance_id}: the grading harness did not start (exit {res.exit_code}): "
                            f"{(res.stdout + res.stderr)[-500:]}")
    results = run.outcomes
    checks = []
    for kind, ids in (("FAIL_TO_PASS", task.fail_to_pass), ("PASS_TO_PASS", task.pass_to_pass)):
        for node in ids:
            status = results.get(node) or ("timeout" if res.timed_out else
                                           "incomplete" if run.finished is None else "missing")
            checks.append(Check(name=node, passed=status == "passed", detail=f"{kind}: {status}"))
    if run.finished is None:
        # Started but never reported: the code under test ended the run (os._exit, a crash, a hang).
        flags.append("incomplete_report")
        why = "timed out" if res.timed_out else f"exited with {res.exit_code} before reporting"
        checks.append(Check(name="harness_report", passed=False,
                            detail=f"pytest {why} (attributed to the submission): {run.output(300)}"))
    tamper = run.tamper + ([f"{run.forged} forged or duplicated harness records"] if run.forged else [])
    if tamper:
        flags.append("suspicious")
        checks.append(Check(name="pytest_tampering", passed=False, detail="; ".join(tamper)[:2000]))
    if conflicts:
        flags.append("workdir_conflict")
        checks.append(Check(name="workdir_conflict", passed=True,
                            detail="not graded (a file where the snapshot or the hidden tests need a dir, or the "
                            "reverse): " + ", ".join(conflicts[:20])))
    if dropped:
        checks.append(Check(name="edited_tests", passed=True,
                            detail="not graded (test files or test config): " + ", ".join(dropped[:20])))
    if tooling:
        checks.append(Check(name="test_tooling", passed=False,
                            detail="dropped (shadows or configures test tooling): "
                            + "; ".join(why for _, why in tooling[:20])))
    ok = all(c.passed for c in checks if c.name != "test_tooling")
    return Grade(1.0 if ok else 0.0, {clean_text(k): v for k, v in results.items()}, checks,
                 list(dict.fromkeys(flags)), diff, [clean_text(p) for p in dropped])


def _reason(e: BaseException) -> str:
    """An OSError's reason without the (host) file name it carries."""
    return e.strerror if isinstance(e, OSError) and e.strerror else type(e).__name__


def _stage(snapshot: Path, stage: Path, kept: dict[str, bytes | None], hidden: dict[str, str]) -> list[str]:
    """Write the grading copy: the snapshot, the agent's kept changes, then the hidden tests.

    The agent's changes are applied like a checkout: deletions first, then writes; a file that
    replaces a dir the deletions emptied is written in its place. A change that cannot be placed
    (a file over a dir that still holds files the agent may not remove, such as tests, or a path
    through a file) is left out and returned (the verdict flags ``workdir_conflict``); an agent's
    entry in the way of a hidden test file is removed (the hidden tests always go in).

    Raises:
        _AgentTreeError: writing the agent's changes failed otherwise.
        OSError, ValueError: copying the snapshot or writing the hidden tests failed (ours).
    """
    shutil.copytree(snapshot, stage, dirs_exist_ok=True, symlinks=False)
    conflicts: list[str] = []
    try:
        for rel, data in kept.items():
            if data is None:
                write_tree(stage, {rel: None})
        for rel, data in kept.items():
            if data is not None:
                if _blocker(stage, rel) is None:
                    write_tree(stage, {rel: data})
                else:
                    conflicts.append(rel)
    except (OSError, ValueError) as e:
        raise _AgentTreeError(_reason(e)) from e
    for rel in hidden:
        blocker = _blocker(stage, rel)
        if blocker is not None:
            rmtree(stage / blocker)  # the agent's file (or dir) where a hidden test goes
            conflicts.append(blocker)
    write_tree(stage, dict(hidden))
    os.chmod(stage, 0o755)
    return sorted(dict.fromkeys(conflicts))


def _blocker(stage: Path, rel: str) -> str | None:
    """The path under ``stage`` that keeps a file from being written at ``rel``: a parent that is not a dir, or
    a dir at ``rel`` itself that holds files (an empty one is removed); None if none."""
    parts = Path(rel).parts
    cur = stage
    for i, part in enumerate(parts[:-1]):
        cur = cur / part
        if cur.is_symlink() or (os.path.lexists(cur) and not cur.is_dir()):
            return "/".join(parts[: i + 1])
    dest = stage / rel
    if dest.is_dir() and not dest.is_symlink():
        if not any(f for _, _, files in os.walk(dest) for f in files):
            shutil.rmtree(dest)
            return None
        return rel
    return None
