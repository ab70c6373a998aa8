"""The store's line encoder is byte-for-byte ``model_dump_json()``, whichever path it takes."""

from __future__ import annotations

import math
import random
import re

import pytest

from rowgym.errors import StoreError
from rowgym.rows import (
    Action,
    Check,
    Episode,
    Failure,
    PolicyInfo,
    PolicyVersion,
    StepRow,
    Timings,
    TokenRecord,
    ToolCall,
    Verdict,
    unvalidated,
)
from rowgym.store.shards import EpisodeLine, _fast_line, encode, non_finite


def _record(rng: random.Random, n_prompt: int, *, version: PolicyVersion | None = None, finish: str | None = "stop",
            trusted: bool = False) -> TokenRecord:
    completion = [rng.randrange(0, 152_000) for _ in range(rng.randrange(0, 40))]
    fields = dict(prompt_ids=[rng.randrange(0, 152_000) for _ in range(n_prompt)], completion_ids=completion,
                  logprobs=[-rng.expovariate(1.0) * 10 ** rng.randint(-12, 3) for _ in completion],
                  mask=[rng.randrange(2) for _ in range(n_prompt + len(completion))], finish_reason=finish,
                  policy_version=version)
    if trusted:  # as TokenConversation.record builds it
        return unvalidated(TokenRecord, frozenset(fields) - {"policy_version"}, **fields)
    return TokenRecord(**fields)


def _episode(rng: random.Random, *, tokens: bool = True, **kw) -> Episode:
    ep = Episode(run_id="r", episode_id="r:1:0", group_id="r:1", env_id="rowgym/X-v0", env_version="0", seed=1,
                 split="train", task_hash="h", instruction="Do \"it\" — now\n", policy=PolicyInfo(agent="vllm",
                 sampling={"temperature": 1.0, "verdict": "x"}), reward_versions={"verdict": "1", "started_at": "x"},
                 tools='[{"a": 1, "b": "\\u00e9 \\"q\\" \u2028 \x7f"}],"started_at":',
                 **kw)
    for t in range(4):
        rec = None
        if tokens:
            rec = _record(rng, 50 * (t + 1), trusted=t % 2 == 0,
                          version=PolicyVersion(step=t, weights_hash="ab") if t == 3 else None,
                          finish=[None, "stop", "length", "caf\u00e9 \x01"][t])
        ep.steps.append(StepRow(
            run_id="r", episode_id="r:1:0", group_id="r:1", env_id="rowgym/X-v0", env_version="0", seed=1,
            split="train", turn=t, observation=f'obs {t} \u2028 "q" \\ }},{{"schema_version":1 }}],"verdict":' , next_observation="next 😀",
            action=Action(text="<tool_call>{}</tool_call>", tool_call=ToolCall(name="f", arguments='{"a": 1}')
                          if t == 1 else None),
            reward=[0.0, -0.1, 1e-7, 1e300][t], reward_breakdown={"timings": 0.5, "schema_version": -0.25},
            bad_call=t == 2, error_kind="bad_json" if t == 2 else None, timings=Timings(policy_s=0.123456, env_s=2e-6),
            tokens=rec))
    return ep


@pytest.mark.parametrize("seed", range(5))
def test_the_line_is_model_dump_json_byte_for_byte(seed):
    rng = random.Random(seed)
    verdict = Verdict(reward=1.0, success=True, verifier="v", verifier_version="1", breakdown={"steps": 1.0},
                      checks=[Check(name="steps", passed=True, detail='"steps":[]')], flags=["f"])
    for ep in (_episode(rng), _episode(rng, verdict=verdict), _episode(rng, tokens=False),
               _episode(rng, failure=Failure(kind="policy", reason="down"), verdict=verdict)):
        assert encode(ep) == ep.model_dump_json().encode() + b"\n"
        assert _fast_line(ep) == ep.model_dump_json().encode() + b"\n"  # the fast path, not pydantic's fallback
        assert Episode.model_validate_json(encode(ep)) == Episode.model_validate_json(ep.model_dump_json())


def test_values_orjson_refuses_take_pydantics_path():
    rng = random.Random(0)
    ep = _episode(rng)
    ep.steps[0].tokens.prompt_ids.append(2 ** 70)  # beyond 64 bits: orjson refuses, pydantic writes it
    assert encode(ep) == ep.model_dump_json().encode() + b"\n"
    ep = _episode(rng, tokens=False)
    ep.tools = "[\ud800]"
    with pytest.raises(Exception, match="surrogates not allowed"):
        encode(ep)
    ep = _episode(rng)
    ep.steps[1].tokens.finish_reason = "stop\ud800"  # a lone surrogate: unstorable either way
    with pytest.raises(Exception, match="surrogates not allowed"):
        encode(ep)


