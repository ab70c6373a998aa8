"""The built-in corpus: small Python repositories written for rowgym, each with injected bugs.

>>> tasks = corpus_tasks()
>>> len(tasks) >= 30, len({t.repo for t in tasks}) >= 4
(True, True)
>>> t = tasks[0]
>>> sorted(t.hidden_files)[0].startswith("tests/"), t.gold[-1].name
(True, 'submit')

Each repo module holds the *fixed* code (``FILES``, visible tests included), hidden
test files (``HIDDEN``) and ``BUGS``: ``(id, file, function, fixed text, buggy text,
problem statement)``. A task's snapshot is the repo with one bug injected; its gold
patch is the inverse edit. FAIL_TO_PASS / PASS_TO_PASS come from running the hidden
tests on the buggy and fixed code (``expected.json``; regenerate with
``python -m rowgym.envs.repopatch.verify --refresh-corpus``).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

from rowgym.envs.repopatch.corpus import datekit, invkit, mathkit, textkit
from rowgym.envs.repopatch.task import Base, RepoPatchTask, call, edit_calls, unified_diff

REPOS = [textkit, mathkit, invkit, datekit]
EXPECTED = Path(__file__).with_name("expected.json")


def _inject(files: dict[str, str], path: str, fixed: str, buggy: str, tid: str) -> str:
    text = files[path]
    if text.count(fixed) != 1:
        raise ValueError(f"corpus bug {tid}: {fixed!r} must occur exactly once in {path}")
    return text.replace(fixed, buggy)


@functools.cache
def _expected() -> dict[str, dict[str, list[str]]]:
    return json.loads(EXPECTED.read_text()) if EXPECTED.exists() else {}


def corpus_tasks(with_expected: bool = True) -> list[RepoPatchTask]:
    """Every corpus task, in a stable order."""
    tasks = []
    for repo in REPOS:
        for tid, path, func, fixed, buggy, statement in repo.BUGS:
            iid = f"{repo.NAME}__{tid}"
            buggy_text = _inject(repo.FILES, path, fixed, buggy, iid)
            exp = _expected().get(iid, {}) if with_expected else {}
            all_hidden = [f"{p}::{n}" for p, src in sorted(repo.HIDDEN.items()) for n in _test_names(src)]
            f2p = exp.get("fail_to_pass", [])
            p2p = exp.get("pass_to_pass", [n for n in all_hidden if n not in f2p])
            tasks.append(RepoPatchTask(
                instance_id=iid, source="corpus", repo=repo.NAME, base=Base(files=dict(repo.FILES)),
                edits={path: buggy_text}, problem_statement=statement,
                visible_tests=sorted(p for p in repo.FILES if p.startswith("tests/")),
                hidden_files=dict(repo.HIDDEN), test_paths=sorted(repo.HIDDEN), fail_to_pass=f2p,
                pass_to_pass=p2p, gold=[*edit_calls(path, buggy_text, repo.FILES[path]), call("submit")],
                gold_patch=unified_diff({path: buggy_text.encode()}, {path: repo.FILES[path].encode()}),
                location=f"{path}::{func}"))
    return tasks


def _test_names(src: str) -> list[str]:
    import ast

    return [n.name for n in ast.parse(src).body if isinstance(n, ast.FunctionDef) and n.name.startswith("test")]
