"""The grading harness without a sandbox: record signing, attribution of early exits, tooling guard,
and the harness itself run on the host's Python against small hostile repositories."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from rowgym.envs.repopatch.grading import HARNESS_SOURCE, HarnessCall, grade_changes
from rowgym.envs.repopatch.task import Base, RepoPatchTask, split_guarded, tooling_reason
from rowgym.errors import GraderError
from rowgym.sandboxes import ExecResult, Sandbox

TASK = RepoPatchTask(instance_id="t", source="corpus", repo="r", base=Base(files={"pkg/__init__.py": "X = 1\n"}),
                     problem_statement="p", test_paths=["tests/test_h.py"], fail_to_pass=["tests/test_h.py::test_a"],
                     pass_to_pass=["tests/test_h.py::test_b"], hidden_files={"tests/test_h.py": ""})


def _record(key: bytes, kind: str, payload: dict) -> str:
    body = base64.b64encode(json.dumps(payload).encode()).decode()
    mac = hmac.new(key, f"{kind}:{body}".encode(), hashlib.sha256).hexdigest()
    return f"\n@@rowgym-harness {kind} {mac} {body}\n"


def _res(stderr: str, stdout: str = "", code: int = 0, timed_out: bool = False) -> ExecResult:
    return ExecResult(stdout=stdout, stderr=stderr, exit_code=code, timed_out=timed_out, duration_s=0.1)


def test_parse_accepts_only_records_signed_with_this_runs_key() -> None:
    call = HarnessCall(TASK, TASK.test_paths)
    good = _record(call.key, "started", {}) + _record(call.key, "finished", {"outcomes": {"a": "passed"}})
    run = call.parse(_res(good))
    assert run.started and run.outcomes == {"a": "passed"} and run.forged == 0
    other = HarnessCall(TASK, TASK.test_paths)
    forged = _record(call.key, "started", {}) + _record(other.key, "finished", {"outcomes": {"a": "passed"}})
    run = call.parse(_res(forged + "@@rowgym-harness finished zz\n"))
    assert run.started and run.finished is None and run.forged == 2
    run = call.parse(_res(good + _record(call.key, "finished", {"outcomes": {}})))
    assert run.forged == 1, "a second finished record is counted as forged"


class _FakeBox(Sandbox):
    def __init__(self, stderr_for_key) -> None:  # noqa: ANN001
        super().__init__("/nonexistent-rowgym-fake")
        self.stderr_for_key = stderr_for_key

    async def start(self) -> None:
        pass

    async def copy_in(self, local_dir, remote_dir="/workspace") -> None:  # noqa: ANN001
        conf = next(Path(local_dir).glob(".rowgym-harness-*.json"))
        self.key = bytes.fromhex(json.loads(conf.read_text())["key"])

    async def exec(self, cmd, timeout=None, cwd=None, env=None):  # noqa: ANN001, ANN201
        assert cmd[:4] == ["python3", "-I", "-B", "-c"] and cwd == "/" and env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] == "1"
        return _res(self.stderr_for_key(self.key))

    async def close(self) -> None:
        self.closed = True


class _FakeBoxes:
    def __init__(self, stderr_for_key) -> None:  # noqa: ANN001
        self.stderr_for_key = stderr_for_key

    async def acquire(self) -> Sandbox:
        return _FakeBox(self.stderr_for_key)


def _grade(stderr_for_key, tmp_path: Path, changes=None):  # noqa: ANN001, ANN202
    snap = tmp_path / "snap"
    (snap / "pkg").mkdir(parents=True, exist_ok=True)
    (snap / "pkg/__init__.py").write_text("X = 1\n")
    return asyncio.run(grade_changes(TASK, snap, changes or {}, _FakeBoxes(stderr_for_key)))  # type: ignore[arg-type]


def test_attribution(tmp_path: Path) -> None:
    both = {"tests/test_h.py::test_a": "passed", "tests/test_h.py::test_b": "passed"}
    g = _grade(lambda k: _record(k, "started", {}) + _record(k, "finished", {"outcomes": both, "tamper": []}),
               tmp_path)
    assert g.reward == 1.0 and g.flags == []
    # Never started: nothing of the repository ran yet, so the harness (grader) failed.
    with pytest.raises(GraderError):
        _grade(lambda k: "Traceback: no module named pytest\n", tmp_path)
    # Started, never finished: the submission ended the run; a verdict, reward 0.
    g = _grade(lambda k: _record(k, "started", {}), tmp_path)
    assert g.reward == 0.0 and g.flags == ["incomplete_report"]
    # Finished but tampering seen: reward 0, suspicious.
    g = _grade(lambda k: _record(k, "started", {}) + _record(k, "finished", {"outcomes": both,
                                                                            "tamper": ["x changed"]}), tmp_path)
    assert g.reward == 0.0 and "suspicious" in g.flags
    # A missing expected test id is a failed check.
    g = _grade(lambda k: _record(k, "started", {}) + _record(
        k, "finished", {"outcomes": {"tests/test_h.py::test_a": "passed"}}), tmp_path)
    assert g.reward == 0.0 and any(c.detail == "PASS_TO_PASS: missing" for c in g.checks)


@pytest.mark.parametrize("path,new,flagged", [
    ("pytest.py", True, True), ("py.py", True, True), ("_pytest/__init__.py", True, True),
    ("pluggy/__init__.py", True, True), ("x-1.0.dist-info/entry_points.txt", True, True),
    ("x.egg-info/PKG-INFO", True, True), ("x.egg-link", True, True), ("a.pth", True, True),
    ("pkg/sub/conftest.py", True, True), ("sitecustomize.py", True, True), ("pkg/__pycache__/a.pyc", True, True),
    ("pkg/a.pyc", True, True), ("pytest.ini", False, True), ("iniconfig.py", True, True), ("json.py", True, True),
    ("pkg/json.py", True, False), ("pkg/core.py", False, False), ("packaging/__init__.py", False, False),
    ("README.md", True, False),
])
def test_tooling_reason(path, new, flagged) -> None:
    assert (tooling_reason(path, new=new) is not None) is flagged


def test_split_guarded_pytest_sections() -> None:
    base = {"setup.cfg": b"[metadata]\nname = x\n", "pkg/a.py": b"1\n"}
    kept, tests, tooling = split_guarded(base, {"setup.cfg": b"[metadata]\nname = y\n", "pkg/a.py": b"2\n"})
    assert list(kept) == ["pkg/a.py"] and tests == ["setup.cfg"] and tooling == []
    kept, tests, tooling = split_guarded(base, {"setup.cfg": b"[tool:pytest]\naddopts = -p x\n"})
    assert [p for p, _ in tooling] == ["setup.cfg"]
    _, _, tooling = split_guarded({}, {"src/pytest.py": b""}, roots=("", "src"))
    assert tooling


# ------------------------------------------------------------------ the harness on the host's Python


def _run_harness(repo: Path, agent_files: list[str], test_files: list[str] = ()) -> tuple[dict | None, str]:
    key = os.urandom(32)
    conf = repo / ".conf.json"
    conf.write_text(json.dumps({"key": key.hex(), "root": str(repo), "paths": [str(repo)], "agent_files": agent_files,
                                "test_files": list(test_files),
                                "args": ["-q", "-p", "no:cacheprovider", "-o", "addopts=", "--rootdir", str(repo),
                                         "--import-mode=append", "tests"]}))
    env = {"PATH": os.environ["PATH"], "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    r = subprocess.run([sys.executable, "-I", "-c", HARNESS_SOURCE, str(conf)], cwd="/", env=env,
                       capture_output=True, text=True, timeout=120)
    assert not conf.exists(), "the harness deletes its config before the repository runs"
    call = HarnessCall(TASK, [])
    call.key = key
    run = call.parse(_res(r.stderr, r.stdout, r.returncode))
    assert run.started, r.stderr[-2000:]
    return run.finished, r.stdout


def _repo(tmp_path: Path, init: str) -> Path:
    repo = tmp_path / "repo"
    (repo / "pkg").mkdir(parents=True)
    (repo / "tests").mkdir()
    (repo / "pkg/__init__.py").write_text(textwrap.dedent(init) + "\ndef add(a, b):\n    return a - b\n")
    (repo / "tests/test_a.py").write_text("from pkg import add\n\ndef test_add():\n    assert add(1, 2) == 3\n")
    return repo


pytestmark_host = pytest.mark.redteam


@pytestmark_host
def test_harness_honest_run(tmp_path: Path) -> None:
    fin, out = _run_harness(_repo(tmp_path, ""), ["pkg/__init__.py"])
    assert fin is not None and fin["outcomes"] == {"tests/test_a.py::test_add": "failed"} and fin["tamper"] == []


@pytestmark_host
@pytest.mark.parametrize("init,expect", [
    ("import _pytest.runner as r\no = r.call_and_report\nr.call_and_report = lambda *a, **k: o(*a, **k)\n",
     "_pytest.runner.call_and_report"),
    ("import builtins\nbuiltins.AssertionError = type('E', (Exception,), {})\n", "builtins.AssertionError"),
    ("from _pytest.reports import TestReport\nTestReport.passed = True\n", "TestReport"),
    ("import sys\nsys.settrace(lambda *a: None)\nsys.settrace(None)\n", "settrace"),
    ("import sys, types\nsys.modules['_pytest.outcomes'] = types.ModuleType('x')\n", "_pytest.outcomes"),
])
def test_harness_detects_in_process_tampering(tmp_path: Path, init: str, expect: str) -> None:
    fin, _ = _run_harness(_repo(tmp_path, init), ["pkg/__init__.py"])
    assert fin is not None and any(expect in t for t in fin["tamper"]), fin


MANY_SHAPES = """
import functools
import unittest

