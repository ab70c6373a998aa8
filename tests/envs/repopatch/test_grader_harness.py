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
from collections.abc import Sequence
from pathlib import Path

import pytest

from rowgym.envs.repopatch.grading import HARNESS_SOURCE, HarnessCall, grade_changes
from rowgym.envs.repopatch.task import Base, RepoPatchTask, split_guarded, tooling_reason
from rowgym.errors import GraderError
from rowgym.sandboxes import ExecResult, Sandbox, SandboxError

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
        out = self.stderr_for_key(self.key)
        return out if isinstance(out, ExecResult) else _res(out)

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


def _run_harness_run(repo: Path, agent_files: list[str], test_files: Sequence[str] = ("tests/test_a.py",),  # noqa: ANN202
                     hide_tests: bool = False):
    """The harness on the host's Python against ``repo``; its records parsed (a :class:`HarnessRun`)."""
    key = os.urandom(32)
    conf = repo / ".conf.json"
    conf.write_text(json.dumps({"key": key.hex(), "root": str(repo), "paths": [str(repo)], "agent_files": agent_files,
                                "test_files": list(test_files), "hide_tests": hide_tests,
                                "args": ["-q", "-p", "no:cacheprovider", "-o", "addopts=", "--rootdir", str(repo),
                                         "--import-mode=append", "tests"]}))
    env = {"PATH": os.environ["PATH"], "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    r = subprocess.run([sys.executable, "-I", "-c", HARNESS_SOURCE, str(conf)], cwd="/", env=env,
                       capture_output=True, text=True, timeout=120)
    assert not conf.exists(), "the harness deletes its config before the repository runs"
    call = HarnessCall(TASK, [])
    call.key = key
    return call.parse(_res(r.stderr, r.stdout, r.returncode))


def _run_harness(repo: Path, agent_files: list[str], test_files: Sequence[str] = ()) -> tuple[dict | None, str]:
    run = _run_harness_run(repo, agent_files, test_files)
    assert run.started, run.res.stderr[-2000:]
    return run.finished, run.res.stdout


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
    """Each is a finding, at the end of the run or (the harness leaves at its first finding) before it: a patched
    runner also hands the reporter reports from outside pytest's own runner."""
    run = _run_harness_run(_repo(tmp_path, init), ["pkg/__init__.py"])
    assert any(expect in t or "outside pytest's runner" in t or "reach into the harness" in t
               for t in run.tamper), (run.tamper, run.finished)
    assert "passed" not in run.outcomes.values()


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
    run = _run_harness_run(repo, ["pkg/__init__.py"], ["tests/test_a.py"])
    assert run.started, run.res.stderr[-2000:]
    # a finding (the harness leaves at once), never a pass
    assert "passed" not in run.outcomes.values() and run.tamper, (run.outcomes, run.tamper)


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


# ------------------------------------------------------------------ reaching the harness's own key (red team)

