"""RepoPatchEnv: fix a bug in a repository snapshot; graded by hidden tests in a fresh sandbox.

>>> import rowgym
>>> env = rowgym.make("rowgym/RepoPatch-Corpus-v0")          # doctest: +SKIP
>>> obs, info = env.reset(seed=env.splits.seeds("dev", 1)[0])  # doctest: +SKIP
>>> for call in env.task.gold:                                 # doctest: +SKIP
...     obs, reward, terminated, truncated, info = env.step(call)
>>> info["verdict"].reward                                     # doctest: +SKIP
1.0

Per episode the task's snapshot (never its hidden tests) is copied into a fresh
sandbox work dir (a warm Docker container, or bubblewrap) and committed to a new git
repository, so ``git diff`` works for the agent. Tools: ``list_files``, ``read_file``,
``search``, ``replace_in_file``, ``write_file``, ``run``, ``run_visible_tests`` and
``submit`` (terminal). Grading is in :mod:`rowgym.envs.repopatch.grading`.

Local rewards (``REPOPATCH_LOCAL``): ``valid_call@2`` (+0.02 for a call's first success,
at most ``valid_call_cap``: the gold patch's calls + ``EXPLORE_CALLS``), ``bad_call_penalty@1``, ``edit_applied@2``
(+0.05 the first time an edit changes a given source file, for at most as many files as
the gold patch touches) and ``visible_progress@2`` (the rise of the best fraction of
visible tests passing, paid only while no test or test-tooling file differs from the
snapshot). None of them pays more for a longer episode: repeating a call, editing a file
back and forth or re-running the tests earns nothing more. Sandbox trouble raises :class:`~rowgym.errors.SandboxError` (an
episode failure of kind ``sandbox``), grader trouble :class:`~rowgym.errors.GraderError` (``grader``).
"""

from __future__ import annotations

import asyncio
import functools
import json
import posixpath
from typing import Any, ClassVar

import gymnasium as gym
from pydantic import Field

from rowgym.env import RowEnv
from rowgym.envs.repopatch.grading import (
    VERIFIER,
    VERIFIER_VERSION,
    Boxes,
    HarnessCall,
    _roots,
    agent_changes,
    grade_changes,
    oversize_grade,
    pythonpath_env,
)
from rowgym.envs.repopatch.splits import assign_splits
from rowgym.envs.repopatch.task import (
    SKIP_DIRS,
    RepoPatchTask,
    SnapshotCache,
    graded_module_names,
    is_test_config,
    read_tree,
    split_guarded,
)
from rowgym.errors import GraderError
from rowgym.rewards.base import LocalReward, Rubric
from rowgym.rewards.local import (
    BAD_CALL_PENALTY,
    VALID_CALL,
    VALID_CALL_V2,
    FirstSuccessCap,
    call_key,
    distinct_calls,
)
from rowgym.rows import Split, Verdict
from rowgym.sandboxes import Sandbox, SandboxError
from rowgym.sandboxes.errors import SandboxCopyLimit, SandboxQuotaError
from rowgym.splits import ListSplits
from rowgym.tools import NoArgs, ToolArgs, ToolError, tool

OBS_LIMIT = 8000
EDIT_APPLIED = LocalReward("edit_applied", "1", lambda o: 0.0 if o.bad_call else 0.05 * o.signals.get("edit", 0.0),
                           "+0.05 for an edit that changed a file (signal 'edit').", signals=("edit",))
VISIBLE_PROGRESS = LocalReward("visible_progress", "1",
                               lambda o: 0.0 if o.bad_call else o.signals.get("visible_progress", 0.0),
                               "Rise of the best fraction of visible tests passing (signal 'visible_progress').",
                               signals=("visible_progress",))
REPOPATCH_LOCAL_V1 = Rubric([(VALID_CALL, 1.0), (BAD_CALL_PENALTY, 1.0), (EDIT_APPLIED, 1.0), (VISIBLE_PROGRESS, 0.5)])
"""The rubric before the farming fixes: every valid call and every changing edit paid (a stalling policy
earned +0.02 a read and +0.05 a file flipped back and forth). Kept so stored rows stay explainable."""

EXPLORE_CALLS = 4
"""The calls ``valid_call@2`` pays in a RepoPatch episode besides the gold patch's own (its edit calls and
``submit``): the gold calls know where the bug is, an agent first has to look. An efficient episode
(list the files, read the source and the visible test, edit, run the visible tests, submit) makes
this many more; padding it earns nothing more, and stalling earns at most the cap
(``valid_call_cap``: 6 calls, 0.12, for a one-edit task)."""

