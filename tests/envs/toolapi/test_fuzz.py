"""Fuzzing the tool-API family through ``env.step``: 10,000 hostile calls over its three domains.

See ``tests/fuzz_actions.py`` for what the calls hold. Every observation must be UTF-8
text, every row built from a step must serialise and round-trip, and none of these
domains' tools may crash (a crash would still be an observation, ``tool_crash``, but
here it would be a bug in our tools).
"""

from __future__ import annotations

import pytest
from fuzz_actions import fuzz_env

import rowgym

DOMAINS = ["rowgym/ToolAPI-Airline-v0", "rowgym/ToolAPI-Retail-v0", "rowgym/ToolAPI-Home-v0"]
pytestmark = pytest.mark.redteam  # agent input against the env's parsing, tools and storage

N_CALLS = -(-10_000 // len(DOMAINS))  # per domain: 10,000 for the family


@pytest.mark.parametrize("env_id", DOMAINS)
def test_ten_thousand_hostile_calls_never_raise(env_id):
    env = rowgym.make(env_id)
    seeds = env.splits.seeds("train", 8)
    tally = fuzz_env(env, seeds, N_CALLS, fuzz_seed=DOMAINS.index(env_id))
    assert tally.crashes == [], tally.crashes[:5]
    k = tally.kinds
    # the fuzzer reaches every stage: parsing, lookup, validation, the tools themselves and grading
    assert k[None] > 100 and k["tool_error"] > 30 and k["invalid_arguments"] > 1000, k
    assert k["bad_json"] > 300 and k["unknown_tool"] > 100 and k["no_tool_call"] > 100, k
    assert tally.notes > 15 and tally.episodes > 5, (tally.notes, tally.episodes)
