"""The rollout engine against the mock completions server (no vLLM): groups, token records,
failure attribution, timeouts, outages with a short retry budget, resume, progress stats."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace

import pytest

from rowgym.rollouts import mock
from rowgym.rollouts.engine import CollectConfig, Outcome, Summary, _Progress, acollect
from rowgym.rollouts.episode import EpisodeKey, Timeouts, _failure_kind, play_episode
from rowgym.rows import Action, Verdict
from rowgym.store import TrajectoryStore

pytest.importorskip("transformers", reason="the vllm agent needs the tiny model's tokenizer")

COMPLETION = '<tool_call>\n{"name": "tick", "arguments": {}}\n</tool_call>'


@pytest.fixture(scope="module")
def model_dir(tiny_model_dir):
    # always through the builder (a no-op when current): a stale model in the cache dir
    # would give this process and Ray's worker processes different tokenizers
    return tiny_model_dir


@pytest.fixture(scope="module")
def completion(model_dir):
    from rowgym.agents.llm import load_tokenizer

    tok = load_tokenizer(model_dir)
    return tok.encode(COMPLETION, add_special_tokens=False) + [tok.convert_tokens_to_ids("<|im_end|>")]


def _cfg(out, srv, model_dir, **kw) -> CollectConfig:
    agent_kwargs = {"base_url": srv.base_url, "model_dir": model_dir, **kw.pop("agent_kwargs", {})}
    return CollectConfig(env_id=mock.COUNTDOWN_ID, agent="vllm", out=out, progress=False, agent_kwargs=agent_kwargs,
                         setup_modules=["rowgym.rollouts.mock"], **kw)


async def test_groups_tokens_and_masks(tmp_path, model_dir, completion):
    async with mock.MockCompletionsServer(completion, COMPLETION, latency_s=0.01) as srv:
        s = await acollect(_cfg(tmp_path, srv, model_dir, episodes=3, group_size=4, concurrency=6))
    assert (s.n_done, s.n_success, s.n_played) == (12, 12, 12)
    assert s.completion_tokens == 12 * 8 * len(completion) and srv.calls == 12 * 8
    eps = list(TrajectoryStore(tmp_path).episodes())
    by_group: dict[str, list[int]] = {}
    for ep in eps:
        assert ep.group_id == f"{ep.run_id}:{ep.seed}" and ep.episode_id == f"{ep.group_id}:{ep.sample_index}"
        by_group.setdefault(ep.group_id, []).append(ep.sample_index)
        assert len(ep.steps) == 8 and ep.steps[-1].truncated and ep.success
        for a, b in zip(ep.steps, ep.steps[1:], strict=False):
            carried = a.tokens.prompt_ids + a.tokens.completion_ids
            assert b.tokens.prompt_ids[:len(carried)] == carried
            assert b.tokens.mask == a.tokens.mask + [0] * (len(b.tokens.prompt_ids) - len(carried)) + [1] * len(completion)
        assert ep.steps[0].tokens.logprobs == [-0.5] * len(completion)
    assert sorted(map(sorted, by_group.values())) == [[0, 1, 2, 3]] * 3
    assert _as_tuple(s) == _as_tuple(_read_back(tmp_path, s))


def _read_back(out, s: Summary) -> Summary:
    """The summary computed from the stored episodes (what the engine tallies as it stores them)."""
    return Summary.of(out, s.run_id, TrajectoryStore(out, readonly=True).episodes(), s.n_skipped, s.wall_s)


def _as_tuple(s: Summary) -> tuple:
    return (s.n_done, s.n_skipped, s.n_success, s.n_failed, round(s.mean_reward, 9), round(s.bad_call_rate, 9),
            s.failures)


async def test_outage_beyond_the_retry_budget_fails_with_reason_then_resume(tmp_path, model_dir, completion):
    """A server outage longer than the retry budget: those episodes fail (kind policy, with the
    reason), the others complete, nothing is lost; a rerun plays nothing twice."""
    async with mock.MockCompletionsServer(completion, COMPLETION, latency_s=0.02) as srv:
        cfg = _cfg(tmp_path, srv, model_dir, episodes=8, group_size=2, concurrency=4,
                   agent_kwargs={"retry_budget_s": 0.5})

        async def outage():
            while srv.calls < 40:
                await asyncio.sleep(0.005)
            srv.fail_status = 503
            await asyncio.sleep(1.5)
            srv.fail_status = None

        out, s = await asyncio.gather(outage(), acollect(cfg))
        assert s.n_done == 16
        assert s.failures.get("policy", 0) >= 1 and set(s.failures) == {"policy"}
        assert _as_tuple(s) == _as_tuple(_read_back(tmp_path, s))  # tallied while storing, failures included
        eps = list(TrajectoryStore(tmp_path).episodes())
        failed = [e for e in eps if e.failure]
        assert all("unavailable" in e.failure.reason and "HTTP 503" in e.failure.reason for e in failed)
        assert sum(e.success for e in eps) == 16 - len(failed) >= 4
        again = await acollect(cfg)
        assert again.n_skipped == 16 and again.n_played == 0 and again.n_done == 16
        assert _as_tuple(again) == _as_tuple(s)[:1] + (16,) + _as_tuple(s)[2:]  # read back from the store

        # --retry-failed plays exactly the failed episodes again; their new records replace the failed ones
        calls = srv.calls
        retried = await acollect(replace(cfg, retry_failed=True))
        assert retried.n_played == len(failed) and srv.calls - calls == 8 * len(failed)
        assert (retried.n_done, retried.n_success, retried.n_failed) == (16, 16, 0)
    store = TrajectoryStore(tmp_path, readonly=True)
    eps = list(store.episodes())
    assert len(eps) == 16 and len({e.episode_id for e in eps}) == 16 and all(e.success for e in eps)
    lines = sum(1 for p in sorted((tmp_path / "shards").iterdir()) for _ in open(p, "rb"))
    assert lines == 16 + len(failed)  # the failed records stay on disk (append-only), superseded
    assert store.completed_ids(failed=False) == {e.episode_id for e in eps}


class _Boom(mock.CountdownEnv):
    where = "tool"

    async def grade(self) -> Verdict:
        if self.where == "grade":
            raise ValueError("grader crashed")
        return await super().grade()

    async def setup(self, task):
        if self.where == "setup":
            raise OSError("backend down")
        return await super().setup(task)


class _Slow(mock.CountdownEnv):
    async def grade(self) -> Verdict:
        await asyncio.sleep(5)
        return await super().grade()


class _Ticker:
    name = "ticker"

    def __init__(self, delay: float = 0.0):
        self.delay = delay

    def policy_info(self):
        from rowgym.rows import PolicyInfo

        return PolicyInfo(agent="ticker")

    async def reset(self, ctx):
        pass

    async def act(self, obs):
        from rowgym.agents.base import AgentTurn

        await asyncio.sleep(self.delay)
        return AgentTurn(Action.call("tick"))

    async def aclose(self):
        pass


@pytest.mark.parametrize("env, agent, timeouts, kind, text", [
    (_Boom, _Ticker(), Timeouts(), "grader", "grader crashed"),
    (_Boom, _Ticker(), Timeouts(), "env", "backend down"),
    (_Slow, _Ticker(), Timeouts(step_s=0.2), "timeout", "exceeded 0.2s"),
    (mock.CountdownEnv, _Ticker(1.0), Timeouts(turn_s=0.1), "timeout", "did not answer turn 0"),
    (mock.CountdownEnv, _Ticker(0.05), Timeouts(episode_s=0.2), "timeout", "episode exceeded"),
])
async def test_failure_attribution(env, agent, timeouts, kind, text):
    e = env()
    if env is _Boom:
        e.where = "grade" if kind == "grader" else "setup"
    ep = await play_episode(e, agent, EpisodeKey("r", 3), timeouts)
    assert ep.failure is not None and ep.failure.kind == kind and text in ep.failure.reason
    assert not ep.success


def test_failure_kinds_of_exceptions():
    from rowgym.errors import GraderError, PolicyServerError
    from rowgym.sandboxes.base import SandboxUnavailable

    assert _failure_kind(PolicyServerError("x")) == "policy"
    assert _failure_kind(SandboxUnavailable("x")) == "sandbox"
    assert _failure_kind(GraderError("x")) == "grader"
    assert _failure_kind(TimeoutError()) == "timeout"
    assert _failure_kind(KeyError("x")) == "env"


def test_outcome_counts_what_the_episode_says():
    """An episode's outcome (what the progress bar counts) agrees with the episode's own properties."""
    from rowgym.rollouts.engine import completion_tokens
    from rowgym.rows import Episode, Failure, PolicyInfo, StepRow, TokenRecord

    def row(turn, bad, n_tokens):
        tok = None if n_tokens is None else TokenRecord(prompt_ids=[1], completion_ids=[2] * n_tokens,
                                                        logprobs=[0.0] * n_tokens, mask=[0] + [1] * n_tokens)
        return StepRow(run_id="r", episode_id="r:1:0", group_id="r:1", env_id="e", env_version="0", seed=1,
                       split="train", turn=turn, observation="", action=Action(), next_observation="", reward=0,
                       bad_call=bad, tokens=tok)

    base = Episode(run_id="r", episode_id="r:1:0", group_id="r:1", env_id="e", env_version="0", seed=1,
                   split="train", task_hash="h", policy=PolicyInfo(agent="a"))
    won = Verdict(reward=0.75, success=True, verifier="v", verifier_version="1")
    lost = Verdict(reward=0.0, success=False, verifier="v", verifier_version="1")
    episodes = [base, base.model_copy(update={"steps": [row(0, True, 3), row(1, False, None), row(2, True, 5)],
                                              "verdict": won}),
                base.model_copy(update={"steps": [row(0, False, 2)], "verdict": won,
                                        "failure": Failure(kind="policy", reason="down")}),
                base.model_copy(update={"steps": [row(0, True, None)], "verdict": lost})]
    for ep in episodes:
        assert Outcome.of(ep) == Outcome(ep.success, ep.final_reward, ep.n_bad_calls, len(ep.steps),
                                         ep.failure.kind if ep.failure else None, completion_tokens(ep))
    assert [Outcome.of(ep).n_bad_calls for ep in episodes] == [0, 2, 0, 1]
    assert [Outcome.of(ep).completion_tokens for ep in episodes] == [0, 8, 2, 0]


def test_progress_shows_tokens_and_success():
    from rowgym.rows import Episode, Failure, PolicyInfo, StepRow, TokenRecord

    cfg = CollectConfig(env_id=mock.COUNTDOWN_ID, progress=False)
    p = _Progress(cfg, total=2, already=0)
    tok = TokenRecord(prompt_ids=[1], completion_ids=[2, 3, 4], logprobs=[0, 0, 0], mask=[0, 1, 1, 1])
    row = StepRow(run_id="r", episode_id="r:1:0", group_id="r:1", env_id="e", env_version="0", seed=1,
                  split="train", turn=0, observation="", action=Action(), next_observation="", reward=0, tokens=tok)
    ep = Episode(run_id="r", episode_id="r:1:0", group_id="r:1", env_id="e", env_version="0", seed=1, split="train",
                 task_hash="h", policy=PolicyInfo(agent="a"), steps=[row],
                 verdict=Verdict(reward=1, success=True, verifier="v", verifier_version="1"))
    p.advance(Outcome.of(ep))
    p.advance(Outcome.of(ep.model_copy(update={"failure": Failure(kind="policy", reason="down")})))
    stats = p.stats()
    assert p.tokens == 6 and "tok/s" in stats and "success 50%" in stats and "policy:1" in stats


@pytest.mark.slow
def test_ray_backend_writes_the_same_store(tmp_path, model_dir, completion):
    ray = pytest.importorskip("ray")
    with mock.MockServerProcess(completion, COMPLETION, latency_s=0.01) as srv:
        ray.init(num_cpus=2, include_dashboard=False, configure_logging=False)
        try:
            s = asyncio.run(acollect(_cfg(tmp_path / "ray", srv, model_dir, episodes=4, group_size=2,
                                          concurrency=4, backend="ray")))
            again = asyncio.run(acollect(_cfg(tmp_path / "ray", srv, model_dir, episodes=4, group_size=2,
                                              concurrency=4, backend="ray")))
        finally:
            ray.shutdown()
        asyncio.run(acollect(_cfg(tmp_path / "local", srv, model_dir, episodes=4, group_size=2,
                                          concurrency=4)))
    assert (s.n_done, s.n_success, s.n_played) == (8, 8, 8)
    assert again.n_skipped == 8 and again.n_played == 0
    ray_store, local_store = TrajectoryStore(tmp_path / "ray"), TrajectoryStore(tmp_path / "local")
    assert ray_store.verify() == [] and ray_store.manifest.status == "complete"
    assert "backend=ray" in ray_store.manifest.processing[0]

    def shape(store):
        return sorted((e.seed, e.sample_index, e.success, json.dumps([st.tokens.model_dump() for st in e.steps]))
                      for e in store.episodes())

    assert shape(ray_store) == shape(local_store)


def test_gc_settings_are_restored_after_a_collection_even_on_error():
    import gc

    from rowgym.rollouts.engine import fewer_gc_pauses

    before = gc.get_threshold()
    with pytest.raises(RuntimeError), fewer_gc_pauses():
        assert gc.get_freeze_count() > 0 and gc.get_threshold()[0] >= 50_000
        raise RuntimeError("boom")
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0


def test_gc_threshold_grows_with_the_episodes_in_flight():
    """What in-flight episodes hold until stored (rows, id lists) must not trigger young passes by itself."""
    import gc

    from rowgym.rollouts.engine import fewer_gc_pauses

    before = gc.get_threshold()
    with fewer_gc_pauses(4):
        few = gc.get_threshold()[0]
    with fewer_gc_pauses(256):
        many = gc.get_threshold()
    assert many[0] >= few + 500 * 252 and many[1:] == before[1:]
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0


def test_agent_revision_is_reread_when_the_build_file_changes(tmp_path):
    """Agents are built per worker, so the model's revision is cached per directory; a rebuilt
    model (its rowgym_build.json rewritten) is seen by the next agent."""
    from rowgym.agents.llm import model_revision

    assert model_revision(tmp_path) is None
    meta = tmp_path / "rowgym_build.json"
    meta.write_text(json.dumps({"params_hash": "aaa"}))
    assert model_revision(tmp_path) == "aaa"
    meta.write_text(json.dumps({"params_hash": "bbbb"}))  # a different size: seen even within one mtime tick
    assert model_revision(tmp_path) == "bbbb"
    meta.unlink()
    assert model_revision(tmp_path) is None


async def test_the_last_worker_drains_before_it_closes_its_env_and_agent():
    """run_keys awaits ``drain`` once, after every episode was handed over and before the last
    worker's teardown (the collection drains its store writer there)."""
    import rowgym
    from rowgym.agents import make_agent
    from rowgym.rollouts.engine import Hooks, run_keys

    events: list[str] = []

    def agent_factory(cfg, env):
        agent = make_agent("expert", env)
        close = agent.aclose

        async def aclose():
            events.append("close")
            await close()

        agent.aclose = aclose
        return agent

    async def drain():
        events.append("drain")
        await asyncio.sleep(0)

    cfg = CollectConfig(env_id="rowgym/ToolAPI-Retail-v0", agent="expert", progress=False)
    seeds = rowgym.make(cfg.env_id).splits.seeds("train", 5)
    keys = [EpisodeKey("r", s) for s in seeds]
    await run_keys(cfg, keys, lambda ep: events.append("ep"), concurrency=3, hooks=Hooks(make_agent=agent_factory),
                   drain=drain)
    assert events.count("drain") == 1 and events.count("ep") == 5 and events.count("close") == 3
    at = events.index("drain")
    assert "ep" not in events[at:] and events[-1] == "close"  # every episode before it; the last close after it


async def test_a_collection_stores_every_episode_before_the_last_agent_closes(tmp_path, model_dir, completion):
    from rowgym.agents import make_agent
    from rowgym.rollouts.engine import Hooks

    stored_at_close: list[int] = []

    def agent_factory(cfg, env):
        agent = make_agent(cfg.agent, env, **cfg.agent_kwargs)
        close = agent.aclose

        async def aclose():
            if (tmp_path / "shards").is_dir():  # not the probe agent, closed before the run starts
                stored_at_close.append(len(TrajectoryStore(tmp_path, readonly=True).completed_ids()))
            await close()

        agent.aclose = aclose
        return agent

    async with mock.MockCompletionsServer(completion, COMPLETION, latency_s=0.01) as srv:
        s = await acollect(_cfg(tmp_path, srv, model_dir, episodes=4, concurrency=4),
                           Hooks(make_agent=agent_factory))
    assert s.n_done == 4
    assert len(stored_at_close) == 4 and stored_at_close[-1] == 4  # the last agent closed after the last commit