import pytest

from pkg import add


def helper(x):
    return add(x, 0)


def deco(fn):
    @functools.wraps(fn)
    def wrapper(*a, **k):
        return fn(*a, **k)
    return wrapper


def test_plain():
    assert helper(2) == 2


def test_early_return_in_a_loop():
    for i in range(3):
        if i == 1:
            return
    raise AssertionError("unreachable")


def test_return_inside_with_and_finally():
    with open(__file__) as f:
        try:
            return f.read(1)
        finally:
            pass


def test_returns_a_value_from_a_nested_function():
    def inner():
        return 5
    assert inner() == 5
    return None


@deco
def test_decorated():
    assert add(0, 0) == 0


@pytest.mark.parametrize("x", [1, 2])
def test_parametrized(x):
    match x:
        case 1:
            return
        case _:
            assert x == 2


class TestClass:
    def test_method(self):
        assert helper(1) == 1


class TestUnit(unittest.TestCase):
    def test_unit(self):
        self.assertEqual(helper(3), 3)


class TestInherited(TestClass):
    pass


def _make_test():
    def made():
        assert add(2, 0) == 2
    return made


test_made_by_a_factory = _make_test()
test_lambda = lambda: None  # noqa: E731


def test_first_asyncio_import():
    import asyncio  # the stdlib's types.coroutine sets __code__ on its functions

    assert asyncio.sleep


