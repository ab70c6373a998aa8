"""Repo-patch tasks: the data model, snapshot materialisation, test-file guard, pytest parsing.

>>> is_test_config("pkg/tests/test_core.py"), is_test_config("pkg/core.py"), is_test_config("conftest.py")
(True, False, True)
>>> parse_pytest_summary("PASSED t.py::test_a\\nFAILED t.py::test_b - assert 1 == 2\\n")
{'t.py::test_a': 'passed', 't.py::test_b': 'failed'}

A task is a repository *snapshot* (a base plus edits: the bug), a problem
statement, visible test paths, and hidden test files (added only at grading) with
the FAIL_TO_PASS / PASS_TO_PASS node ids they define. Every source (corpus,
synthesizer, SWE-bench loader) produces this one model, so the environment,
grader, verifier and benchmark never care where a task came from.
"""

from __future__ import annotations

import difflib
import fnmatch
import hashlib
import json
import os
import posixpath
import re
import shutil
import subprocess
import tomllib
import weakref
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from rowgym.rows import ToolCall

SKIP_DIRS = {".git", "__pycache__", ".pytest_cache", ".mypy_cache", ".tox", ".eggs"}
TEST_CONFIG_FILES = {"conftest.py", "pytest.ini", "setup.cfg", "tox.ini", "sitecustomize.py",
                     "usercustomize.py", ".coveragerc", "noxfile.py"}
# What the test *tooling* reads or imports: a change here is dropped and flags the verdict `suspicious`.
TOOLING_FILES = {"conftest.py", "pytest.ini", "tox.ini", "sitecustomize.py", "usercustomize.py",
                 "pytest.py", "py.py", "_pytest.py", "pluggy.py"}
TOOLING_DIRS = {"_pytest", "pluggy", "__pycache__"}
TOOLING_SUFFIXES = (".pth", ".pyc", ".pyo", ".egg-link")
TOOLING_DIR_SUFFIXES = (".dist-info", ".egg-info", ".egg")
# Packages the grader's pytest imports (from the image): never shadowed at a sys.path root of the repo.
TOOLING_MODULES = {"pytest", "_pytest", "py", "pluggy", "iniconfig", "packaging", "attr", "attrs",
                   "exceptiongroup", "tomli", "importlib_metadata", "zipp", "more_itertools",
                   "typing_extensions", "pkg_resources", "setuptools", "_distutils_hack", "pygments"}