# The code under test runs in the harness's process, so it can look for the function that signs the
# records (``emit``, whose closure holds the key's HMAC state) and write a `finished` record of its own,
# then leave before the harness writes its real one. Each payload finds it by another way in; the harness
# must sign a tamper finding the moment it sees that way used (before the payload gets control back).
FORGE = '''
def _forge(find):
    import ast, os, sys
    if "_pytest.main" not in sys.modules:
        return
    emit, conf = find()
    if emit is None:
        return
    outcomes = {}
    for rel in conf.get("test_files") or ["tests/test_a.py"]:
        for n in ast.parse(open(os.path.join(conf["root"], rel)).read()).body:
            if isinstance(n, ast.FunctionDef) and n.name.startswith("test"):
                outcomes[rel + "::" + n.name] = "passed"
    emit("finished", {"exit": 0, "error": None, "session_exit": 0, "outcomes": outcomes,
                      "collect_errors": [], "tamper": []})
    os._exit(0)

def _from_frames(f):
    while f is not None:
        if f.f_code.co_name == "_main" and "emit" in f.f_locals:
            return f.f_locals["emit"], f.f_locals["conf"]
        f = f.f_back
    return None, None
'''
WAYS_IN = {
    "gc": "import gc\n_forge(lambda: next(((o, o.__closure__) for o in gc.get_objects() if getattr(o, '__name__', '')"
          " == 'emit'), (None, None)) and _from_frames(__import__('sys')._getframe()))\n",
    "gc_referrers": "import gc, sys\n_forge(lambda: (gc.get_referrers(sys.modules['_pytest.main']), (None, None))[1])\n",
    "getframe": "import sys\n_forge(lambda: _from_frames(sys._getframe()))\n",
    "traceback_frame": "def _tb():\n    try:\n        raise ValueError\n    except ValueError as e:\n"
                       "        return _from_frames(e.__traceback__.tb_frame)\n_forge(_tb)\n",
    "inspect": "import inspect\n_forge(lambda: _from_frames(inspect.currentframe()))\n",
    "traceback_walk": "import traceback\n_forge(lambda: _from_frames(next(traceback.walk_stack(None))[0]))\n",
    "generator_frame": "def _g():\n    yield\n_forge(lambda: _from_frames(_g().gi_frame.f_back or __import__('sys')._getframe()))\n",
    "audit_hook": "import sys\n_seen = []\nsys.addaudithook(lambda e, a: _seen.append(a))\n"
                  "_forge(lambda: (None, None))\n",
    # a second round: the hook made to fail (the harness's globals are __main__'s), the frames taken by a
    # pool thread whose own stack is the standard library's, code made from bytes under an allowed file name
    "hook_made_to_fail": "import sys as _s\n_m = _s.modules['__main__']\n_m.sys = None\n_f = _s._getframe()\n"
                         "_m.sys = _s\n_forge(lambda: _from_frames(_f))\n",
    "pool_thread": "import sys, threading\nfrom concurrent.futures import ThreadPoolExecutor\n"
                   "with ThreadPoolExecutor(1) as ex:\n    _fr = ex.submit(sys._current_frames).result()\n"
                   "_forge(lambda: _from_frames(_fr[threading.main_thread().ident]))\n",
    # the traceback module's frames, taken by the package itself (walk_tb hands them to its caller), or their
    # locals read through it (capture_locals): formatting an exception is no finding, these are
    "walk_tb": "import traceback\ndef _walk():\n    try:\n        raise ValueError\n    except ValueError as e:\n"
               "        for f, _ in traceback.walk_tb(e.__traceback__):\n            return _from_frames(f)\n"
               "_forge(_walk)\n",
    "capture_locals": "import sys, traceback\ndef _cl():\n    try:\n        raise ValueError\n    except ValueError:\n"
                      "        traceback.TracebackException(*sys.exc_info(), capture_locals=True)\n"
                      "    return None, None\n_forge(_cl)\n",
    # a C iterator between the walker and the extractor has no frame of its own: map() hands each frame to a spy
    # (a red-team helper's first way through the formatting allowance: the frame, then `_main`'s kill switch)
    "walk_tb_through_map": "import traceback\ndef _mapped():\n    got = []\n    try:\n        raise ValueError\n"
                           "    except ValueError as e:\n        traceback.StackSummary.extract(map(lambda i: got.append("
                           "i[0]) or i, traceback.walk_tb(e.__traceback__)), lookup_lines=False)\n"
                           "    return _from_frames(got[0])\n_forge(_mapped)\n",
    # the same inside a real format_exc(): the module's islice swapped, a tracebacklimit set
    "format_exc_islice_swapped": "import itertools, sys, traceback\ndef _swapped():\n    got, real = [], itertools.islice\n"
                                 "    itertools.islice = lambda g, *a: map(lambda i: got.append(i[0]) or i, g) if len(a) "
                                 "== 1 else real(g, *a)\n    sys.tracebacklimit = 1000\n    try:\n"
                                 "        raise ValueError\n    except ValueError:\n        traceback.format_exc()\n"
                                 "    finally:\n        itertools.islice = real\n        del sys.tracebacklimit\n"
                                 "    return _from_frames(got[0]) if got else (None, None)\n_forge(_swapped)\n",
    # StackSummary.extract's relay generator, copied with a closure cell of the package's own that is swapped to the
    # walker just before the walker runs, while the relay really iterates map(spy, chain(swap, walker))
    "relay_cell_swapped": "import itertools, traceback, types\ndef _relayed():\n    got = []\n    try:\n"
                          "        raise ValueError\n    except ValueError as e:\n"
                          "        W = traceback.walk_tb(e.__traceback__)\n"
                          "    code = next(c for c in traceback.StackSummary.extract.__func__.__code__.co_consts\n"
                          "                if isinstance(c, types.CodeType))\n    cell = types.CellType()\n"
                          "    class Swap:\n        def __iter__(self):\n            return self\n"
                          "        def __next__(self):\n            cell.cell_contents = W\n"
                          "            raise StopIteration\n"
                          "    cell.cell_contents = map(lambda i: got.append(i[0]) or i, itertools.chain(Swap(), W))\n"
                          "    R = types.FunctionType(code, {}, 'extended_frame_gen', None, (cell,))()\n"
                          "    traceback.StackSummary._extract_from_extended_frame_gen(R, lookup_lines=False,"
                          " capture_locals=False)\n    return _from_frames(got[0]) if got else (None, None)\n"
                          "_forge(_relayed)\n",
    # a third round: a deque subclass of the package's own in the traceback module's place, drained by the
    # extractor with a negative limit before its loop (in C: the walker's caller looked like the extractor)
    "deque_in_the_module": "import traceback, types, collections as _c\nclass _Stash(_c.deque):\n    kept = []\n"
                           "    def __new__(cls, *a, **k):\n        self = super().__new__(cls)\n"
                           "        cls.kept.append(self)\n        return self\ndef _drained():\n"
                           "    old = traceback.collections\n"
                           "    traceback.collections = types.SimpleNamespace(deque=_Stash)\n    try:\n        try:\n"
                           "            raise ValueError\n        except ValueError as e:\n"
                           "            traceback.extract_tb(e.__traceback__, limit=-100)\n    finally:\n"
                           "        traceback.collections = old\n"
                           "    return _from_frames(_Stash.kept[-1][0][0]) if _Stash.kept else (None, None)\n"
                           "_forge(_drained)\n",
    # threading.settrace(fn): each new thread sets fn from threading's own code with no frame of the package's on its
    # stack, so fn was handed that thread's frames with no finding (the audit hook itself is never traced: CPython
    # turns tracing off in audit hooks, so these frames lead to the thread's bootstrap, not to `_main`)
    "threading_settrace": "import threading\n_seen = []\ndef _tr(frame, event, arg):\n    _seen.append(frame)\n"
                          "    return None\ndef _traced():\n    threading.settrace(_tr)\n"
                          "    t = threading.Thread(target=lambda: None)\n    t.start()\n    t.join()\n"
                          "    threading.settrace(None)\n    return _from_frames(_seen[0]) if _seen else (None, None)\n"
                          "_forge(_traced)\n",
    # a fourth round, through the standard library's own frame keeping: logging's currentframe returns the frame,
    # its findCaller hands each to a module global the package can rebind, doctest's debugger gives it to bdb
    # through `self` (a subclass of the package's), and threading's trace may be a bound method of a bdb subclass
    "logging_currentframe": "import logging\n_forge(lambda: _from_frames(logging.currentframe()))\n",
    "logging_internal_frame_swapped": "import logging\ndef _logged():\n    got, orig = [], logging._is_internal_frame\n"
                                      "    def spy(frame):\n        got.append(frame)\n        return orig(frame)\n"
                                      "    logging._is_internal_frame = spy\n    try:\n"
                                      "        logging.getLogger('x').findCaller()\n    finally:\n"
                                      "        logging._is_internal_frame = orig\n"
                                      "    return _from_frames(got[0]) if got else (None, None)\n_forge(_logged)\n",
    "doctest_debugger_subclass": "import doctest, io\nclass _Stop(Exception):\n    pass\n"
                                 "class _P(doctest._OutputRedirectingPdb):\n    def __setattr__(self, name, value):\n"
                                 "        if name == 'botframe' and value is not None:\n"
                                 "            value.f_trace = None\n            object.__setattr__(self, 'got', value)\n"
                                 "            raise _Stop\n        object.__setattr__(self, name, value)\n"
                                 "def _debugged():\n    p = _P(io.StringIO())\n    try:\n        p.set_trace()\n"
                                 "    except _Stop:\n        pass\n"
                                 "    return _from_frames(p.got) if hasattr(p, 'got') else (None, None)\n"
                                 "_forge(_debugged)\n",
    "threading_settrace_bound_method": "import bdb, threading\ngot = []\nclass _B(bdb.Bdb):\n"
                                       "    def __setattr__(self, name, value):\n"
                                       "        if name == 'botframe' and value is not None:\n"
                                       "            got.append(value)\n            raise SystemExit\n"
                                       "        object.__setattr__(self, name, value)\ndef _bound():\n    b = _B()\n"
                                       "    b.reset()\n    threading.settrace(b.trace_dispatch)\n    try:\n"
                                       "        t = threading.Thread(target=lambda: None)\n        t.start()\n"
                                       "        t.join()\n    finally:\n        threading.settrace(None)\n"
                                       "    return _from_frames(got[0]) if got else (None, None)\n_forge(_bound)\n",
    "code_from_bytes": "import marshal, os\n_t = os.path.join(os.path.dirname(os.__file__), 'collections', '__init__.py')\n"
                       "_b = marshal.dumps(compile('def grab():\\n    import sys\\n    return sys._getframe(1)\\n', "
                       "'Q' * len(_t), 'exec')).replace(('Q' * len(_t)).encode(), _t.encode())\n_ns = {}\n"
                       "exec(marshal.loads(_b), _ns)\n_forge(lambda: _from_frames(_ns['grab']()))\n",
}


