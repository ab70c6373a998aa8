"""Red team: RepoPatch's per-step rewards paid a longer episode more (a policy trained on them learns to stall).

* ``valid_call@1`` paid +0.02 for every successful call: 39 reads of one file (0.78) out-earned trying and
  failing at once, and padding an efficient fix with reads earned more than the fix itself.
* ``edit_applied@1`` paid +0.05 for every edit that changed a file: replacing a line and putting it back,
  again and again, earned 0.1 a round trip.
* ``visible_progress@1`` counted the visible tests as they stood in the work dir: rewriting the failing
  visible test so it passes raised the "passing fraction" as much as fixing the bug.

Now ``valid_call@2`` pays a (tool, arguments) pair's first success only, for at most the gold patch's calls
plus ``EXPLORE_CALLS``; ``edit_applied@2`` pays a source file once, for at most the gold patch's files; and
``visible_progress@2`` counts nothing while a test or test-tooling file differs from the snapshot.
Episodes are played through ``env.step`` and compared by their undiscounted return (the sum of rewards).
"""

from __future__ import annotations

import json

import pytest

from rowgym.envs.repopatch.env import EXPLORE_CALLS, REPOPATCH_LOCAL, REPOPATCH_LOCAL_V1, valid_call_cap
from rowgym.envs.repopatch.families import CorpusEnv
from rowgym.sandboxes import SandboxError

pytestmark = [pytest.mark.docker, pytest.mark.redteam]

EPS = 1e-9
SEED = 0  # textkit: camel_to_snake("FooBar") gives "_foo_bar"; one replace_in_file fixes it


def play(env, calls: list, seed: int = SEED) -> tuple[float, list[dict], object]:
    """The undiscounted return, each step's reward breakdown, and the verdict (None if not ended)."""
    env.reset(seed=seed)
    total, breakdowns, info = 0.0, [], {}
    for c in calls[:env.max_turns]:
        _, r, term, trunc, info = env.step(c)
        total += r
        breakdowns.append(info["reward_breakdown"])
        if term or trunc:
            break
    return total, breakdowns, info.get("verdict")


def _call(name: str, **arguments) -> dict:
    return {"name": name, "arguments": arguments}


def gold_edits(env) -> list[dict]:
    return [{"name": c.name, "arguments": json.loads(c.arguments)} for c in env.task.gold if c.name != "submit"]


def efficient(env) -> list[dict]:
    """What a good agent does: look (list, read the source and the visible test), fix, check, submit."""
    edits = gold_edits(env)
    return [_call("list_files", path="."), _call("read_file", path=edits[0]["arguments"]["path"]),
            _call("read_file", path=env.task.visible_tests[0]), *edits, _call("run_visible_tests"), _call("submit")]


def distinct_reads(env, n: int) -> list[dict]:
    """``n`` distinct, successful calls that change nothing (a file read from a different first line)."""
    path = gold_edits(env)[0]["arguments"]["path"]
    return [_call("read_file", path=path, start_line=1, end_line=1 + i) for i in range(n)]


@pytest.fixture(scope="module")
def f2p_env():
    """Task 0 with its hidden tests also visible, so its visible tests fail until the bug is fixed."""
    task = CorpusEnv.load_tasks(CorpusEnv.__new__(CorpusEnv))[SEED]
    (hidden, text), = task.hidden_files.items()
    visible = "tests/test_visible_f2p.py"
    task = task.model_copy(update={"edits": {**task.edits, visible: text},
                                   "visible_tests": [*task.visible_tests, visible]})
    try:
        e = CorpusEnv(pool_size=1, tasks=[task])
        e.reset(seed=0)
    except SandboxError as exc:
        pytest.skip(f"no sandbox backend: {exc}")
    yield e
    e.close()