EDIT_APPLIED_V2 = LocalReward(
    "edit_applied", "2", lambda o: 0.0 if o.bad_call else 0.05 * o.signals.get("edit", 0.0),
    "+0.05 the first time an edit changes a given source file (not a test or test configuration), for at "
    "most as many files as the gold patch touches, at least 1 (signal 'edit').", signals=("edit",))
VISIBLE_PROGRESS_V2 = LocalReward(
    "visible_progress", "2", lambda o: 0.0 if o.bad_call else o.signals.get("visible_progress", 0.0),
    "Rise of the best fraction of visible tests passing, counted only while no test, test-configuration or "
    "test-tooling file differs from the snapshot (signal 'visible_progress').", signals=("visible_progress",))
REPOPATCH_LOCAL = Rubric([(VALID_CALL_V2, 1.0), (BAD_CALL_PENALTY, 1.0), (EDIT_APPLIED_V2, 1.0),
                          (VISIBLE_PROGRESS_V2, 0.5)])


def valid_call_cap(task: RepoPatchTask) -> int:
    """The most calls ``valid_call@2`` pays in an episode of ``task``: the gold plan's distinct calls
    plus ``EXPLORE_CALLS``."""
    return len(distinct_calls(task.gold) | {call_key("submit", {})}) + EXPLORE_CALLS


def gold_edit_files(task: RepoPatchTask) -> int:
    """How many distinct files the task's gold edit calls change (at least 1): ``edit_applied@2``'s cap."""
    paths = {json.loads(c.arguments or "{}").get("path") for c in task.gold
             if c.name in ("replace_in_file", "write_file")}
    return max(1, len(paths - {None}))


def counted(fn):  # noqa: ANN001, ANN201
    """A tool that reports ``first_success`` (``valid_call@2``) once it has returned without raising."""

    @functools.wraps(fn)
    async def wrapper(self: RepoPatchEnv, args: ToolArgs) -> str:
        out = await fn(self, args)
        self._firsts.report_call(self, fn.__name__, args)  # first_success, while valid_call_cap lasts
        return out

    return wrapper


class PathArgs(ToolArgs):
    path: str = Field(".", description="A path relative to the repository root.")


class ReadArgs(ToolArgs):
    path: str = Field(description="File path relative to the repository root.")
    start_line: int = Field(1, ge=1, description="First line to show (1-based).")
    end_line: int | None = Field(None, ge=1, description="Last line to show (inclusive); default: 300 lines on.")


class SearchArgs(ToolArgs):
    pattern: str = Field(description="Extended regular expression (grep -E).")
    path: str = Field(".", description="File or directory to search in.")


class ReplaceArgs(ToolArgs):
    path: str
    old: str = Field(description="Exact text to replace; it must occur exactly once in the file.")
    new: str = Field(description="Replacement text.")


class WriteArgs(ToolArgs):
    path: str
    content: str = Field(description="The whole new content of the file.")


class RunArgs(ToolArgs):
    command: str = Field(description="A shell command, run in the repository root inside the sandbox.")
    timeout: float = Field(30.0, gt=0, le=120, description="Seconds before the command is killed (at most 120).")


def _os_reason(e: Exception) -> str:
    """An OSError's reason without the file name it carries (which could be a host path)."""
    return e.strerror if isinstance(e, OSError) and e.strerror else type(e).__name__


def _clip(text: str, limit: int = OBS_LIMIT) -> str:
    if len(text) <= limit:
        return text
    half = limit // 2
    return text[:half] + f"\n... [{len(text) - limit} characters truncated] ...\n" + text[-half:]