@pytestmark_host
@pytest.mark.parametrize("way", sorted(WAYS_IN))
def test_reaching_the_harness_is_signed_at_once(tmp_path: Path, way: str) -> None:
    """Each way into the harness's frames or objects, from the package the tests import (the bug unfixed),
    leaves a signed tamper finding even where the payload then forges a `finished` record saying every test
    passed and exits: fails without the immediate `tamper` record (the forged record carries an empty list)."""
    run = _run_harness_run(_repo(tmp_path, FORGE + WAYS_IN[way]), ["pkg/__init__.py"])
    assert run.started
    assert any("reach into the harness" in t for t in run.tamper), (way, run.finished, run.res.stderr[-1500:])


@pytestmark_host
def test_forged_finished_record_is_graded_suspicious(tmp_path: Path) -> None:
    """What the host makes of such a run: a finished record saying every test passed, with no tamper findings
    (as a payload forges it), after a signed tamper record, is reward 0 and suspicious; a tamper record is no
    forgery (the harness writes one per finding) and one with a bad signature is."""
    both = {"tests/test_h.py::test_a": "passed", "tests/test_h.py::test_b": "passed"}
    note = {"note": "audit: reach into the harness: sys._getframe from /w/pkg/__init__.py while code the agent wrote runs"}
    g = _grade(lambda k: _record(k, "started", {}) + _record(k, "tamper", note) + _record(k, "tamper", note)
               + _record(k, "finished", {"outcomes": both, "tamper": []}), tmp_path)
    assert g.reward == 0.0 and "suspicious" in g.flags
    assert any("sys._getframe" in c.detail for c in g.checks if c.name == "pytest_tampering")
    assert not any("forged" in c.detail for c in g.checks if c.name == "pytest_tampering")
    g = _grade(lambda k: _record(k, "started", {}) + _record(os.urandom(32), "tamper", note)
               + _record(k, "finished", {"outcomes": both, "tamper": []}), tmp_path)
    assert g.reward == 0.0 and any("1 forged" in c.detail for c in g.checks if c.name == "pytest_tampering")


@pytestmark_host
def test_standard_library_frames_kept_to_themselves_are_not_findings(tmp_path: Path) -> None:
    """namedtuple, a TypeVar, an Enum, a warning and a log record all call sys._getframe for their own
    use: a fix that uses them is no finding (false positives would train a real fix as 0)."""
    init = ("import collections, enum, logging, typing, warnings\nP = collections.namedtuple('P', 'x y')\n"
            "T = typing.TypeVar('T')\nclass C(enum.Enum):\n    A = 1\nwarnings.warn('w')\n"
            "logging.getLogger('x').warning('y')\n")
    run = _run_harness_run(_repo(tmp_path, init), ["pkg/__init__.py"])
    assert run.finished is not None and run.tamper == [], run.tamper


@pytestmark_host
def test_the_reporter_reached_through_pytest_cannot_rewrite_outcomes(tmp_path: Path) -> None:
    """pytest's debugging plugin keeps the plugin manager in a class attribute: from there the package reaches the
    harness's reporter with no audited call and swapped its outcomes for a dict that writes "passed" for any
    status (reward 1.0, the bug unfixed, no finding). The reporter keeps no outcomes now: the audit hook does."""
    init = """
import sys as _sys
def _rig():
    pm = getattr(getattr(_sys.modules.get("_pytest.debugging"), "pytestPDB", None), "_pluginmanager", None)
    for p in (pm.get_plugins() if pm is not None else ()):
        if type(p).__qualname__.endswith("<locals>.Reporter"):
            class _AlwaysPassed(dict):
                def __setitem__(self, k, v):
                    dict.__setitem__(self, k, "passed")
            p.outcomes = _AlwaysPassed(getattr(p, "outcomes", {}))
_rig()
"""
    run = _run_harness_run(_repo(tmp_path, init), ["pkg/__init__.py"])
    # the reporter keeps no outcomes now: the finished record carries those the audit hook kept as pytest reported them
    assert run.outcomes == {"tests/test_a.py::test_add": "failed"}, run.outcomes


SIGNAL_FRAME = '''
import os, signal, sys
_found = []

def _search(f):
    """Every frame up the stack, for anything that signs: the function, the HMAC state, the key."""
    while f is not None:
        for name, v in f.f_locals.items():
            if name in ("emit", "inner", "outer", "key") or type(v).__name__ in ("sha256", "HASH"):
                _found.append(name)
        f = f.f_back

if "_pytest.main" in sys.modules:
    try:
        signal.signal(signal.SIGUSR1, lambda signum, frame: _search(frame))
        os.kill(os.getpid(), signal.SIGUSR1)
        signal.signal(signal.SIGUSR1, signal.SIG_DFL)
        # a timer firing while the audit hook runs (on the events raised below) hands the hook's own frame over
        signal.signal(signal.SIGALRM, lambda signum, frame: _search(frame))
        signal.setitimer(signal.ITIMER_REAL, 0.0001, 0.00003)
        for _i in range(300000):
            if _found:
                break
            sys.audit("x.y", _i)
        signal.setitimer(signal.ITIMER_REAL, 0)
        result = repr(sorted(set(_found)))
    except ValueError as e:  # signal only works in main thread
        result = "refused: " + str(e)
    with open(OUT, "w") as fh:  # pytest captures fd 2 while it collects: a file says what was found
        fh.write(result)
'''


@pytestmark_host
def test_a_frame_taken_without_an_audited_call_leads_to_no_key(tmp_path: Path) -> None:
    """A signal handler is handed the running frame (neither ``signal.signal`` nor ``signal.setitimer`` is audited),
    and a timer firing while the audit hook runs handed over the hook's own frame, whose locals hold the function that
    signs (reward 1.0 within a second, the bug unfixed). The tests now run in a thread of the harness's own, where
    ``signal.signal`` refuses: fails while pytest runs in the main thread."""
    out = tmp_path / "found.txt"
    run = _run_harness_run(_repo(tmp_path, f"OUT = {str(out)!r}\n" + SIGNAL_FRAME), ["pkg/__init__.py"])
    assert out.read_text().startswith("refused: "), f"the signal handler's frames hold {out.read_text()}"
    assert run.finished is not None and "passed" not in run.outcomes.values(), run.outcomes


@pytestmark_host
def test_records_raised_by_the_code_under_test_are_refused(tmp_path: Path) -> None:
    """The harness writes its records by raising an audit event; the same event raised by the package (a finished
    record saying the test passed) is not written, and is itself a signed finding."""
    init = ("import os, sys\nif '_pytest.main' in sys.modules:\n"
            "    sys.audit('rowgym.harness.record', 'finished', {'outcomes': {'tests/test_a.py::test_add': 'passed'},"
            " 'tamper': []})\n    os._exit(0)\n")
    run = _run_harness_run(_repo(tmp_path, init), ["pkg/__init__.py"])
    assert run.started and run.finished is None and run.outcomes == {}
    assert any("not the harness's" in t for t in run.tamper), run.tamper


# ------------------------------------------------------------------ round 4: liars, the hook's frame, the outcomes