class Base(BaseModel):
    """Where a snapshot starts: inline files, a host directory, or a commit of a local git repo."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    files: dict[str, str] | None = None
    dir: str | None = None
    git_repo: str | None = None
    commit: str | None = None


class RepoPatchTask(BaseModel):
    """One repo-patch task (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")

    instance_id: str
    source: str = Field(description="corpus, synth or swebench")
    repo: str
    base: Base
    edits: dict[str, str] = Field(default_factory=dict, description="path -> content written over the base (the bug)")
    remove: list[str] = Field(default_factory=list, description="paths dropped from the agent's snapshot (hidden tests)")
    problem_statement: str
    visible_tests: list[str] = Field(default_factory=list, description="pytest paths the agent may run")
    hidden_files: dict[str, str] = Field(default_factory=dict, description="added only in the grading copy")
    test_paths: list[str] = Field(default_factory=list, description="pytest paths run by the grader")
    fail_to_pass: list[str]
    pass_to_pass: list[str] = Field(default_factory=list)
    pythonpath: list[str] = Field(default_factory=list, description="dirs (relative) put on PYTHONPATH")
    gold: list[ToolCall] = Field(default_factory=list, description="the gold patch as edit tool calls + submit")
    gold_patch: str = ""
    location: str = Field("", description="'file::function' the bug is in (splits never share one)")

    @property
    def instruction(self) -> str:
        return self.problem_statement


def call(name: str, **args: object) -> ToolCall:
    """A tool call with canonical JSON arguments."""
    return ToolCall(name=name, arguments=json.dumps(args, sort_keys=True))


# ------------------------------------------------------------------ test-file guard


def is_test_config(path: str, test_globs: tuple[str, ...] = ()) -> bool:
    """True for test files, conftest.py and test configuration (edits to them are not graded)."""
    p = posixpath.normpath(path)
    parts = p.split("/")
    name = parts[-1]
    if name in TEST_CONFIG_FILES or name.endswith(".pth"):
        return True
    if any(d in ("tests", "test", "testing") or is_test_module_name(d) for d in parts[:-1]):
        return True
    if fnmatch.fnmatch(name, "test_*.py") or fnmatch.fnmatch(name, "*_test.py"):
        return True
    return any(fnmatch.fnmatch(p, g) for g in test_globs)


def is_test_module_name(name: str) -> bool:
    """True when ``name`` (a file or dir; its module name is what precedes the first dot) is named like a
    test module, ``test_*`` or ``*_test``: pytest may import a test file by that bare name.

    >>> is_test_module_name("test_calc"), is_test_module_name("calc_test.cpython-311-x86_64-linux-gnu.so")
    (True, True)
    >>> is_test_module_name("latest.py"), is_test_module_name("pytest_x")
    (False, False)
    """
    stem = name.split(".", 1)[0]
    return stem.startswith("test_") or stem.endswith("_test")


def graded_module_names(test_paths: list[str] | tuple[str, ...]) -> frozenset[str]:
    """The bare module names of the test files a grader runs (``tests/test_x.py::t`` -> ``test_x``).

    pytest imports a test file outside a package by its bare name, so a module or package of
    that name earlier on ``sys.path`` would be imported in its place.

    >>> sorted(graded_module_names(["tests/test_calc.py::test_div", "tests/checks.py"]))
    ['checks', 'test_calc']
    """
    return frozenset(posixpath.basename(p.split("::", 1)[0]).split(".", 1)[0] for p in test_paths)


def tooling_reason(path: str, *, new: bool = False, roots: tuple[str, ...] = ("",),
                   test_modules: frozenset[str] = frozenset()) -> str | None:
    """Why a change to ``path`` touches the test tooling (``None`` when it does not).

    Tooling is what pytest imports or reads besides the tests: ``conftest.py``, pytest's own
    modules and their dependencies shadowed by a file of the repository, ``sitecustomize``,
    ``*.pth``, package metadata (``*.dist-info`` entry points load plugins), bytecode. ``new``:
    the file is not in the snapshot (a new top-level module named like a standard-library
    module, or like a graded test file, is tooling too: pytest would import it in place of
    the test). ``roots``: the dirs that go on ``sys.path`` (``""`` = repo root). ``test_modules``:
    the bare names of the graded test files (:func:`graded_module_names`).

    >>> tooling_reason("pytest.py"), tooling_reason("pkg/__pycache__/a.cpython-311.pyc"), tooling_reason("pkg/a.py")
    ('pytest.py shadows test tooling', 'bytecode or metadata: pkg/__pycache__/a.cpython-311.pyc', None)
    >>> tooling_reason("json.py", new=True), tooling_reason("pkg/json.py", new=True)
    ('new top-level module json shadows the standard library', None)
    >>> tooling_reason("test_calc/__init__.py", new=True, test_modules=frozenset({"test_calc"}))
    'new top-level module test_calc shadows a graded test module'
    """
    import sys

    p = posixpath.normpath(path)
    parts = p.split("/")
    name = parts[-1]
    if name in TOOLING_FILES:
        return f"{name} shadows test tooling"
    if (name.endswith(TOOLING_SUFFIXES) or any(d in TOOLING_DIRS for d in parts[:-1])
            or any(d.endswith(TOOLING_DIR_SUFFIXES) for d in parts[:-1])):
        return f"bytecode or metadata: {p}"
    for root in roots:
        r = posixpath.normpath(root) if root not in ("", ".") else ""
        rel = p[len(r) + 1:] if r and p.startswith(r + "/") else (p if not r else None)
        if rel is None:
            continue
        rparts = rel.split("/")
        module = rparts[0].split(".", 1)[0]  # what `import` finds for it (a dir, or a file of any suffix)
        if new and module in test_modules:
            return f"new top-level module {module} shadows a graded test module"
        top = rparts[0].removesuffix(".py") if len(rparts) == 1 else rparts[0]
        if len(rparts) == 1 and not rel.endswith(".py"):
            continue
        if top in TOOLING_MODULES and (new or top in ("pytest", "_pytest", "py", "pluggy")):
            return f"module {top} shadows test tooling"
        if new and top in sys.stdlib_module_names and (len(rparts) == 1 or rparts[-1] == "__init__.py"):
            return f"new top-level module {top} shadows the standard library"
    return None


def setup_cfg_touches_pytest(old: str | None, new: str | None) -> bool:
    """True when a setup.cfg change alters its ``[tool:pytest]`` section (or is unparsable)."""
    import configparser

    def section(text: str | None) -> object:
        if text is None:
            return None
        cp = configparser.RawConfigParser()
        cp.read_string(text)
        return dict(cp.items("tool:pytest")) if cp.has_section("tool:pytest") else None
    try:
        return section(old) != section(new)
    except configparser.Error:
        return True


def pyproject_touches_tests(old: str | None, new: str | None) -> bool:
    """True when a pyproject.toml change alters the pytest configuration (or is unparsable)."""
    def pytest_table(text: str | None) -> object:
        if text is None:
            return None
        return tomllib.loads(text).get("tool", {}).get("pytest")
    try:
        return pytest_table(old) != pytest_table(new)
    except tomllib.TOMLDecodeError:
        return True


# ------------------------------------------------------------------ snapshots


def read_tree(root: Path, *, planted: bool = False) -> dict[str, bytes]:
    """Regular files under ``root`` (no caches, no .git, no symlinks) as ``{relpath: bytes}``.

    ``planted=True`` keeps bytecode, ``__pycache__`` and ``*.egg-info`` (never graded, but an
    agent's tree is read with them so that planting them can be seen and flagged).
    """
    out: dict[str, bytes] = {}
    skip = SKIP_DIRS - {"__pycache__"} if planted else SKIP_DIRS
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in skip and (planted or not d.endswith(".egg-info")))
        for n in sorted(filenames):
            full = Path(dirpath) / n
            if (not planted and n.endswith((".pyc", ".pyo"))) or full.is_symlink() or not full.is_file():
                continue
            out[full.relative_to(root).as_posix()] = full.read_bytes()
    return out


