"""A token policy's turn: its action is the decoded completion (end-of-turn ids dropped), as a validated Action."""

from __future__ import annotations

import asyncio
import random

import pytest

from rowgym.agents.token_policy import TokenPolicy
from rowgym.contract import EpisodeContext
from rowgym.rows import Action
from rowgym.tools import parse_action

pytest.importorskip("transformers")


class _Scripted(TokenPolicy):
    """Samples the ids it is given, one list per turn."""

    name = "scripted-ids"

    def __init__(self, tokenizer, turns: list[list[int]]):
        self.tokenizer, self.turns = tokenizer, list(turns)

    async def generate(self, prompt_ids, seed):
        ids = self.turns.pop(0)
        return ids, [-0.5] * len(ids), "stop"


def _ctx() -> EpisodeContext:
    return EpisodeContext(system_prompt="Call tick.", tools=[], tools_json="[]", observation="go", env_id="e",
                          seed=0, sample_index=0, split="train", max_turns=100)


def test_the_turns_action_equals_a_validated_one(tiny_model_dir):
    from rowgym.agents.llm import load_tokenizer

    tok = load_tokenizer(tiny_model_dir)
    eos = tok.convert_tokens_to_ids(tok.eos_token)
    rng = random.Random(0)
    texts = ['<tool_call>\n{"name": "tick", "arguments": {}}\n</tool_call>', "", "caf\u00e9 😀 \x00 \\u0000",
             '{"name": "x"', "<tool_call>" * 3]
    turns = [tok.encode(t, add_special_tokens=False) + [eos] for t in texts]
    turns += [[eos], [eos, eos], tok.encode("a b", add_special_tokens=False)]  # only eos; eos twice; no eos
    turns += [[rng.randrange(len(tok)) for _ in range(rng.randrange(1, 30))] for _ in range(40)]  # any ids
    policy = _Scripted(tok, turns)

    async def play() -> None:
        await policy.reset(_ctx())
        for ids in list(turns):
            turn = await policy.act("obs")
            text = tok.decode([i for i in ids if i != eos], skip_special_tokens=False)
            slow = Action(text=text)
            assert type(turn.action) is Action and turn.action == slow
            assert turn.action.model_fields_set == slow.model_fields_set == {"text"}
            assert turn.action.model_dump_json() == slow.model_dump_json()
            assert turn.tokens.completion_ids == ids  # the ids as sampled (eos kept)
            assert repr(parse_action(turn.action, {})) == repr(parse_action(slow, {}))

    asyncio.run(play())
