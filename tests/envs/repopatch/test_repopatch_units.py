"""Repo-patch units that need no sandbox: corpus shape, guard, diffs, splits, mutators, SWE-bench loader."""

from __future__ import annotations

import json
from collections import defaultdict

from rowgym.envs.repopatch.corpus import corpus_tasks
from rowgym.envs.repopatch.splits import assign_splits, group_of
from rowgym.envs.repopatch.swebench import example_instances, load_instances
from rowgym.envs.repopatch.synth.mutate import candidates
from rowgym.envs.repopatch.task import (
    changed_files,
    edit_calls,
    parse_pytest_summary,
    split_test_edits,
)
from rowgym.rows import Split


def test_corpus_shape() -> None:
    tasks = corpus_tasks()
    assert len(tasks) >= 30 and len({t.repo for t in tasks}) >= 4
    for t in tasks:
        assert t.fail_to_pass, t.instance_id
        assert not set(t.hidden_files) & set(t.base.files or {}), "hidden tests must not be in the snapshot"
        assert t.gold[-1].name == "submit" and t.gold[0].name in ("replace_in_file", "write_file")
        assert not set(t.fail_to_pass) & set(t.pass_to_pass)


def test_guard_drops_test_edits() -> None:
    base = {"pkg/a.py": b"x = 1\n", "tests/test_a.py": b"", "pyproject.toml": b"[tool.pytest.ini_options]\n"}
    after = {**base, "pkg/a.py": b"x = 2\n", "tests/test_a.py": b"assert True\n", "conftest.py": b"",
             "pyproject.toml": b"[tool.pytest.ini_options]\naddopts = '-k nothing'\n"}
    kept, dropped = split_test_edits(base, changed_files(base, after))
    assert list(kept) == ["pkg/a.py"]
    assert sorted(dropped) == ["conftest.py", "pyproject.toml", "tests/test_a.py"]


def test_pytest_summary_parse() -> None:
    out = "PASSED a.py::t[1 - 2]\nFAILED a.py::u - AssertionError: x\nERROR a.py::v - E\nPASSED a.py::v\n"
    assert parse_pytest_summary(out) == {"a.py::t[1 - 2]": "passed", "a.py::u": "failed", "a.py::v": "error"}


def test_edit_calls_unique() -> None:
    before = "a = 1\nb = 1\na = 1\n"
    (c,) = edit_calls("f.py", before, "a = 1\nb = 2\na = 1\n")
    args = json.loads(c.arguments)
    assert before.count(args["old"]) == 1 and before.replace(args["old"], args["new"]) == "a = 1\nb = 2\na = 1\n"


def test_splits_by_file_never_shared() -> None:
    tasks = corpus_tasks()
    splits = assign_splits(tasks)
    by_group = defaultdict(set)
    for t, s in zip(tasks, splits, strict=True):
        by_group[group_of(t)].add(s)
    assert all(len(s) == 1 for s in by_group.values()), "a source file in two splits"
    assert set(splits) == {Split.TRAIN, Split.DEV, Split.HELDOUT}
    held_fns = {t.location for t, s in zip(tasks, splits, strict=True) if s == Split.HELDOUT}
    train_fns = {t.location for t, s in zip(tasks, splits, strict=True) if s == Split.TRAIN}
    assert not held_fns & train_fns
    # stable: adding tasks never moves existing groups (with enough groups for the hash to decide)
    assert assign_splits(tasks[:-1]) == splits[:-1]


def test_mutators_keep_file_parsable() -> None:
    src = "def f(xs, n=2):\n    if not xs:\n        return 0\n    return sum(xs[1:]) + max(n, 1) - 1\n"
    muts = candidates(src, "m.py")
    assert {"off_by_one", "swapped_args", "wrong_default", "dropped_branch"} <= {m.kind for m in muts}
    assert all(m.source != src for m in muts)


def test_swebench_loader(tmp_path) -> None:
    (task,) = load_instances(example_instances(tmp_path))
    assert task.fail_to_pass == ["tests/test_calc.py::test_divide_by_zero"]
    assert "tests/test_calc.py" in task.remove and "test_divide_by_zero" in task.hidden_files["tests/test_calc.py"]
    assert json.loads(task.gold[0].arguments)["path"] == "calc.py"