def write_tree(root: Path, files: dict[str, bytes | str | None]) -> None:
    """Write (or delete, for ``None``) files under ``root``, refusing paths that escape it."""
    for rel, data in files.items():
        dest = safe_join(root, rel)
        if data is None:
            if dest.is_file() or dest.is_symlink():
                dest.unlink()
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.is_symlink():
            dest.unlink()
        dest.write_bytes(data.encode() if isinstance(data, str) else data)


def safe_join(root: Path, rel: str) -> Path:
    norm = posixpath.normpath(rel)
    if norm.startswith(("/", "..")) or norm == ".":
        raise ValueError(f"path {rel!r} leaves the repository")
    return root / norm


def materialize(task: RepoPatchTask, dest: Path) -> None:
    """Write the agent's snapshot of ``task`` (base + bug, hidden tests removed) into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    b = task.base
    if b.files is not None:
        write_tree(dest, dict(b.files))
    elif b.dir is not None:
        shutil.copytree(b.dir, dest, dirs_exist_ok=True, symlinks=True,
                        ignore=shutil.ignore_patterns(*SKIP_DIRS, "*.pyc"))
    elif b.git_repo is not None:
        archive = subprocess.run(["git", "-C", b.git_repo, "archive", "--format=tar", b.commit or "HEAD"],
                                 check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    write_tree(dest, dict(task.edits))
    for rel in task.remove:
        target = safe_join(dest, rel)
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()


class SnapshotCache:
    """Materialised snapshots on the host, one dir per task (the pristine base of each episode).

    The temp dir (``rowgym-repopatch-snap-<pid>-…``, made on first use) is removed by
    ``close()``, when the cache is garbage-collected, or at interpreter exit; one left by
    a killed process is swept by the next sandbox pool (``rowgym.sandboxes.cleanup``).
    """

    def __init__(self) -> None:
        self._root: Path | None = None
        self._finalizer: weakref.finalize | None = None
        self._dirs: dict[str, Path] = {}
        self._git_missing = False

    @property
    def root(self) -> Path:
        if self._root is None:
            from rowgym.sandboxes.cleanup import owned_mkdtemp

            self._root = owned_mkdtemp("repopatch-snap")
            self._finalizer = weakref.finalize(self, shutil.rmtree, self._root, True)
        return self._root

    def get(self, task: RepoPatchTask) -> Path:
        key = hashlib.sha256(task.model_dump_json().encode()).hexdigest()[:16]
        if key not in self._dirs:
            d = self.root / key
            tmp = self.root / f"{key}.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            materialize(task, tmp)
            tmp.rename(d)
            self._dirs[key] = d
        return self._dirs[key]

    def git_dir(self, task: RepoPatchTask) -> Path | None:
        """A ``.git`` holding one commit of ``task``'s snapshot, made once on the host (None: no host git).

        Copied into the work dir beside the files, it replaces a ``git init && git add -A &&
        git commit`` in the sandbox on every reset. It lives beside the snapshot dir, never
        in it (the snapshot is what grading compares with and copies). Host config is not
        read (``GIT_CONFIG_GLOBAL=/dev/null``, no system config, no templates, so no hooks);
        author, committer and dates are fixed, so the commit id depends on the files only.
        Objects are packed into one pack (few files to copy). The index's stat data is the
        host's: git in the sandbox re-hashes the files once, then refreshes it.
        """
        snap = self.get(task)
        d = snap.with_name(snap.name + ".git")
        if d.is_dir():
            return d
        if self._git_missing:
            return None
        tmp = snap.with_name(snap.name + ".git.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.root), "LC_ALL": "C",
               "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1",
               "GIT_DIR": str(tmp), "GIT_WORK_TREE": str(snap),
               "GIT_AUTHOR_NAME": "rowgym", "GIT_AUTHOR_EMAIL": "rowgym@localhost",
               "GIT_COMMITTER_NAME": "rowgym", "GIT_COMMITTER_EMAIL": "rowgym@localhost",
               "GIT_AUTHOR_DATE": "2000-01-01T00:00:00Z", "GIT_COMMITTER_DATE": "2000-01-01T00:00:00Z"}
        steps = (["init", "-q", "--template=", "--initial-branch=master"], ["add", "-A"],
                 ["commit", "-qm", "task snapshot"], ["repack", "-adq"])
        try:
            for argv in steps:
                subprocess.run(["git", "-c", "core.hooksPath=/dev/null", *argv], env=env, cwd=snap, check=True,
                               capture_output=True, timeout=120)
        except FileNotFoundError:
            self._git_missing = True
            return None
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            shutil.rmtree(tmp, ignore_errors=True)
            return None
        # init records the host work tree in the config; the sandbox's is the .git's parent.
        subprocess.run(["git", "config", "--unset-all", "core.worktree"], env=env, cwd=snap, capture_output=True,
                       timeout=60)
        if "worktree" in (tmp / "config").read_text():
            shutil.rmtree(tmp, ignore_errors=True)
            return None
        tmp.rename(d)
        return d

    def close(self) -> None:
        if self._finalizer is not None:
            self._finalizer()
        self._root, self._finalizer = None, None
        self._dirs.clear()


# ------------------------------------------------------------------ diffs


def changed_files(base: dict[str, bytes], after: dict[str, bytes]) -> dict[str, bytes | None]:
    """Files that differ between two trees: ``{path: new bytes, or None when deleted}``."""
    out: dict[str, bytes | None] = {}
    for rel in sorted(set(base) | set(after)):
        if base.get(rel) != after.get(rel):
            out[rel] = after.get(rel)
    return out


def split_test_edits(base: dict[str, bytes], changes: dict[str, bytes | None],
                     test_globs: tuple[str, ...] = ()) -> tuple[dict[str, bytes | None], list[str]]:
    """Drop changes to tests, test configuration and test tooling; return (kept changes, dropped paths)."""
    kept, tests, tooling = split_guarded(base, changes, test_globs)
    return kept, sorted(tests + [p for p, _ in tooling])


def split_guarded(base: dict[str, bytes], changes: dict[str, bytes | None], test_globs: tuple[str, ...] = (),
                  roots: tuple[str, ...] = ("",), test_modules: frozenset[str] = frozenset()
                  ) -> tuple[dict[str, bytes | None], list[str], list[tuple[str, str]]]:
    """Sort ``changes`` into (kept, dropped test edits, dropped tooling edits with their reason).

    Test edits (``tests/``, ``test_*.py``, ``setup.cfg`` outside ``[tool:pytest]``) flag a verdict
    ``edited_tests``; tooling edits (see :func:`tooling_reason`, pytest sections of ``setup.cfg`` /
    ``pyproject.toml``) flag it ``suspicious`` as well.
    """
    def text(b: bytes | None) -> str | None:
        return b.decode("utf-8", "replace") if b is not None else None

    kept: dict[str, bytes | None] = {}
    tests: list[str] = []
    tooling: list[tuple[str, str]] = []
    for rel, data in changes.items():
        name = posixpath.basename(rel)
        why = tooling_reason(rel, new=rel not in base, roots=roots, test_modules=test_modules)
        if why is None and name == "pyproject.toml" and pyproject_touches_tests(text(base.get(rel)), text(data)):
            why = "pyproject.toml: [tool.pytest] changed"
        if why is None and name == "setup.cfg" and setup_cfg_touches_pytest(text(base.get(rel)), text(data)):
            why = "setup.cfg: [tool:pytest] changed"
        if why is not None:
            tooling.append((rel, why))
        elif is_test_config(rel, test_globs):
            tests.append(rel)
        else:
            kept[rel] = data
    return kept, tests, tooling


def unified_diff(base: dict[str, bytes], changes: dict[str, bytes | None]) -> str:
    """A ``git diff``-style text of ``changes`` against ``base`` (binary files summarised)."""
    chunks = []
    for rel, new in changes.items():
        old = base.get(rel)
        try:
            a = old.decode().splitlines(keepends=True) if old is not None else []
            b = new.decode().splitlines(keepends=True) if new is not None else []
        except UnicodeDecodeError:
            chunks.append(f"Binary files a/{rel} and b/{rel} differ\n")
            continue
        chunks.append(f"diff --git a/{rel} b/{rel}\n")
        chunks.extend(difflib.unified_diff(a, b, f"a/{rel}" if old is not None else "/dev/null",
                                           f"b/{rel}" if new is not None else "/dev/null"))
    return "".join(c if c.endswith("\n") else c + "\n" for c in chunks)


# ------------------------------------------------------------------ pytest output

_SUMMARY_RE = re.compile(r"^(PASSED|FAILED|ERROR|XFAIL|XPASS) (\S.*)$")
_PARAM_RE = re.compile(r"^(\S*?\[.*?\])(?: - |$)")
STATUS = {"PASSED": "passed", "FAILED": "failed", "ERROR": "error", "XFAIL": "xfail", "XPASS": "xpass"}


def parse_pytest_summary(text: str) -> dict[str, str]:
    """Per-test outcomes from pytest's ``-rA`` short summary (``{node_id: passed|failed|error|...}``).

    A test that both passed and errored (teardown) counts as an error.
    """
    out: dict[str, str] = {}
    for line in text.splitlines():
        m = _SUMMARY_RE.match(line.rstrip())
        if not m:
            continue
        rest = m.group(2)
        if m.group(1) == "PASSED":
            node = rest.strip()
        else:
            pm = _PARAM_RE.match(rest) if "[" in rest.split(" - ", 1)[0] else None
            node = pm.group(1) if pm else rest.split(" - ", 1)[0].strip()
        status = STATUS[m.group(1)]
        if out.get(node) not in ("error", "failed"):
            out[node] = status
    return out


def pytest_argv(paths: list[str], extra: tuple[str, ...] = ()) -> list[str]:
    """The pytest command line the env and the grader use (quiet, per-test summary, no cache)."""
    return ["python3", "-m", "pytest", "-q", "-rA", "--tb=short", "-p", "no:cacheprovider",
            "-o", "addopts=", *extra, *paths]


def edit_calls(path: str, before: str, after: str) -> list[ToolCall]:
    """One ``replace_in_file`` call that turns ``before`` into ``after`` (``write_file`` as a fallback).

    The replaced span covers every changed line plus as much context as makes it unique.

    >>> [c.name for c in edit_calls("f.py", "a\\nb\\nc\\n", "a\\nB\\nc\\n")]
    ['replace_in_file']
    """
    a, b = before.splitlines(keepends=True), after.splitlines(keepends=True)
    ops = [op for op in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes() if op[0] != "equal"]
    if not ops:
        return []
    i1, i2, j1, j2 = ops[0][1], ops[-1][2], ops[0][3], ops[-1][4]
    for ctx in range(0, max(len(a), 1) + 1):
        lo, hi = max(0, i1 - ctx), min(len(a), i2 + ctx)
        old = "".join(a[lo:hi])
        if old and before.count(old) == 1:
            new = "".join(a[lo:i1]) + "".join(b[j1:j2]) + "".join(a[i2:hi])
            return [call("replace_in_file", path=path, old=old, new=new)]
    return [call("write_file", path=path, content=after)]
