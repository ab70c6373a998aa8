"""The cached template pieces of TokenConversation give exactly the ids of a full chat-template render."""

import pytest

import rowgym
from rowgym.agents.chat_tokens import (
    TokenConversation,
    _render_first_prompt,
    _render_observation_segment,
    _template_pieces,
    observation_segment,
)
from rowgym.contract import env_tools

pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from rowgym.agents.llm import load_tokenizer

    return load_tokenizer(tiny_model_dir)


@pytest.mark.parametrize("env_id", ["rowgym/ToolAPI-Retail-v0", "rowgym/ToolAPI-Airline-v0", "rowgym/ToolAPI-Home-v0"])
def test_cached_pieces_equal_full_render(tokenizer, env_id):
    env = rowgym.make(env_id)
    tools, tools_json = env_tools(env)
    assert tools == env.tools and tools_json == env.tools_json()
    for seed in range(4):
        obs, _ = env.reset(seed=seed)
        conv = TokenConversation(tokenizer, env.system_prompt, tools, obs)
        assert conv.prompt_ids == _render_first_prompt(tokenizer, env.system_prompt, tools, obs)
        for o in (obs, "Error: bad {json}  ", "\n\n x \n", ""):
            assert observation_segment(tokenizer, o) == _render_observation_segment(tokenizer, o, "tool")
            assert _template_pieces(tokenizer).encode(o) == tokenizer.encode(o, add_special_tokens=False)
    env.close()
    assert _template_pieces(tokenizer).observation("tool") is not None, "the fast path is in use"


def test_a_context_always_carries_its_own_tools_json_the_prompt_cache_key(tokenizer):
    """The token policy keys its prompt cache by ctx.tools_json: a context built without one must not get a
    default that two different tool lists share (that would give one env's episodes another env's prompt)."""
    from rowgym.contract import EpisodeContext

    retail, home = rowgym.make("rowgym/ToolAPI-Retail-v0"), rowgym.make("rowgym/ToolAPI-Home-v0")
    system = "The same system prompt."  # only the tools differ between the two prompts
    convs = []
    for env in (retail, home):
        obs, _ = env.reset(seed=0)
        ctx = EpisodeContext(env_id="e", seed=0, split="train", system_prompt=system, tools=env.tools,
                             observation=obs, max_turns=4)
        assert ctx.tools_json == env.tools_json()
        conv = TokenConversation(tokenizer, system, ctx.tools, obs, tools_json=ctx.tools_json)
        assert conv.prompt_ids == _render_first_prompt(tokenizer, system, env.tools, obs)
        convs.append(conv)
        env.close()
    assert convs[0].prompt_ids != convs[1].prompt_ids


def test_add_observation_appends_only_new_ids(tokenizer):
    env = rowgym.make("rowgym/ToolAPI-Home-v0")
    obs, _ = env.reset(seed=1)
    conv = TokenConversation(tokenizer, env.system_prompt, env.tools, obs)
    sampled = tokenizer.encode('<tool_call>\n{"name": "finish", "arguments": {}}\n</tool_call>',
                               add_special_tokens=False)
    rec = conv.record(sampled, [-1.0] * len(sampled), "stop")
    before = conv.prompt_ids + sampled
    conv.add_completion(sampled)
    conv.add_observation("done")
    assert conv.prompt_ids[:len(before)] == before
    assert conv.mask == rec.mask + [0] * (len(conv.prompt_ids) - len(before))
    env.close()


async def test_a_conversation_past_the_context_is_a_policy_failure(tiny_model_dir):
    import rowgym
    from rowgym.agents.hf_policy import HFPolicy
    from rowgym.rollouts.episode import EpisodeKey, play_episode

    env = rowgym.make("rowgym/ToolAPI-Home-v0", max_turns=50)
    agent = HFPolicy(model_dir=tiny_model_dir, max_tokens=8)
    agent.max_context = 700  # the first prompt fits, a few turns of observations do not
    ep = await play_episode(env, agent, EpisodeKey("ctx", 1))
    assert ep.failure is not None and ep.failure.kind == "policy"
    assert "beyond the model's context of 700 tokens" in ep.failure.reason
    assert ep.steps and all(len(s.tokens.prompt_ids) + 8 <= 700 for s in ep.steps)
