"""Several policy servers behind one vLLM agent: least-loaded routing, prefix locality, failover."""

from __future__ import annotations

import asyncio

import pytest

from rowgym.agents import llm
from rowgym.rollouts import mock
from rowgym.rollouts.engine import CollectConfig, acollect
from rowgym.store import TrajectoryStore

pytest.importorskip("transformers", reason="the vllm agent needs the tiny model's tokenizer")

COMPLETION = '<tool_call>\n{"name": "tick", "arguments": {}}\n</tool_call>'


@pytest.fixture(scope="module")
def completion(tiny_model_dir):
    tok = llm.load_tokenizer(tiny_model_dir)
    return tok.encode(COMPLETION, add_special_tokens=False) + [tok.convert_tokens_to_ids("<|im_end|>")]


@pytest.fixture(autouse=True)
def _fresh_pools(fresh_server_pools):
    """Every test here starts and ends with no server pools (tests/conftest.py)."""


def _cfg(out, urls, model_dir, **kw) -> CollectConfig:
    return CollectConfig(env_id=mock.COUNTDOWN_ID, agent="vllm", out=out, progress=False,
                         agent_kwargs={"base_url": urls, "model_dir": model_dir, **kw.pop("agent_kwargs", {})},
                         setup_modules=["rowgym.rollouts.mock"], **kw)


async def test_least_loaded_routing_keeps_each_episode_on_one_server(tmp_path, tiny_model_dir, completion):
    async with mock.MockCompletionsServer(completion, COMPLETION, latency_s=0.02) as a, \
            mock.MockCompletionsServer(completion, COMPLETION, latency_s=0.02) as b:
        s = await acollect(_cfg(tmp_path, [a.base_url, b.base_url], tiny_model_dir, episodes=4, concurrency=4))
    assert (s.n_done, s.n_success) == (4, 4)
    # 4 episodes of 8 turns at once: 2 per server by load, and each episode's 8 turns on one server
    assert (a.calls, b.calls) == (16, 16)
    stats = llm.server_stats()
    assert stats[a.base_url]["requests"] == 16 and stats[b.base_url]["requests"] == 16
    assert stats[a.base_url]["mean_latency_s"] >= 0.02


async def test_without_locality_turns_follow_the_load(tmp_path, tiny_model_dir, completion, monkeypatch):
    monkeypatch.setattr(llm.VLLMAgent, "locality", False)
    async with mock.MockCompletionsServer(completion, COMPLETION, latency_s=0.02) as a, \
            mock.MockCompletionsServer(completion, COMPLETION, latency_s=0.02) as b:
        s = await acollect(_cfg(tmp_path, [a.base_url, b.base_url], tiny_model_dir, episodes=1, concurrency=1))
    # one episode, so the servers are always equally loaded: its turns take them in turn
    assert s.n_success == 1 and (a.calls, b.calls) == (4, 4)


def test_equal_loads_take_turns_and_the_least_loaded_wins():
    pool = llm.ServerPool(("http://a", "http://b", "http://c"))
    a, b, c = pool.servers
    assert [pool.pick(None, None) for _ in range(6)] == [a, b, c, a, b, c]
    a.outstanding, c.outstanding = 2, 1
    assert [pool.pick(None, None) for _ in range(3)] == [b, b, b]
    b.healthy = False  # not picked while down (its cool-down has not passed: no probe starts)
    b.down_until = float("inf")
    assert [pool.pick(None, None) for _ in range(2)] == [c, c]
    assert pool.pick(a, None) is a  # locality: the episode's own server while it is healthy


def test_a_server_killed_after_30_percent_of_turns_loses_no_episode(tmp_path, tiny_model_dir, completion):
    """Two policy servers in their own processes; one is SIGKILLed once 30% of all turns are answered.
    Its in-flight turns are retried on the other: every episode completes, none is a policy failure,
    and the per-server statistics show both servers."""
    episodes, turns = 24, mock.TURNS
    with mock.MockServerProcess(completion, COMPLETION, latency_s=0.05) as a, \
            mock.MockServerProcess(completion, COMPLETION, latency_s=0.05) as b:

        async def kill_a_at_30_percent() -> int:
            while sum(v["requests"] for v in llm.server_stats().values()) < 0.3 * episodes * turns:
                await asyncio.sleep(0.005)
            a.proc.kill()
            return sum(v["requests"] for v in llm.server_stats().values())

        async def main():
            return await asyncio.gather(kill_a_at_30_percent(), acollect(_cfg(
                tmp_path, [a.base_url, b.base_url], tiny_model_dir, episodes=episodes, concurrency=8,
                agent_kwargs={"retry_budget_s": 5.0})))

        at_kill, s = asyncio.run(main())
        assert not a.proc or a.proc.poll() is not None
    assert 0.3 * episodes * turns <= at_kill < episodes * turns
    assert (s.n_done, s.n_success, s.n_failed, s.failures) == (episodes, episodes, 0, {})
    eps = list(TrajectoryStore(tmp_path).episodes())
    assert len(eps) == episodes and all(e.failure is None and len(e.steps) == turns for e in eps)
    stats = llm.server_stats()
    assert set(stats) == {a.base_url, b.base_url}
    assert stats[a.base_url]["requests"] > 0 and stats[a.base_url]["failures"] >= 1
    assert stats[a.base_url]["requests"] + stats[b.base_url]["requests"] == episodes * turns
    assert stats[b.base_url]["requests"] > 0.5 * episodes * turns


async def test_with_every_server_down_the_episode_fails_as_policy_after_the_budget(tmp_path, tiny_model_dir,
                                                                                     completion):
    async with mock.MockCompletionsServer(completion, COMPLETION, latency_s=0.01) as a, \
            mock.MockCompletionsServer(completion, COMPLETION, latency_s=0.01) as b:
        a.fail_status = b.fail_status = 503
        s = await acollect(_cfg(tmp_path, [a.base_url, b.base_url], tiny_model_dir, episodes=1, concurrency=1,
                                agent_kwargs={"retry_budget_s": 1.0}))
    assert s.failures == {"policy": 1}
    [ep] = TrajectoryStore(tmp_path).episodes()
    assert "2 servers" in ep.failure.reason and "HTTP 503" in ep.failure.reason


def test_policy_urls_are_normalised():
    assert llm.policy_urls(["http://a:1/v1/", "http://b:2", "http://a:1"]) == ("http://a:1", "http://b:2")
    with pytest.raises(llm.AgentError):
        llm.policy_urls(" , ")