class RepoPatchEnv(RowEnv[RepoPatchTask]):
    """Base of the repo-patch envs; a subclass provides ``load_tasks()`` (and a ``family``).

    Args:
        backend: Sandbox backend (``auto``, ``docker``, ``bwrap``).
        pool_size: Warm Docker containers kept ready.
        tasks: Use this task list instead of ``load_tasks()`` (tests, tools).
    """

    family: ClassVar[str] = "repopatch"
    verifier = VERIFIER
    verifier_version = VERIFIER_VERSION
    default_max_turns = 40
    local_rubric = REPOPATCH_LOCAL
    system_prompt = ("You are a software engineer fixing a bug in a Python repository. Explore with the tools, "
                     "edit the source (not the tests), run the visible tests, then call submit.")

    def __init__(self, *, backend: str = "auto", pool_size: int = 1, tasks: list[RepoPatchTask] | None = None,
                 **kw: Any) -> None:
        super().__init__(**kw)
        self.backend = backend
        self.pool_size = pool_size
        self.task_list = list(tasks) if tasks is not None else self.load_tasks()
        if not self.task_list:
            raise GraderError(f"{type(self).__name__}: no tasks")
        self.splits = ListSplits(assign_splits(self.task_list))
        self._boxes: Boxes | None = None
        self.snapshots = SnapshotCache()
        self.sb: Sandbox | None = None
        self.last_grade = None
        self._best_visible = 0.0
        self._firsts = FirstSuccessCap(0)
        self._edited: set[str] = set()
        self._edit_cap = 1

    def load_tasks(self) -> list[RepoPatchTask]:
        raise NotImplementedError

    async def areset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict]:
        if seed is None and not self.splits.seeds(Split.TRAIN, 1):
            # A small task list (e.g. a user's SWE-bench file) may have no training task:
            # an unseeded reset then draws from every task.
            gym.Env.reset(self, seed=None)
            seed = int(self.np_random.integers(len(self.task_list)))
        return await super().areset(seed=seed, options=options)

    def make_task(self, seed: int) -> RepoPatchTask:
        return self.task_list[self.splits.task_index(seed)]

    def task_content(self, task: RepoPatchTask) -> Any:
        return {"id": task.instance_id, "edits": task.edits, "statement": task.problem_statement,
                "f2p": task.fail_to_pass}

    @property
    def boxes(self) -> Boxes:
        if self._boxes is None:
            self._boxes = Boxes(self.backend, self.pool_size)
        return self._boxes

    # ------------------------------------------------------------------ lifecycle
    async def setup(self, task: RepoPatchTask) -> str:
        snap = await asyncio.to_thread(self.snapshots.get, task)
        git_dir = await asyncio.to_thread(self.snapshots.git_dir, task)
        self.sb = await self.boxes.acquire()
        try:
            await self.sb.copy_in(snap)
            if git_dir is not None:
                # The snapshot's repository, committed once on the host (SnapshotCache.git_dir).
                await self.sb.copy_in(git_dir, ".git")
                res = None
            else:  # no git on the host: commit in the sandbox
                res = await self.sb.exec(
                    "git init -q && git add -A && git -c user.name=rowgym -c user.email=rowgym@localhost "
                    "commit -qm 'task snapshot'", timeout=60)
        except SandboxError as e:
            raise SandboxError(f"could not prepare the work dir: {e}") from e
        if res is not None and not res.ok:
            raise SandboxError(f"git init in the sandbox failed: {res.stderr.strip()[:300]}")
        self.last_grade = None
        self._best_visible = 0.0
        self._firsts = FirstSuccessCap(valid_call_cap(task))
        self._edited = set()
        self._edit_cap = gold_edit_files(task)
        visible = ", ".join(task.visible_tests) if task.visible_tests else "(none)"
        return (f"Repository: {task.repo}\n\nIssue:\n{task.problem_statement}\n\n"
                f"The repository is checked out in the working directory (a git repository at the task's commit). "
                f"Visible tests: {visible}. Fix the bug in the source code, then call submit. "
                f"Hidden tests will check the fix; edits to tests or test configuration are ignored.")

    async def teardown(self) -> None:
        if self.sb is not None:
            sb, self.sb = self.sb, None
            defer = getattr(self._boxes, "defer", None)
            if defer is not None:
                defer(sb)  # removed off the next reset's path; aclose() waits for it
                return
            try:
                await sb.close()
            except SandboxError:
                pass

    async def aclose(self) -> None:
        await super().aclose()
        if self._boxes is not None:
            await self._boxes.close()

    def close(self) -> None:
        super().close()
        if self._boxes is not None:
            self._boxes.close_sync()
        self.snapshots.close()

    async def grade(self) -> Verdict:
        assert self.task is not None and self.sb is not None
        snap = self.snapshots.get(self.task)
        try:
            changes = await agent_changes(self.sb, snap)
        except SandboxCopyLimit as e:
            self.last_grade = oversize_grade(self.task, e)
        else:
            self.last_grade = await grade_changes(self.task, snap, changes, self.boxes)
        return self.last_grade.verdict()

    # ------------------------------------------------------------------ helpers
    async def _exec(self, cmd: str | list[str], timeout: float, env: dict[str, str] | None = None):  # noqa: ANN202
        assert self.sb is not None
        if "\x00" in (cmd if isinstance(cmd, str) else "".join(cmd)):
            raise ToolError("arguments must not contain NUL characters")
        try:
            return await self.sb.exec(cmd, timeout=timeout, env=env)
        except SandboxError as e:
            raise SandboxError(f"sandbox command failed: {e}") from e

    async def _read_text(self, path: str) -> str:
        assert self.sb is not None
        try:
            data = await self.sb.read_file(path)
        except FileNotFoundError:
            raise ToolError(f"no such file: {path}") from None
        except IsADirectoryError:
            raise ToolError(f"{path} is a directory; use list_files") from None
        except NotADirectoryError:
            raise ToolError(f"no such file: {path} (a component of the path is not a directory)") from None
        except SandboxError as e:  # messages name sandbox paths only, never the host's
            raise ToolError(f"cannot read {path}: {e}") from None
        except (OSError, ValueError) as e:
            raise ToolError(f"cannot read {path}: {_os_reason(e)}") from None
        try:
            return data.decode()
        except UnicodeDecodeError:
            raise ToolError(f"{path} is not a UTF-8 text file") from None

    async def _write_text(self, path: str, text: str) -> None:
        assert self.sb is not None
        try:
            await self.sb.write_file(path, text)
        except IsADirectoryError:
            raise ToolError(f"cannot write {path}: it is a directory") from None
        except NotADirectoryError:
            raise ToolError(f"cannot write {path}: a component of the path is not a directory") from None
        except SandboxError as e:  # includes the quota: "No space left on device (work dir quota ...)"
            raise ToolError(f"cannot write {path}: {e}") from None
        except (OSError, ValueError) as e:
            raise ToolError(f"cannot write {path}: {_os_reason(e)}") from None

    # ------------------------------------------------------------------ rewards
    def _edit_made(self, path: str) -> None:
        """``edit`` the first time a source file (not a test or test config) is changed, up to the cap."""
        rel = posixpath.normpath(path.lstrip("/"))
        if is_test_config(rel) or rel in self._edited or len(self._edited) >= self._edit_cap:
            return
        self._edited.add(rel)
        self.signal("edit", 1.0)

    async def _tests_untouched(self) -> bool:
        """Whether no test, test-config or test-tooling file differs from the snapshot (``visible_progress@2``
        counts only then: deleting or rewriting failing tests must not raise the passing fraction)."""
        assert self.task is not None and self.sb is not None
        snap = self.snapshots.get(self.task)
        try:
            changes = await agent_changes(self.sb, snap)
        except SandboxCopyLimit:
            return False
        base = await asyncio.to_thread(read_tree, snap, planted=True)
        _, tests, tooling = split_guarded(base, changes, roots=_roots(self.task),
                                          test_modules=graded_module_names(self.task.test_paths))
        return not tests and not tooling

    # ------------------------------------------------------------------ tools
    @tool
    @counted
    async def list_files(self, args: PathArgs) -> str:
        """List the files under a directory of the repository (recursively, at most 300 entries)."""
        assert self.sb is not None
        try:
            found = await self.sb.list_files(args.path, skip_dirs=sorted(SKIP_DIRS), limit=300)
        except FileNotFoundError:
            raise ToolError(f"cannot list {args.path}: no such file or directory") from None
        except NotADirectoryError:
            raise ToolError(f"cannot list {args.path}: a component of the path is not a directory") from None
        except SandboxError as e:
            raise ToolError(f"cannot list {args.path}: {e}") from None
        except (OSError, ValueError) as e:
            raise ToolError(f"cannot list {args.path}: {_os_reason(e)}") from None
        if found is None:
            return args.path
        out = [posixpath.normpath(posixpath.join(args.path, rel)) for rel in found[:300]]
        if len(found) > 300:
            return "\n".join(out) + "\n... (more files; list a subdirectory)"
        return "\n".join(out) or "(empty)"

    @tool
    @counted
    async def read_file(self, args: ReadArgs) -> str:
        """Show a file's lines (numbered), from start_line to end_line."""
        lines = (await self._read_text(args.path)).splitlines()
        end = min(len(lines), args.end_line or args.start_line + 299)
        if args.start_line > max(len(lines), 1):
            raise ToolError(f"{args.path} has only {len(lines)} lines")
        body = "\n".join(f"{i:5d}  {lines[i - 1]}" for i in range(args.start_line, end + 1))
        more = f"\n... ({len(lines) - end} more lines)" if end < len(lines) else ""
        return _clip(f"{args.path} (lines {args.start_line}-{end} of {len(lines)})\n{body}{more}")

    @tool
    @counted
    async def search(self, args: SearchArgs) -> str:
        """Search the repository for a regular expression (grep -rnE); shows at most 100 matches."""
        res = await self._exec(["grep", "-rnIE", "--exclude-dir=.git", "-m", "50", "--", args.pattern, args.path],
                               timeout=30)
        if res.exit_code == 1:
            return "no matches"
        if res.exit_code != 0:
            raise ToolError(f"search failed: {res.stderr.strip()[:300]}")
        lines = res.stdout.splitlines()
        extra = f"\n... ({len(lines) - 100} more matches)" if len(lines) > 100 else ""
        return _clip("\n".join(lines[:100]) + extra)

    @tool
    @counted
    async def replace_in_file(self, args: ReplaceArgs) -> str:
        """Replace an exact string in a file; the old text must occur exactly once."""
        text = await self._read_text(args.path)
        n = text.count(args.old) if args.old else 0
        if n != 1:
            raise ToolError(f"the old text occurs {n} times in {args.path}; it must occur exactly once "
                            "(include more surrounding lines)")
        await self._write_text(args.path, text.replace(args.old, args.new))
        if args.old != args.new:
            self._edit_made(args.path)
        return f"Replaced 1 occurrence in {args.path}."

    @tool
    @counted
    async def write_file(self, args: WriteArgs) -> str:
        """Create or overwrite a file with the given content."""
        try:
            before = await self._read_text(args.path)
        except ToolError:
            before = None
        await self._write_text(args.path, args.content)
        if before != args.content:
            self._edit_made(args.path)
        return f"Wrote {len(args.content)} characters to {args.path}."

    @tool
    @counted
    async def run(self, args: RunArgs) -> str:
        """Run a shell command in the repository root (no network; output truncated)."""
        assert self.task is not None
        res = await self._exec(args.command, timeout=args.timeout, env=pythonpath_env(self.task))
        status = "timed out" if res.timed_out else f"exit code {res.exit_code}"
        return _clip(f"[{status}]\n{res.stdout}" + (f"\n[stderr]\n{res.stderr}" if res.stderr else ""))

    @tool
    @counted
    async def run_visible_tests(self, args: NoArgs) -> str:
        """Run the repository's visible tests with pytest and show the results."""
        assert self.task is not None and self.sb is not None
        if not self.task.visible_tests:
            return "This task has no visible tests."
        # The grader's hardened invocation (pytest from the image, signed report), so this local
        # signal is no easier to fool than grading.
        call = HarnessCall(self.task, self.task.visible_tests)
        try:
            run = await call.run(self.sb, timeout=120)
        except SandboxQuotaError as e:  # the agent filled its work dir: its problem, not a sandbox failure
            raise ToolError(f"cannot run the visible tests: the work dir is full ({e}); free some space") from None
        except (SandboxError, OSError, ValueError) as e:
            raise SandboxError(f"could not run the visible tests: {e}") from e
        if not run.started:  # the harness deletes its config first thing; here it never ran
            await self._exec(["rm", "-f", "--", call.conf_name], timeout=30)
        results = run.outcomes
        if results and not run.tamper and not run.forged:
            frac = sum(s == "passed" for s in results.values()) / len(results)
            if frac > self._best_visible and await self._tests_untouched():
                self.signal("visible_progress", frac - self._best_visible)
                self._best_visible = frac
        res = run.res
        status = "timed out" if res.timed_out else (
            f"exit code {run.finished.get('session_exit')}" if run.finished is not None
            else f"pytest exited ({res.exit_code}) before reporting its results")
        return _clip(f"[{status}]\n{run.output(OBS_LIMIT)}")

    @tool(terminal=True)
    @counted
    async def submit(self, args: NoArgs) -> str:
        """Submit the current state of the repository as your fix (ends the episode)."""
        return "Submitted; the fix will be graded by hidden tests."