def test_the_env_uses_the_new_versions(env):
    assert env.local_rubric is REPOPATCH_LOCAL
    assert env.reward_versions()["valid_call"] == "2"
    assert env.reward_versions()["edit_applied"] == "2" and env.reward_versions()["visible_progress"] == "2"
    assert REPOPATCH_LOCAL_V1.versions() == {"valid_call": "1", "bad_call_penalty": "1", "edit_applied": "1",
                                             "visible_progress": "1"}  # stored rows stay explainable
    env.reset(seed=SEED)
    assert valid_call_cap(env.task) == len(env.task.gold) + EXPLORE_CALLS


def test_padding_an_efficient_fix_pays_nothing_more(env):
    eff = efficient(env)
    eff_ret, _, v = play(env, eff)
    assert v.success
    env.reset(seed=SEED)
    padded = eff[:-1] + distinct_reads(env, env.max_turns - len(eff)) + eff[-1:]
    pad_ret, _, v = play(env, padded)
    assert v.success
    assert pad_ret <= eff_ret + EPS, f"padded {pad_ret} > efficient {eff_ret}"
    # the same read again and again, too
    again = eff[:-1] + [eff[1]] * (env.max_turns - len(eff)) + eff[-1:]
    again_ret, _, v = play(env, again)
    assert v.success and again_ret <= eff_ret + EPS


def test_stalling_earns_at_most_a_few_valid_calls(env):
    env.reset(seed=SEED)
    read = _call("read_file", path="textkit/case.py")
    same, _, v = play(env, [read] * env.max_turns)  # truncated at max_turns, graded 0
    assert v is not None and not v.success
    assert same <= 0.02 + EPS, same  # one valid call, however long
    give_up, _, _ = play(env, [_call("submit")])
    assert same <= give_up + EPS  # never trying is no better than giving up at once
    env.reset(seed=SEED)
    distinct, _, v = play(env, distinct_reads(env, env.max_turns))
    assert not v.success
    assert distinct <= 0.02 * valid_call_cap(env.task) + EPS and distinct <= 0.12 + EPS, distinct


def test_editing_back_and_forth_pays_one_edit(env):
    env.reset(seed=SEED)
    (edit,) = gold_edits(env)
    a = edit["arguments"]
    undo = _call("replace_in_file", path=a["path"], old=a["new"], new=a["old"])
    eff = efficient(env)
    eff_ret, _, _ = play(env, eff)
    flips = [edit, undo] * 12
    flipped = eff[:3] + flips + eff[3:]
    ret, steps, v = play(env, flipped)
    assert v.success
    assert sum(b["edit_applied@2"] for b in steps) == pytest.approx(0.05)  # the file changed: once
    assert ret <= eff_ret + EPS, f"flipping {ret} > efficient {eff_ret}"
    # new junk files are capped at the gold patch's file count (and test files never pay)
    junk = [_call("write_file", path=f"textkit/junk{i}.py", content=f"X = {i}\n") for i in range(10)]
    junk += [_call("write_file", path=f"tests/test_junk{i}.py", content="") for i in range(3)]
    _, steps, _ = play(env, junk + [_call("submit")])
    assert sum(b["edit_applied@2"] for b in steps) == pytest.approx(0.05)


def test_rewriting_the_failing_visible_test_is_no_progress(f2p_env):
    env = f2p_env
    run = _call("run_visible_tests")
    visible = env.task.visible_tests[-1]
    attack = [run, _call("write_file", path=visible, content="def test_ok():\n    pass\n"), run, _call("submit")]
    _, steps, v = play(env, attack, seed=0)
    assert not v.success
    first = steps[0]["visible_progress@2"]
    assert 0 < first < 0.5  # the snapshot's passing fraction (the f2p tests fail)
    assert steps[2]["visible_progress@2"] == 0.0, "a rewritten test raised the visible progress"
    # the real fix still earns the rise
    fix = [run, *gold_edits(env), run, _call("submit")]
    _, steps, v = play(env, fix, seed=0)
    assert v.success
    assert steps[0]["visible_progress@2"] == pytest.approx(first)
    assert first + steps[2]["visible_progress@2"] == pytest.approx(0.5)