def test_unvalidated_builds_what_validation_builds():
    values = dict(prompt_ids=[1, 2], completion_ids=[3], logprobs=[-0.5], mask=[0, 0, 1], finish_reason="stop",
                  policy_version=None)
    fast = unvalidated(TokenRecord, frozenset(values) - {"policy_version"}, **values)
    slow = TokenRecord(**{k: v for k, v in values.items() if k != "policy_version"})
    assert fast == slow and fast.model_fields_set == slow.model_fields_set
    assert fast.model_dump_json() == slow.model_dump_json()
    fast.policy_version = PolicyVersion(step=1, weights_hash="h")  # assignment still works
    assert fast.model_fields_set == slow.model_fields_set | {"policy_version"}
    with pytest.raises(TypeError, match="needs every field"):
        unvalidated(Timings, frozenset(), policy_s=1.0)
    with pytest.raises(TypeError, match="in declaration order"):  # the store writes fields in the order held
        unvalidated(Timings, frozenset(), env_s=1.0, policy_s=2.0)


def test_an_episode_without_rows_is_the_same_line():
    ep = _episode(random.Random(1))
    ep.steps = []
    assert encode(ep) == _fast_line(ep) == ep.model_dump_json().encode() + b"\n"


def test_prompts_that_extend_the_last_rows_and_ones_that_do_not():
    rng = random.Random(2)
    ep = _episode(rng)
    prompt: list[int] = []
    for i, row in enumerate(ep.steps):
        if i == 2:
            prompt = [7, 7, 7]  # a fresh conversation: not an extension of the last row
        elif i == 3:
            prompt = prompt[:]  # the same prompt again (nothing new)
        else:
            prompt = prompt + [rng.randrange(100) for _ in range(5)]
        row.tokens.prompt_ids = prompt
        row.tokens.mask = [0] * len(prompt) + [1] * len(row.tokens.completion_ids)
    assert _written_row_by_row(ep) == _fast_line(ep) == ep.model_dump_json().encode() + b"\n"
    ep.steps[0].tokens.prompt_ids = []
    assert _written_row_by_row(ep) == _fast_line(ep) == ep.model_dump_json().encode() + b"\n"


def _written_row_by_row(ep: Episode) -> bytes | None:
    """The line as the engine writes it: each row as it is recorded (its prompt from the last row's)."""
    line = EpisodeLine()
    assert all(line.add(row) for row in ep.steps)
    return line.of(ep)


class _SubEpisode(Episode):
    """A subclass: encode takes pydantic's path for the whole line."""


NON_FINITE = {
    "a logprob": (lambda ep, x: ep.steps[2].tokens.logprobs.insert(0, x), "steps[2].tokens.logprobs"),
    "a row's reward": (lambda ep, x: setattr(ep.steps[1], "reward", x), "steps[1].reward"),
    "a reward breakdown": (lambda ep, x: ep.steps[0].reward_breakdown.update(b=x), "steps[0].reward_breakdown"),
    "a timing": (lambda ep, x: setattr(ep.steps[3].timings, "env_s", x), "steps[3].timings"),
    "the verdict's reward": (lambda ep, x: setattr(ep.verdict, "reward", x), "verdict.reward"),
    "the verdict's breakdown": (lambda ep, x: ep.verdict.breakdown.update(c=x), "verdict.breakdown"),
    "the duration": (lambda ep, x: setattr(ep, "duration_s", x), "duration_s"),
}


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("cls", [Episode, _SubEpisode])
@pytest.mark.parametrize("case", list(NON_FINITE.values()), ids=list(NON_FINITE))
def test_a_non_finite_float_is_refused_not_written_as_null(case, cls, value):
    """pydantic and orjson both write NaN and the infinities as null, which no reader accepts for a float."""
    put, where = case
    ep = _episode(random.Random(3), verdict=Verdict(reward=1.0, success=True, verifier="v", verifier_version="1"))
    ep = cls.model_validate(ep.model_dump())
    encode(ep)
    put(ep, value)
    with pytest.raises(StoreError, match=rf"^episode r:1:0 cannot be stored: a non-finite value \({value}\) in "
                                         rf"{re.escape(where)} \(JSON has no NaN"):
        encode(ep)


def test_only_floats_that_do_not_read_back_are_refused():
    ep = _episode(random.Random(4))
    ep.steps[0].tokens.logprobs[:0] = [-1e308, -1e308]  # a sum that overflows: each value is finite
    ep.steps[1].reward_breakdown["x"] = 1e308
    ep.policy.sampling["temperature"] = math.nan  # written as null, read back as None: readable
    assert non_finite(ep) is None
    line = encode(ep)
    assert Episode.model_validate_json(line).steps[0].tokens.logprobs[:2] == [-1e308, -1e308]
