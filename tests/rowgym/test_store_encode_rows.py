"""The store's line encoder writes rows one by one: still byte-for-byte ``model_dump_json()``."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest

from rowgym.errors import StoreError
from rowgym.rows import Action, Episode, PolicyInfo, StepRow, TokenRecord, ToolCall, Verdict
from rowgym.store import shards
from rowgym.store.shards import _fast_line, encode

_NASTY = ['"steps":[],"verdict":', '}],"verdict":', '},{"schema_version":', ',"tokens":null}', ',"started_at":',
          "\u2028\u2029", "\x00\x01\x1f\x7f", "caf\u00e9 😀", "\\", '"', "", " " * 3, "\ufffd"]


def _text(rng: random.Random) -> str:
    return "".join(rng.choice(_NASTY) for _ in range(rng.randrange(4)))


def _episode(rng: random.Random) -> Episode:
    ep = Episode(run_id="r", episode_id="r:1:0", group_id="r:1", env_id="e", env_version="0", seed=1, split="dev",
                 task_hash=_text(rng), instruction=_text(rng),
                 policy=PolicyInfo(agent="vllm", sampling={"steps": _text(rng), "verdict": 1.5}),
                 reward_versions={_text(rng): _text(rng)}, tools=_text(rng) or "[]",
                 verdict=rng.choice([None, Verdict(reward=-0.0, success=False, verifier=_text(rng),
                                                   verifier_version="1", breakdown={"steps": 1e300})]))
    prompt: list[int] = []
    for t in range(rng.randrange(6)):
        tokens = None
        if rng.random() < 0.7:  # rows with and without token records, mixed
            prompt = prompt + [rng.randrange(200_000) for _ in range(rng.randrange(30))]
            completion = [rng.randrange(200_000) for _ in range(rng.randrange(5))]
            tokens = TokenRecord(prompt_ids=prompt, completion_ids=completion,
                                 logprobs=[rng.uniform(-30, 0) for _ in completion],
                                 mask=[rng.randrange(2) for _ in range(len(prompt) + len(completion))],
                                 finish_reason=rng.choice([None, "stop", _text(rng)]))
        call = ToolCall(name=_text(rng), arguments=_text(rng)) if rng.random() < 0.5 else None
        ep.steps.append(StepRow(run_id="r", episode_id="r:1:0", group_id="r:1", env_id="e", env_version="0", seed=1,
                                split="dev", turn=t, observation=_text(rng), next_observation=_text(rng),
                                action=Action(text=_text(rng), tool_call=call),
                                reward=rng.choice([0.0, -0.1, 1e-7, 5e-324, 123456789.125]),
                                reward_breakdown={_text(rng): rng.uniform(-1, 1)}, bad_call=rng.random() < 0.5,
                                tokens=tokens))
    return ep


def test_rows_written_one_by_one_are_the_episodes_json_byte_for_byte():
    rng = random.Random(7)
    for _ in range(300):
        ep = _episode(rng)
        line = ep.model_dump_json().encode() + b"\n"
        assert _fast_line(ep) == line  # the fast path, not pydantic's fallback
        assert encode(ep) == line


def test_a_row_of_a_subclass_takes_pydantics_path():
    class MyRow(StepRow):
        pass

    ep = next(e for e in map(_episode, map(random.Random, range(100))) if e.steps)
    ep.steps[0] = MyRow(**ep.steps[0].__dict__)
    assert _fast_line(ep) is None
    assert encode(ep) == ep.model_dump_json().encode() + b"\n"


def test_a_nested_model_of_a_subclass_takes_pydantics_path():
    class MyPolicy(PolicyInfo):
        pass

    ep = _episode(random.Random(5))
    ep.policy = MyPolicy(agent="mine")
    assert _fast_line(ep) is None
    assert encode(ep) == ep.model_dump_json().encode() + b"\n"


@pytest.mark.parametrize("offset", [timedelta(0), timedelta(hours=5, minutes=30), timedelta(hours=-8), None,
                                    timedelta(seconds=37), timedelta(hours=1, microseconds=5)])
def test_every_start_time_is_written_as_pydantic_writes_it(offset):
    """orjson and pydantic agree on UTC ("Z"), whole-minute offsets and naive times; an offset with
    seconds (orjson rounds it to a minute, pydantic cuts it) takes pydantic's path."""
    ep = _episode(random.Random(6))
    for micro in (0, 120000, 7):
        ep.started_at = datetime(2026, 12, 3, 4, 5, 6, micro, tzinfo=None if offset is None else timezone(offset))
        assert encode(ep) == ep.model_dump_json().encode() + b"\n"
        assert (_fast_line(ep) is None) == (offset is not None and offset.seconds % 60 + offset.microseconds > 0)