LIARS = {
    # `add` returns a value that says it equals anything: every `==` assert passes with the bug unfixed
    "eq_always": "class _L:\n    def __eq__(self, o):\n        return True\n    __hash__ = object.__hash__\n"
                 "def add(a, b):\n    return _L()\n",
    # only to numbers: the probes always include one
    "eq_to_ints_only": "class _L:\n    def __eq__(self, o):\n        return type(o) is int\n    __hash__ = None\n"
                       "def add(a, b):\n    return _L()\n",
    # a str subclass (not plain data: its type is not str)
    "str_subclass": "class _S(str):\n    def __eq__(self, o):\n        return True\n    __hash__ = str.__hash__\n"
                    "def add(a, b):\n    return _S('x')\n",
    # yes only to what does not look like a made-up probe (a small number, a short text without odd characters):
    # the probes include values next to the other operand
    "looks_natural_only": "class _L:\n    def __eq__(self, o):\n        return (type(o) is int and abs(o) < 2**31) or "
                          "(type(o) is str and o.isprintable() and len(o) < 20)\n    __hash__ = None\n"
                          "def add(a, b):\n    return _L()\n",
    # a builtin as the method, in a class made by exec under no file name
    "builtin_eq_from_exec": "_ns = {}\nexec('class L:\\n    __eq__ = lambda s, o: bool(o)\\n    __hash__ = None\\n', _ns)\n"
                            "def add(a, b):\n    return _ns['L']()\n",
}


@pytestmark_host
@pytest.mark.parametrize("liar", sorted(LIARS))
def test_values_that_lie_about_equality_are_findings(tmp_path: Path, liar: str) -> None:
    """A value whose `==` says yes to what it was never meant to match passes `assert add(1, 2) == 3` with the bug
    unfixed (reward 1.0 before): the asserts' operands are probed, and the lie is a signed finding at once."""
    repo = _repo(tmp_path, "")
    (repo / "pkg/__init__.py").write_text(LIARS[liar])
    run = _run_harness_run(repo, ["pkg/__init__.py"])
    assert any("never meant to match" in t for t in run.tamper), (run.outcomes, run.tamper)


@pytestmark_host
def test_a_liar_inside_a_container_is_found(tmp_path: Path) -> None:
    repo = _repo(tmp_path, "")
    (repo / "pkg/__init__.py").write_text("class _L:\n    def __eq__(self, o):\n        return True\n"
                                          "def add(a, b):\n    return {'sum': [1, (_L(),)]}\n")
    (repo / "tests/test_a.py").write_text("from pkg import add\n\ndef test_add():\n"
                                          "    assert add(1, 2) == {'sum': [1, (3,)]}\n")
    run = _run_harness_run(repo, ["pkg/__init__.py"])
    assert any("never meant to match" in t for t in run.tamper), (run.outcomes, run.tamper)


HONEST_VALUES = '''
import dataclasses, datetime, enum, fractions, collections

@dataclasses.dataclass
class Point:
    x: int
    y: int

class Money:
    def __init__(self, cents):
        self.cents = cents
    def __eq__(self, other):
        if isinstance(other, Money):
            return self.cents == other.cents
        if isinstance(other, (int, float)):
            return self.cents == other * 100
        return NotImplemented
    def __lt__(self, other):
        return self.cents < other.cents
    __hash__ = None

class Bag:
    def __init__(self, *items):
        self.items = list(items)
    def __contains__(self, x):
        return x in self.items
    def __eq__(self, other):
        return isinstance(other, Bag) and sorted(self.items) == sorted(other.items)

class Color(enum.IntEnum):
    RED = 1

class Name(str):
    pass

Pair = collections.namedtuple("Pair", "a b")

def add(a, b):
    return a + b
'''

HONEST_TESTS = '''
import datetime, fractions, pytest
from pkg import Bag, Color, Money, Name, Pair, Point, add

def test_add():
    assert add(1, 2) == 3

def test_values():
    assert Point(1, 2) == Point(1, 2) and Point(1, 2) != Point(2, 1)
    assert Money(250) == 2.5 and Money(100) == Money(100) and Money(1) < Money(2)
    assert 3 in Bag(1, 2, 3) and 4 not in Bag(1, 2) and Bag(2, 1) == Bag(1, 2)
    assert Color.RED == 1 and Color.RED < 5
    assert Name("abc") == "abc" and Name("b") > "a"
    assert Pair(1, 2) == (1, 2)
    assert fractions.Fraction(1, 2) == 0.5 and datetime.date(2020, 1, 2) > datetime.date(2020, 1, 1)
    assert 0.1 + 0.2 == pytest.approx(0.3) and [0.1 + 0.2] == pytest.approx([0.3])
    assert {"k": Point(0, 0)} == {"k": Point(0, 0)}
    assert all(add(i, i) == 2 * i for i in range(3))
'''


@pytestmark_host
def test_honest_values_are_not_findings(tmp_path: Path) -> None:
    """Genuine comparisons of everyday kinds (a dataclass, a class equal to numbers, a container, an IntEnum, a str
    subclass, a namedtuple, Fraction, dates, pytest.approx) refuse the probes: a real fix is never a finding."""
    repo = _repo(tmp_path, "")
    (repo / "pkg/__init__.py").write_text(HONEST_VALUES)
    (repo / "tests/test_a.py").write_text(HONEST_TESTS)
    run = _run_harness_run(repo, ["pkg/__init__.py"])
    assert run.tamper == [] and run.outcomes == {"tests/test_a.py::test_add": "passed",
                                                 "tests/test_a.py::test_values": "passed"}, (run.outcomes, run.tamper)


@pytestmark_host
def test_code_run_inside_the_audit_hook_is_a_finding(tmp_path: Path) -> None:
    """The hook reads what an audited call was handed (`compile`'s file name); a str subclass whose `__str__` takes
    the frame above it ran inside the hook, which answered no event while it ran, and found the function that signs
    there (reward 1.0 before). An event raised by such code inside the hook is a signed finding."""
    init = '''
import os, sys
_got = []
class _S(str):
    def __str__(self):
        f = sys._getframe(1)
        while f is not None:
            if "emit" in f.f_locals:
                _got.append(f.f_locals["emit"])
                break
            f = f.f_back
        return str.__str__(self)
if "_pytest.main" in sys.modules:
    compile("x = 1", _S("/nowhere/x.py"), "exec")
    if _got:
        _got[0]("finished", {"exit": 0, "error": None, "session_exit": 0,
                             "outcomes": {"tests/test_a.py::test_add": "passed"}, "collect_errors": [], "tamper": []})
        os._exit(0)
'''
    run = _run_harness_run(_repo(tmp_path, init), ["pkg/__init__.py"])
    # the hook no longer calls into what an audited call was handed (exact types only); code that runs inside it
    # anyway and takes a frame is a finding (test_nothing_reachable_decides_an_outcome)
    assert "passed" not in run.outcomes.values(), (run.finished, run.tamper)