def test_fails():
    assert add(1, 2) == 3


def test_fails_after_a_nested_return():
    def inner():
        return 1
    inner()
    assert add(1, 2) == 3
"""


@pytestmark_host
def test_harness_marks_every_shape_of_test(tmp_path: Path) -> None:
    """Each test runs the harness's marked code: tests that return early, inside ``with`` and ``finally``,
    under a decorator, in classes (inherited too) and ``unittest`` cases, made by a factory or a lambda pass
    verified (a missing mark would make them ``unverified``), failing ones fail, whatever their nested
    functions returned; the stdlib setting ``__code__`` (asyncio's first import) is no tampering."""
    repo = _repo(tmp_path, "")
    (repo / "tests/test_many.py").write_text(MANY_SHAPES)
    fin, out = _run_harness(repo, ["pkg/__init__.py"], ["tests/test_many.py"])
    assert fin is not None and fin["tamper"] == [], (fin, out[-3000:])
    outcomes = {k.split("::", 1)[1]: v for k, v in fin["outcomes"].items() if "test_many" in k}
    assert outcomes.pop("test_fails") == "failed" and outcomes.pop("test_fails_after_a_nested_return") == "failed"
    assert len(outcomes) == 13 and set(outcomes.values()) == {"passed"}, outcomes


@pytestmark_host
@pytest.mark.parametrize("payload,tests", [("FAKE_GLOBALS", None), ("PLAIN_IMPORT_AND_NO_TWIN", None),
                                           ("SWALLOW_FAILURES", "NOT_NAMED_BY_NODE_ID")])
def test_harness_marks_hold(tmp_path: Path, payload: str, tests: str | None) -> None:
    """A red-team pass against the marks: the test's marked code run over globals that make every assert
    hold (the mark counts only with the collected function's own module globals); the test file imported
    without the rewriter and the late compile of its plain variant made to fail (no marked code: never
    verified); tests whose node id does not name their code (found among all the file's code)."""
    import redteam_marks as R  # a sibling module (the test dir is on sys.path)

    repo = _repo(tmp_path, getattr(R, payload))
    if tests:
        (repo / "tests/test_a.py").write_text(getattr(R, tests))
    fin, out = _run_harness(repo, ["pkg/__init__.py"], ["tests/test_a.py"])
    assert fin is not None, out[-2000:]
    assert "passed" not in fin["outcomes"].values() and "unverified" in fin["outcomes"].values(), fin


@pytestmark_host
def test_harness_exit_at_import_leaves_no_finished_record(tmp_path: Path) -> None:
    fin, _ = _run_harness(_repo(tmp_path, "import os\nos._exit(0)\n"), ["pkg/__init__.py"])
    assert fin is None


@pytestmark_host
def test_harness_atexit_handlers_never_run(tmp_path: Path) -> None:
    init = "import atexit, os\natexit.register(lambda: os.write(1, b'ATEXIT-RAN'))\n"
    fin, out = _run_harness(_repo(tmp_path, init), ["pkg/__init__.py"])
    assert fin is not None and "ATEXIT-RAN" not in out


def test_sft_excludes_suspicious_verdicts(tmp_path: Path) -> None:
    from rowgym.rollouts.engine import CollectConfig, collect
    from rowgym.store import TrajectoryStore
    from rowgym.trainers.datasets import sft_conversations

    out = collect(CollectConfig(env_id="rowgym/ToolAPI-Retail-v0", agent="expert", split="train", episodes=2,
                                out=tmp_path / "run", progress=False)).out
    eps = list(TrajectoryStore(out).episodes())
    assert len(sft_conversations(eps)) == 2
    flagged = eps[0].model_copy(update={"verdict": eps[0].verdict.model_copy(update={"flags": ["suspicious"]})})
    kept = sft_conversations([flagged, eps[1]])
    assert [r["episode_id"] for r in kept] == [eps[1].episode_id]