def test_an_int_where_the_schema_says_float_reads_back_the_same():
    """The one documented difference: a model built without validation that holds an int in a float
    field is written with the int (pydantic writes 1.0), and reads back as the same episode."""
    ep = _episode(random.Random(8))
    ep.duration_s = 3  # assignment is not validated
    line = encode(ep)
    assert b'"duration_s":3}' in line
    assert Episode.model_validate_json(line) == Episode.model_validate_json(ep.model_dump_json())


def test_an_episode_line_written_row_by_row_is_the_episodes_json_byte_for_byte():
    rng = random.Random(11)
    for _ in range(300):
        ep = _episode(rng)
        line = shards.EpisodeLine()
        assert all(line.add(row) for row in ep.steps)
        ep.duration_s = rng.random()  # the episode's own fields are read when the line is asked for
        assert line.of(ep) == ep.model_dump_json().encode() + b"\n"


@pytest.mark.parametrize("with_tokens", [True, False])
def test_an_episode_line_with_a_row_encode_must_refuse_gives_way(with_tokens):
    ep = next(e for e in map(_episode, map(random.Random, range(100)))
              if e.steps and (e.steps[0].tokens is not None) == with_tokens)
    line = shards.EpisodeLine()
    ep.steps[0].reward = float("nan")
    ep.steps[1:] = []
    # a policy's row is written (and refused) at once; a scripted agent's row is looked at with the episode
    assert line.add(ep.steps[0]) is not with_tokens
    assert line.of(ep) is None
    with pytest.raises(StoreError, match="non-finite"):
        encode(ep)


def test_a_row_without_tokens_is_written_with_the_episode_one_with_tokens_when_added():
    """Rows of a scripted agent are written by the episode's one orjson call (their values as they
    are then); a policy's rows when they are added (their JSON kept, the growing prompt written from
    the last row's)."""
    rng = random.Random(12)
    eps = [e for e in (_episode(rng) for _ in range(200)) if len(e.steps) >= 2]
    for ep in eps:
        line = shards.EpisodeLine()
        assert all(line.add(row) for row in ep.steps)
        assert [p is None for p in line.parts] == [row.tokens is None for row in ep.steps]
        assert line.deferred == sum(row.tokens is None for row in ep.steps)
        assert line.of(ep) == ep.model_dump_json().encode() + b"\n"
    assert any(line_kinds == {True, False} for line_kinds in ({r.tokens is None for r in e.steps} for e in eps))


def test_the_tool_schemas_written_once_are_never_another_episodes():
    """The JSON of the last tool-schema string is reused for episodes holding that very string; any
    other string (equal text included) is written afresh, so no line gets another episode's tools."""
    rng = random.Random(13)
    a, b = '[{"name":"a","d":"\u2028"}]', '[{"name":"b"}]'
    same_text = "".join(['[{"name":"b"', "}]"])  # equal to b, another object
    for tools in [a, a, b, a, same_text, b, "caf\u00e9", a]:
        ep = _episode(rng)
        ep.tools = tools
        assert encode(ep) == ep.model_dump_json().encode() + b"\n"
        assert shards._last_tools[0] is tools
    ep.tools = "lone \udce9"  # orjson refuses it: pydantic's path decides (and refuses it too)
    assert _fast_line(ep) is None