FLIP_FROM_A_THREAD = '''
import sys as _sys, threading as _th
def _rig():
    pm = getattr(getattr(_sys.modules.get("_pytest.debugging"), "pytestPDB", None), "_pluginmanager", None)
    for p in (pm.get_plugins() if pm is not None else ()):
        if type(p).__qualname__.endswith("<locals>.Reporter"):
            def flip(p=p):
                while not p.checked:
                    pass
                for k in list(p.outcomes):
                    p.outcomes[k] = "passed"
            _th.Thread(target=flip, daemon=True).start()
            return
if "_pytest.main" in _sys.modules:
    _rig()
'''


@pytestmark_host
def test_outcomes_rewritten_after_the_tests_ran_do_not_count(tmp_path: Path) -> None:
    """A thread of the package waits for the session to end and writes `passed` into the reporter's outcomes (the
    same dict, so no container swapped) before the harness writes them: reward 1.0 before. The finished record now
    carries the outcomes the hook merged as pytest reported them, and says the reporter's differ."""
    run = _run_harness_run(_repo(tmp_path, FLIP_FROM_A_THREAD), ["pkg/__init__.py"])
    assert "passed" not in run.outcomes.values(), run.outcomes


FAKE_OUTCOMES = '''
import sys as _sys
def _rig():
    from _pytest.reports import TestReport
    node = "tests/test_a.py::test_add"
    _sys.audit("rowgym.harness.outcome", node, "call", "passed")
    pm = _sys.modules["_pytest.debugging"].pytestPDB._pluginmanager
    for p in pm.get_plugins():
        if type(p).__qualname__.endswith("<locals>.Reporter"):
            import weakref
            class _T:
                pass
            t = _T()
            # the reporter's own method, called with a real report: directly, and from a finalizer (no agent frame)
            for when in ("setup", "call", "teardown"):
                rep = TestReport(node, ("tests/test_a.py", 0, "test_add"), {}, "passed", None, when)
                weakref.finalize(t, p.pytest_runtest_logreport, rep)
            p.pytest_runtest_logreport(TestReport(node, ("tests/test_a.py", 0, "test_add"), {}, "passed", None, "call"))
            _sys.modules["pkg"]._keep = t
def add(a, b):
    import sys
    _rig()
    del sys.modules["pkg"]._keep  # the finalizers run now, inside the test's call phase
    return a - b
'''


@pytestmark_host
def test_outcomes_reported_by_the_code_under_test_are_refused(tmp_path: Path) -> None:
    """An outcome event raised by the package, and the reporter's own method called by it directly and from
    finalizers (whose stack holds no agent frame) with real `passed` reports: none counts, each is a finding."""
    repo = _repo(tmp_path, "")
    (repo / "pkg/__init__.py").write_text(FAKE_OUTCOMES)
    run = _run_harness_run(repo, ["pkg/__init__.py"])
    assert "passed" not in run.outcomes.values(), (run.outcomes, run.res.stderr[-2000:])
    assert any("reported from outside pytest's runner" in t for t in run.tamper), run.tamper


# ------------------------------------------------------------------ round 5: the harness's state out of reach

CALLER_AWARE_LIAR = '''
import warnings

def _caller_file():
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        warnings.warn("x", stacklevel=3)  # _caller_file -> __eq__ -> whoever compares
    return w[0].filename if w else "<string>"

class _Liar:
    def __eq__(self, other):
        return _caller_file() != "<string>"  # yes to the test's own code, no to the harness's probes
    def __ne__(self, other):
        return _caller_file() == "<string>"
    __hash__ = object.__hash__

def add(a, b):
    return _Liar()
'''

CENTRE_INFERRING_LIAR = '''
class _Liar:
    def __init__(self):
        self.seen = []
    def _centre(self, x):
        s = self.seen
        return type(x) is int and (x + 1) in s and (x - 1) in s and (-x - 7) in s
    def __eq__(self, other):
        r = self._centre(other)  # yes only to the value the probes' near values point at
        self.seen.append(other)
        return r
    def __ne__(self, other):
        return not self == other
    __hash__ = object.__hash__

def add(a, b):
    return _Liar()
'''

RELABEL_THE_REPORT = '''
import _pytest.debugging, _pytest.terminal

def _relabel(report):
    if report.when == "call" and report.failed:
        report.outcome, report.longrepr, report.when = "passed", None, "teardown"

_pm = _pytest.debugging.pytestPDB._pluginmanager
_Impl = type(_pm.hook.pytest_runtest_logreport.get_hookimpls()[0])
_pm.hook.pytest_runtest_logreport._add_hookimpl(_Impl(_pytest.terminal, "terminalreporter", _relabel, {
    "hookwrapper": False, "wrapper": False, "optionalhook": False, "tryfirst": False, "trylast": False,
    "specname": None}))

def add(a, b):
    return a - b
'''

ANSWER_FOR_THE_TEST = '''
import _pytest.debugging, _pytest.python

def _handled(pyfuncitem):
    return True  # first result: pytest's own implementation never calls the test

_pm = _pytest.debugging.pytestPDB._pluginmanager
_Impl = type(_pm.hook.pytest_runtest_logreport.get_hookimpls()[0])
_pm.hook.pytest_pyfunc_call._add_hookimpl(_Impl(_pytest.python, "python", _handled, {
    "hookwrapper": False, "wrapper": False, "optionalhook": False, "tryfirst": False, "trylast": False,
    "specname": None}))

def add(a, b):
    return a - b
'''

REBIND_EVERYTHING_REACHABLE = '''
import _pytest.assertion.rewrite as _R, _pytest.debugging as _D

def _yes(*a, **k):
    return True

def _rig():
    todo = [_R._rewrite_test]
    for p in _D.pytestPDB._pluginmanager.get_plugins():
        if type(p).__qualname__.endswith("<locals>.Reporter"):
            todo += [getattr(v, "__func__", v) for v in vars(type(p)).values() if callable(v)]
    seen = set()
    while todo:
        f = todo.pop()
        if id(f) in seen or not hasattr(f, "__closure__"):
            continue
        seen.add(id(f))
        for cell in f.__closure__ or ():
            try:
                v = cell.cell_contents
            except ValueError:
                continue
            if callable(v) and hasattr(v, "__closure__"):
                todo.append(v)
            elif isinstance(v, (set, dict, list)):
                v.clear()  # marks, sites, outcomes, sources, findings: whatever the harness keeps
            if callable(v):
                cell.cell_contents = _yes
        if getattr(f, "__defaults__", None):
            f.__defaults__ = tuple(_yes for _ in f.__defaults__)
    return seen

_rig()

def add(a, b):
    return a - b
'''


@pytestmark_host
@pytest.mark.parametrize("payload", ["CALLER_AWARE_LIAR", "CENTRE_INFERRING_LIAR", "RELABEL_THE_REPORT",
                                     "ANSWER_FOR_THE_TEST", "REBIND_EVERYTHING_REACHABLE"])
