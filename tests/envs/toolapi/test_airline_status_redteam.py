"""Red team: Airline flight-status questions must not be answerable by a blind guess.

Flight statuses are drawn 0.8 / 0.15 / 0.05 (scheduled / delayed / cancelled); when the task
picked any flight, answering "scheduled" without a lookup solved 79% of these tasks. The task
now picks the asked status uniformly first, then a flight with it.
"""

from __future__ import annotations

from collections import Counter

import pytest

import rowgym

pytestmark = pytest.mark.redteam
ENV = "rowgym/ToolAPI-Airline-v0"


def test_a_blind_status_guess_solves_at_most_about_a_third():
    env = rowgym.make(ENV)
    n, wins, answers = 0, Counter(), Counter()
    for seed in range(1500):
        env.reset(seed=seed)
        if env.task.kind != "flight_status":
            continue
        n += 1
        answers[env.task.answer] += 1
        for guess in ("scheduled", "delayed", "cancelled"):
            env.reset(seed=seed)
            *_, info = env.step({"name": "finish", "arguments": {"answer": guess}})
            wins[guess] += info["verdict"].reward == 1.0
    env.close()
    assert n >= 150, n
    assert set(answers) == {"scheduled", "delayed", "cancelled"}, answers
    for guess, w in wins.items():
        assert w / n <= 0.45, f"a blind {guess!r} solves {w}/{n} flight-status tasks"


def test_flight_status_gold_plans_still_solve():
    env = rowgym.make(ENV)
    seen = 0
    for seed in range(300):
        task = env.make_task(seed)
        if task.kind != "flight_status":
            continue
        seen += 1
        env.reset(seed=seed)
        for c in task.gold:
            obs, _, term, _, info = env.step(c)
            if c.name == "get_flight_status":
                assert obs == task.answer  # the asked flight really has the asked status
        assert term and info["verdict"].success
    env.close()
    assert seen >= 20


def test_the_task_change_bumped_the_env_version():
    from rowgym.envs.toolapi.airline import AirlineEnv

    assert AirlineEnv.version == "1"
