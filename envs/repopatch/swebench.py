"""Load SWE-bench-format instances against local git repositories.

>>> import json, tempfile
>>> path = example_instances(tempfile.mkdtemp())          # a tiny local repo + instance file
>>> [t.instance_id for t in load_instances(path)]
['calc__divide-by-zero-1']

An instance is a JSON object with ``instance_id``, ``repo``, ``base_commit``,
``problem_statement``, ``patch`` (the gold fix), ``test_patch`` (the hidden tests),
``FAIL_TO_PASS`` and ``PASS_TO_PASS`` (JSON lists, or strings holding JSON lists, as
in the SWE-bench dataset). The file is a JSON list or JSON lines. ``repo`` names a
local git repository: an absolute path, or a path relative to ``repos_root`` (default:
the instance file's directory), also tried with ``/`` replaced by ``__``.

The snapshot is ``base_commit`` exported from the repository (``git archive``); the
files ``test_patch`` touches become hidden test files (they are removed from the
agent's snapshot and added, patched, only when grading); the gold ``patch`` becomes
``write_file`` / ``replace_in_file`` calls so the scripted expert can replay it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

from rowgym.envs.repopatch.task import Base, RepoPatchTask, call, edit_calls, materialize, read_tree
from rowgym.errors import GraderError


def _as_list(v: object) -> list[str]:
    if isinstance(v, str):
        v = json.loads(v) if v.strip() else []
    return [str(x) for x in (v or [])]  # type: ignore[union-attr]


def _patched(repo: str, commit: str, patch: str) -> tuple[dict[str, bytes], dict[str, bytes | None]]:
    """(base tree, {path: content after applying patch, None if deleted}) for the files ``patch`` touches."""
    with tempfile.TemporaryDirectory(prefix="rowgym-swe-") as tmp:
        work = Path(tmp)
        materialize(RepoPatchTask(instance_id="x", source="swebench", repo=repo, base=Base(git_repo=repo, commit=commit),
                                  problem_statement="", fail_to_pass=[]), work)
        before = read_tree(work)
        if patch.strip():
            pf = work.parent / (work.name + ".patch")
            pf.write_text(patch)
            try:
                subprocess.run(["git", "apply", "--whitespace=nowarn", str(pf)], cwd=work, check=True,
                               capture_output=True)
            except subprocess.CalledProcessError as e:
                raise GraderError(f"patch does not apply at {commit}: {e.stderr.decode()[:300]}") from e
            finally:
                pf.unlink()
        after = read_tree(work)
    touched = {p: after.get(p) for p in set(before) | set(after) if before.get(p) != after.get(p)}
    return before, touched


def _resolve_repo(name: str, root: Path) -> str:
    for cand in (Path(name), root / name, root / name.replace("/", "__")):
        if (cand / ".git").exists() or (cand / "HEAD").exists():
            return str(cand.resolve())
    raise GraderError(f"no local git repository for {name!r} (looked in {root}); clone it there first")


def load_instances(path: str | Path, repos_root: str | Path | None = None) -> list[RepoPatchTask]:
    """Read SWE-bench-format instances from ``path`` (JSON list or JSONL) into tasks."""
    path = Path(path)
    text = path.read_text()
    rows = json.loads(text) if text.lstrip().startswith("[") else [json.loads(x) for x in text.splitlines() if x.strip()]
    root = Path(repos_root) if repos_root else path.parent
    tasks = []
    for r in rows:
        repo = _resolve_repo(r["repo"], root)
        commit = subprocess.run(["git", "-C", repo, "rev-parse", r["base_commit"]], check=True, capture_output=True,
                                text=True).stdout.strip()
        base_tree, test_files = _patched(repo, commit, r.get("test_patch", ""))
        _, fixed = _patched(repo, commit, r["patch"])
        gold = []
        for p, content in sorted(fixed.items()):
            if content is None:
                raise GraderError(f"{r['instance_id']}: gold patches that delete files are not supported")
            old = base_tree.get(p)
            try:
                gold += edit_calls(p, old.decode(), content.decode()) if old is not None else [
                    call("write_file", path=p, content=content.decode())]
            except UnicodeDecodeError:
                raise GraderError(f"{r['instance_id']}: binary gold patches are not supported") from None
        hidden = {p: c.decode() for p, c in test_files.items() if c is not None}
        f2p, p2p = _as_list(r["FAIL_TO_PASS"]), _as_list(r["PASS_TO_PASS"])
        first_file = sorted(fixed)[0] if fixed else ""
        tasks.append(RepoPatchTask(
            instance_id=r["instance_id"], source="swebench", repo=r["repo"], base=Base(git_repo=repo, commit=commit),
            remove=sorted(test_files), problem_statement=r["problem_statement"],
            visible_tests=[], hidden_files=hidden,
            test_paths=sorted({n.split("::")[0] for n in f2p + p2p}), fail_to_pass=f2p, pass_to_pass=p2p,
            gold=[*gold, call("submit")], gold_patch=r["patch"], location=f"{first_file}::"))
    return tasks


EXAMPLE_CALC = '''\
def add(a, b):
    return a + b


def divide(a, b):
    return a / b
'''
EXAMPLE_FIX = EXAMPLE_CALC.replace("    return a / b\n", "    if b == 0:\n        raise ValueError(\"division by zero\")\n"
                                                       "    return a / b\n")
EXAMPLE_TEST = '''\
import pytest
from calc import add, divide


def test_add():
    assert add(2, 3) == 5


def test_divide_by_zero():
    with pytest.raises(ValueError):
        divide(1, 0)
'''


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=rowgym", "-c", "user.email=rowgym@localhost", *args], cwd=cwd,
                          check=True, capture_output=True, text=True).stdout


def example_instances(dest: str | Path | None = None) -> Path:
    """Create a tiny local git repo ``calc`` and one SWE-bench-format instance for it; return the file."""
    from rowgym.envs.repopatch.synth.libraries import cache_root

    dest = Path(dest) if dest else cache_root() / "swebench-example"
    out = dest / "instances.json"
    if out.exists():
        return out
    repo = dest / "calc"
    shutil.rmtree(repo, ignore_errors=True)
    (repo / "tests").mkdir(parents=True)
    (repo / "calc.py").write_text(EXAMPLE_CALC)
    (repo / "tests" / "test_calc.py").write_text(EXAMPLE_TEST.split("\n\n\ndef test_divide")[0] + "\n")
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "calc: add and divide")
    base = _git(repo, "rev-parse", "HEAD").strip()
    (repo / "calc.py").write_text(EXAMPLE_FIX)
    patch = _git(repo, "diff")
    _git(repo, "checkout", "-q", "--", "calc.py")
    (repo / "tests" / "test_calc.py").write_text(EXAMPLE_TEST)
    test_patch = _git(repo, "diff")
    _git(repo, "checkout", "-q", "--", "tests/test_calc.py")
    instance = {"instance_id": "calc__divide-by-zero-1", "repo": "calc", "base_commit": base,
                "problem_statement": "divide(a, 0) raises ZeroDivisionError; it should raise ValueError with a "
                                     "clear message instead.",
                "patch": patch, "test_patch": test_patch,
                "FAIL_TO_PASS": json.dumps(["tests/test_calc.py::test_divide_by_zero"]),
                "PASS_TO_PASS": json.dumps(["tests/test_calc.py::test_add"])}
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps([instance], indent=1))
    tmp.replace(out)
    return out