def test_nothing_reachable_decides_an_outcome(tmp_path: Path, payload: str) -> None:
    """A fifth round got reward 1.0 seven ways, all from what the code under test reaches without an audited call:
    a liar that says yes only when the test's own code compares (it asks `warnings` who calls) or only to the value
    the probes' near values point at; a plugin slipped into pytest's hook caller that relabels a failed call report
    a passed teardown, or answers for the test without running it (and adds the test to the marks' set, read from
    a closure); closure cells of the harness's functions rebound (the probe switched off, a test file's bytes
    swapped before the harness compiled them). Comparisons, marks, the test files and the outcomes now live in the
    audit hook alone: no run of these is a pass without a finding."""
    repo = _repo(tmp_path, "")
    (repo / "pkg/__init__.py").write_text(globals()[payload])
    run = _run_harness_run(repo, ["pkg/__init__.py"])
    assert run.outcomes.get("tests/test_a.py::test_add") != "passed" or run.tamper, (run.outcomes, run.tamper)
    assert run.finished is not None or run.started, run.res.stderr[-1500:]


@pytestmark_host
def test_functions_pytest_holds_close_over_nothing(tmp_path: Path) -> None:
    """What pytest's modules and the reporter hold of the harness forwards to the audit hook through `sys.audit` held
    as a constant of its code: no closure cell, default or global stands between them and the hook."""
    init = '''
import _pytest.assertion.rewrite as _R, _pytest.debugging as _D, json, os
_out = {"rewrite": [_R._rewrite_test.__closure__ is None, _R._rewrite_test.__defaults__ is None]}
for p in _D.pytestPDB._pluginmanager.get_plugins():
    if type(p).__qualname__.endswith("<locals>.Reporter"):
        for name in ("pytest_runtest_logreport",):
            f = getattr(type(p), name)
            _out[name] = [f.__closure__ is None, f.__code__.co_names]
open(OUT, "w").write(json.dumps(_out))
'''
    out = tmp_path / "out.json"
    _run_harness_run(_repo(tmp_path, f"OUT = {str(out)!r}\n" + init), ["pkg/__init__.py"])
    got = json.loads(out.read_text())
    assert got["rewrite"] == [True, True] and got["pytest_runtest_logreport"] == [True, []], got


# ------------------------------------------------------------------ round 5, process level

@pytestmark_host
@pytest.mark.parametrize("payload", ["FD_HIJACK", "FORK_SIGNAL", "EXEC_LAUNDERED", "FLOOD", "PROC_SELF_MEM",
                                     "LRU_INSPECT_IN_HOOK"])
def test_process_level_forgeries_are_not_passes(tmp_path: Path, payload: str) -> None:
    """Each got reward 1.0 before (redteam_process.py says how): the record fd pointed at a pipe with `os.dup2` (not
    audited) so the finding went nowhere; a forked child, where signal handlers work again, catching the hook's frame;
    `add` defined by `exec` so no frame of an agent's file was on the stack; a flood of output around the finding so
    the sandbox's 512 KiB head/tail cut it out; the key read from `/proc/self/mem`; `inspect.stack` cached inside
    the hook. Now: the harness leaves at its first finding, checks its record fd, writes nothing from a fork, counts
    code of no file as the agent's, is not dumpable, and calls nothing of what it is handed."""
    import redteam_process as P  # a sibling module (the test dir is on sys.path)

    repo = _repo(tmp_path, "")
    (repo / "pkg/__init__.py").write_text(P.PRELUDE + getattr(P, payload) + "\ndef add(a, b):\n    return a - b\n"
                                          if payload != "EXEC_LAUNDERED" else P.PRELUDE + P.EXEC_LAUNDERED)
    run = _run_harness_run(repo, ["pkg/__init__.py"])
    assert run.outcomes.get("tests/test_a.py::test_add") != "passed" or run.tamper, (run.outcomes, run.tamper)
    assert not (run.finished and run.finished.get("outcomes") and not run.tamper and run.forged == 0 and all(
        v == "passed" for v in run.finished["outcomes"].values())), run.finished


HONEST_FIXES = {
    # importing a standard module not loaded yet loads its bytecode through marshal.loads (not code from bytes)
    "imports": "import fractions, hmac, statistics, decimal, csv\ndef add(a, b):\n    return a + b\n",
    # a background thread in the hook must not make the tests' thread's events look nested
    "thread": "import threading\ndef _poll():\n    while True:\n        with open('/dev/null'):\n            pass\n"
              "threading.Thread(target=_poll, daemon=True).start()\n"
              "def add(a, b):\n    for _ in range(2000):\n        with open('/dev/null'):\n            pass\n"
              "    return a + b\n",
    # an exception formatted by the traceback module (a fix's log.exception in an except): the frames it reads
    # never leave it; this was a finding (any frame read while the agent's code runs)
    "traceback_formatted": "import logging, sys, traceback\n_log = logging.getLogger('pkg')\n"
                           "def add(a, b):\n    try:\n        int('x')\n    except ValueError:\n"
                           "        text = traceback.format_exc()\n        _log.exception('parse failed')\n"
                           "        traceback.extract_tb(sys.exc_info()[2])\n"
                           "        ''.join(traceback.TracebackException(*sys.exc_info()).format())\n"
                           "        assert 'ValueError' in text\n    return a + b\n",
}


@pytestmark_host
@pytest.mark.parametrize("fix", sorted(HONEST_FIXES))
def test_honest_fixes_are_not_findings(tmp_path: Path, fix: str) -> None:
    """False positives the process-level round found (a real fix graded 0): fails on the harness before it."""
    repo = _repo(tmp_path, "")
    (repo / "pkg/__init__.py").write_text(HONEST_FIXES[fix])
    run = _run_harness_run(repo, ["pkg/__init__.py"])
    assert run.outcomes == {"tests/test_a.py::test_add": "passed"} and run.tamper == [], (run.outcomes, run.tamper)


def test_exit_126_after_the_harness_started_is_the_submissions(tmp_path: Path) -> None:
    """The package wrote "could not start" and left with exit 126 (the sandbox's own code for a command that did not
    start): grading raised a SandboxError, which RL drops, instead of scoring the loss. After a signed `started`
    record it is the submission's: reward 0."""
    g = _grade(lambda k: _res(_record(k, "started", {}) + "rowgym: could not start\n", code=126), tmp_path)
    assert g.reward == 0.0 and "incomplete_report" in g.flags
    with pytest.raises(SandboxError):  # before `started`: the command itself did not start
        _grade(lambda k: _res("rowgym: could not start\n", code=126), tmp_path)


@pytestmark_host
@pytest.mark.parametrize("payload", ["BDB_TRACE", "READ_THE_HIDDEN_TESTS", "READ_THE_TESTS_CODE"])
def test_answers_taken_from_the_tests_are_not_passes(tmp_path: Path, payload: str) -> None:
    """A sixth round got reward 1.0 two ways: a `bdb.Bdb` subclass in the package set a trace through `bdb.py` (a
    trace set by the image's code was allowed) and rewrote the assert's result in the test's frame; and the package
    read the hidden test files at import and answered each call with the value the assert expects (plain data, so
    no probe). Now a trace set while code the agent wrote runs, or running while a graded test compares, is a
    finding; grading leaves only the test files' line count on disk once the harness has read them; and the code
    of a collected test function (its constants are the answers) read by that code is a finding."""
    import redteam_process as P  # a sibling module (the test dir is on sys.path)

    repo = _repo(tmp_path, "")
    (repo / "pkg/__init__.py").write_text(getattr(P, payload))
    run = _run_harness_run(repo, ["pkg/__init__.py"], hide_tests=True)
    assert run.outcomes.get("tests/test_a.py::test_add") != "passed" or run.tamper, (run.outcomes, run.tamper)



@pytestmark_host
@pytest.mark.parametrize("payload,written", [("RUNTIME_REPO_FILE", "pkg/_written_at_run_time.py"),
                                             ("RUNTIME_BYTECODE", "pkg/__pycache__")])
def test_code_written_into_the_repository_while_the_tests_run_is_the_agents(tmp_path: Path, payload: str,
                                                                            written: str) -> None:
    """A module the package writes into the repository as the tests run, then imports (its source, or bytecode for
    an untouched module of the repository), counted as an untouched repository file (the test author's): from it
    the graded test's code constants were read with no finding (reward 1.0, the bug unfixed). A repository file
    created or changed after the harness started, and code loaded from such bytecode, is the agent's."""
    import redteam_process as P

    repo = _repo(tmp_path, "")
    (repo / "pkg/util.py").write_text("def add(a, b):\n    return a - b\n")  # untouched: the repository's own
    (repo / "pkg/__init__.py").write_text(getattr(P, payload))
    run = _run_harness_run(repo, ["pkg/__init__.py"], hide_tests=True)
    assert (repo / written).exists(), run.res.stderr[-2000:]  # the payload ran
    assert run.outcomes.get("tests/test_a.py::test_add") != "passed" or run.tamper, (run.outcomes, run.tamper)
    assert any("graded test read" in t for t in run.tamper), run.tamper

NAME_OPERAND_TESTS = {
    # pytest's rewriter leaves a bare name as it is: the comparison has no @py_assert temporary on that side
    "name": "from pkg import add\n\ndef test_add():\n    result = add(1, 2)\n    assert result == 3\n",
    "param": "import pytest\nfrom pkg import add\n\n@pytest.mark.parametrize('a,b,expected', [(1, 2, 3)])\n"
             "def test_add(a, b, expected):\n    assert add(a, b) == expected\n",
}


@pytestmark_host
@pytest.mark.parametrize("shape", sorted(NAME_OPERAND_TESTS))
def test_a_liar_compared_with_a_name_is_found(tmp_path: Path, shape: str) -> None:
    """Only comparisons of two @py_assert temporaries went through the hook, so `result == 3` and a parametrized
    `== expected` were never probed (reward 1.0 for a value whose __eq__ always says yes)."""
    repo = _repo(tmp_path, "")
    (repo / "pkg/__init__.py").write_text(LIARS["eq_always"])
    (repo / "tests/test_a.py").write_text(NAME_OPERAND_TESTS[shape])
    run = _run_harness_run(repo, ["pkg/__init__.py"])
    assert any("never meant to match" in t for t in run.tamper), (run.outcomes, run.tamper)


@pytestmark_host
def test_code_under_a_file_name_that_is_nobodys_is_the_agents(tmp_path: Path) -> None:
    """`add` compiled under "/opt/pkg_impl.py" was nobody's code, so from it a liar compiled under an image file name
    made no finding, and inside the hook's probes read which trial was the real comparison (reward 1.0). Only the
    image, an untouched repository file or a real frozen module is not the agent's."""
    import redteam_process as P

    repo = _repo(tmp_path, "")
    (repo / "pkg/__init__.py").write_text(P.NEUTRAL_FILENAME)
    run = _run_harness_run(repo, ["pkg/__init__.py"])
    assert run.outcomes.get("tests/test_a.py::test_add") != "passed", (run.outcomes, run.tamper)
    # the payload ran (it once stopped at a syntax error of its own, which proved nothing) and was seen
    assert any("compiled as" in t or "reach into the harness" in t for t in run.tamper), run.tamper


HONEST_TESTS_MORE = {
    # the test's own thread raises: its traceback is printed from that thread, with no agent code on its stack
    "thread_raises": "import threading\nfrom pkg import add\n\ndef test_add():\n"
                     "    t = threading.Thread(target=lambda: 1 / 0)\n    t.start(); t.join()\n    assert add(1, 2) == 3\n",
    # a test's own always-equal helper (toolz's tests have one) is a wildcard on purpose: the test author's
    "authors_wildcard": "from pkg import add\n\nclass AlwaysEquals:\n    def __eq__(self, other):\n        return True\n"
                        "    def __ne__(self, other):\n        return False\n\ndef test_add():\n"
                        "    assert add(1, 2) == 3\n    assert [add(1, 2)] == [AlwaysEquals()]\n",
    # a test's dict subclass with its own __eq__ and the dict's __ne__ says no to both (no lie)
    "eq_without_ne": "from pkg import add\n\nclass D(dict):\n    def __eq__(self, other):\n"
                     "        return isinstance(other, D) and dict.__eq__(self, other)\n\ndef test_add():\n"
                     "    assert add(1, 2) == 3\n    assert D(a=add(1, 2)) == D(a=3)\n    assert not (D(a=3) == {'a': 3})\n",
    # pytest.approx with a tolerance matches values near the expected one, rightly
    "approx_tolerance": "import pytest\nfrom pkg import add\n\ndef test_add():\n"
                        "    assert add(99, 0) == pytest.approx(100, abs=2)\n    assert add(95, 0) == pytest.approx(100, rel=0.1)\n",
}


@pytestmark_host
@pytest.mark.parametrize("shape", sorted(HONEST_TESTS_MORE))
def test_honest_tests_are_not_findings(tmp_path: Path, shape: str) -> None:
    """False positives of the sixth round (a real fix graded 0): fail on the harness before."""
    repo = _repo(tmp_path, "")
    (repo / "pkg/__init__.py").write_text("def add(a, b):\n    return a + b\n")
    (repo / "tests/test_a.py").write_text(HONEST_TESTS_MORE[shape])
    run = _run_harness_run(repo, ["pkg/__init__.py"])
    assert run.outcomes == {"tests/test_a.py::test_add": "passed"} and run.tamper == [], (run.outcomes, run.tamper)


UNITTEST_STYLE = ("import unittest\nfrom pkg import add\n\nclass T(unittest.TestCase):\n    def test_add(self):\n"
                  "        self.assertEqual(add(1, 2), 3)\n        self.assertNotEqual(add(1, 2), 4)\n")


@pytestmark_host
@pytest.mark.parametrize("init,want", [(LIARS["eq_always"], "finding"), ("def add(a, b):\n    return a + b\n", "passed"),
                                       ("def add(a, b):\n    return a - b\n", "failed")])
def test_unittest_assert_equal_compares_in_the_hook(tmp_path: Path, init: str, want: str) -> None:
    """unittest's assertEqual compares in unittest's own code, which the liar passed (reward 1.0): its comparisons are
    made by the hook too; a real fix still passes and the bug still fails, with unittest's own message."""
    repo = _repo(tmp_path, "")
    (repo / "pkg/__init__.py").write_text(init)
    (repo / "tests/test_a.py").write_text(UNITTEST_STYLE)
    run = _run_harness_run(repo, ["pkg/__init__.py"])
    if want == "finding":
        assert any("never meant to match" in t for t in run.tamper), (run.outcomes, run.tamper)
    else:
        assert run.outcomes == {"tests/test_a.py::T::test_add": want} and run.tamper == [], (run.outcomes, run.tamper)
        assert want == "passed" or "-1 != 3" in run.res.stdout


ROUND7_TESTS = {
    "canonical": "from pkg import add\n\ndef test_add():\n    assert add(1, 2) == 3\n",
    "nested": "from pkg import add\n\ndef test_add():\n    assert add(1, 2) == {'sum': 3}\n",
    "approx": "import pytest\nfrom pkg import add\n\ndef test_add():\n    assert add(1, 2) == pytest.approx(3)\n",
    "unittest_nested": "import unittest\nfrom pkg import add\n\nclass T(unittest.TestCase):\n    def test_add(self):\n"
                       "        self.assertEqual(add(1, 2), {'sum': 3})\n",
}


@pytestmark_host
@pytest.mark.parametrize("payload,shape", [("ASK_THE_REWRITER", "canonical"), ("RUN_THE_TEST_WITH_A_SPY", "canonical"),
                                           ("NATURAL_LIAR", "nested"), ("NATURAL_LIAR", "approx"),
                                           ("NATURAL_LIAR", "unittest_nested")])
def test_round7_attacks_are_not_passes(tmp_path: Path, payload: str, shape: str) -> None:
    """A seventh round got reward 1.0 these ways: the package asked the harness's rewriter forwarder for the test
    file's compiled code (its constants are the answers); it ran the test itself with a spy that learned the expected
    value (the one value only `==` was asked about); a liar that says yes to anything natural-looking, inside a
    container or against `pytest.approx` (no values near the expected one were asked there). Now the forwarder
    answers pytest's importer only, a collected test run by the agent's code is a finding, `!=` is asked with every
    `==`, and values at the same place in the other operand (or an approx's expected value) give the near values."""
    import redteam_process as P

    repo = _repo(tmp_path, "")
    (repo / "pkg/__init__.py").write_text(getattr(P, payload))
    (repo / "tests/test_a.py").write_text(ROUND7_TESTS[shape])
    run = _run_harness_run(repo, ["pkg/__init__.py"], hide_tests=True)
    assert not any(v == "passed" for v in run.outcomes.values()) or run.tamper, (run.outcomes, run.tamper)


@pytestmark_host
def test_an_array_compared_elementwise_is_no_finding(tmp_path: Path) -> None:
    """`(got == want).all()`: the comparison's own result (an array, all C) goes back to the test, not its truth,
    which an array refuses to give (a false positive of the seventh round: a real fix graded 0)."""
    import numpy  # noqa: F401 - a dependency of rowgym

    repo = _repo(tmp_path, "")
    (repo / "pkg/__init__.py").write_text("import numpy as np\ndef add(a, b):\n    return np.add(a, b)\n")
    (repo / "tests/test_a.py").write_text("import numpy as np\nfrom pkg import add\n\ndef test_add():\n"
                                          "    assert (add([1, 2], [3, 4]) == np.array([4, 6])).all()\n")
    run = _run_harness_run(repo, ["pkg/__init__.py"], hide_tests=True)
    assert run.outcomes == {"tests/test_a.py::test_add": "passed"} and run.tamper == [], (run.outcomes, run.tamper)


def _compare_fn(seed: int = 1):  # noqa: ANN202
    """The harness's comparison (``_make_tests``' ``compare``), loaded from its source with a seeded generator."""
    import ast as ast_module
    import importlib.util
    import random
    import types
    import warnings

    import _pytest.assertion.rewrite as rewrite

    ns: dict = {"__name__": "harness_under_test"}
    exec(compile(HARNESS_SOURCE, "harness", "exec"), ns)
    return ns["_make_tests"]({}, "/nonexistent", os, ast_module, types, warnings, importlib.util.source_hash,
                             rewrite.rewrite_asserts, random.Random(seed), sys.audit, True, frozenset(),
                             lambda name: False)[3]


def test_a_genuine_number_is_never_called_a_liar() -> None:
    """A decoy's own near values could land on the expected value (-c - 7 for the decoy c = -10 is 3), so a genuine
    Fraction subclass equal to 3 was 'a liar' now and then (2 of 134 gold patches graded 0 in one verify run)."""
    import fractions

    class Int(fractions.Fraction):
        pass

    compare = _compare_fn()
    for k in range(8):
        for _ in range(3000):
            truth, error, lie = compare(Int(k), k, "==")
            assert truth is True and error is None and lie is None, (k, lie)


def test_a_liar_inferring_the_expected_value_rarely_wins() -> None:
    """CENTRE_INFERRING_LIAR says yes only to a value whose near values it has already been asked about: with two
    decoys it won 2.7% of comparisons (a reward now and then, which RL finds, and a flaky red-team test). With six
    decoys and the real comparison asked twice it wins ~0.03%: under 1% of 3000 here (2.7% would be ~80)."""
    compare = _compare_fn()
    ns: dict = {}
    exec(CENTRE_INFERRING_LIAR, ns)
    wins = 0
    for _ in range(3000):
        truth, error, lie = compare(ns["add"](1, 2), 3, "==")
        wins += truth is True and lie is None
    assert wins < 30, wins


@pytestmark_host
@pytest.mark.parametrize("payload", ["FINALIZER_FROM_C", "THREAD_TARGET_FROM_C", "FINALIZER_THROUGH_INSPECT",
                                     "THREAD_GETINNERFRAMES", "THREAD_WALK_TB"])
def test_frames_taken_from_c_are_findings(tmp_path: Path, payload: str) -> None:
    """A fifth round took frames with no frame of the agent's on the stack: `sys._getframe` called from C by a
    callable the package set up (a finalizer run by the garbage collector inside pytest's collection, a thread target),
    so only the image's frames were below it; the first reached `_main` (each payload's `add` answers 3 once it has
    frames). Now a frame-reaching call is allowed without the agent's code on the stack only when the Python frame on
    top names what was called. A sixth round started a thread with a C target that read the package's own traceback
    through image code naming `tb_frame` (inspect.getinnerframes, traceback.walk_tb): a thread the harness did not
    start is looked at like the agent's code now."""
    import redteam_process as P

    repo = _repo(tmp_path, "")
    (repo / "pkg/__init__.py").write_text(getattr(P, payload))
    run = _run_harness_run(repo, ["pkg/__init__.py"], hide_tests=True)
    assert run.outcomes.get("tests/test_a.py::test_add") != "passed", (run.outcomes, run.tamper)
    assert any("reach into the harness" in t for t in run.tamper), run.tamper
