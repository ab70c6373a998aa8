"""A run's identity is everything that changes what is sampled; a resume that differs is refused
with the differing fields listed; a run may be extended but never shrunk; a dir with shards but
no manifest is refused; invalid settings write nothing."""

from __future__ import annotations

from dataclasses import replace

import pytest

import rowgym
from rowgym.errors import AgentError, RowgymError, StoreError
from rowgym.rollouts import engine
from rowgym.rollouts.engine import CollectConfig, CollectConfigError, agent_options, collect, run_identity
from rowgym.rows import PolicyInfo, RunIdentity, RunManifest, RunSource
from rowgym.store import TrajectoryStore

pytestmark = pytest.mark.redteam

ENV = "rowgym/ToolAPI-Retail-v0"


def _cfg(out, **kw) -> CollectConfig:
    return CollectConfig(env_id=ENV, out=out, progress=False, **{"episodes": 3, "concurrency": 2, **kw})


def test_resume_with_another_noise_is_refused_listing_the_fields(tmp_path):
    collect(_cfg(tmp_path))
    before = sorted(p.read_bytes() for p in (tmp_path / "shards").iterdir())
    with pytest.raises(StoreError, match=r"refusing to resume .*: noise 0\.0 -> 0\.9"):
        collect(_cfg(tmp_path, agent_kwargs={"noise": 0.9}))
    with pytest.raises(StoreError, match=r"noise 0\.0 -> 0\.5, seed 0 -> 3"):
        collect(_cfg(tmp_path, agent_kwargs={"noise": 0.5, "seed": 3}))
    with pytest.raises(StoreError, match=r"group_size 1 -> 2"):
        collect(_cfg(tmp_path, group_size=2))
    with pytest.raises(StoreError, match=r'split "train" -> "dev"'):
        collect(_cfg(tmp_path, split="dev"))
    with pytest.raises(StoreError, match=r"seed_offset 0 -> 1"):
        collect(_cfg(tmp_path, seed_offset=1))
    assert sorted(p.read_bytes() for p in (tmp_path / "shards").iterdir()) == before
    again = collect(_cfg(tmp_path, agent_kwargs={"noise": 0.0}))  # explicit default: the same identity
    assert again.n_skipped == 3 and again.n_played == 0


class _FakeLLM:
    """Stands for an LLM agent: its options are its constructor's, its policy reports sampling."""

    name = "fake-llm"

    def __init__(self, base_url: str = "http://127.0.0.1:8000", model: str = "tiny", temperature: float = 1.0,
                 top_p: float = 1.0, max_tokens: int = 256, seed: int | None = None, retry_budget_s: float = 180.0):
        self.base_url, self.model, self.temperature, self.top_p = base_url, model, temperature, top_p
        self.max_tokens, self.seed = max_tokens, seed

    def policy_info(self) -> PolicyInfo:
        return PolicyInfo(agent=self.name, model=self.model, revision="rev1",
                          sampling={"temperature": self.temperature, "top_p": self.top_p,
                                    "max_tokens": self.max_tokens, "base_url": self.base_url})


def _identity(**kw) -> RunIdentity:
    env = rowgym.make(ENV)
    try:
        cfg = CollectConfig(env_id=ENV, agent="tests:FakeLLM", agent_kwargs=kw)
        return run_identity(cfg, env, _FakeLLM(**kw))
    finally:
        env.close()


def test_llm_sampling_options_are_identity_and_where_the_server_lives_is_not():
    base = _identity()
    assert base.agent_options == {"max_tokens": 256, "model": "tiny", "seed": None, "temperature": 1.0, "top_p": 1.0}
    assert (base.policy_model, base.policy_revision) == ("tiny", "rev1")
    assert base.diff(_identity(temperature=0.7)) == ["temperature 1.0 -> 0.7"]
    assert base.diff(_identity(temperature=0.7, top_p=0.9)) == ["temperature 1.0 -> 0.7", "top_p 1.0 -> 0.9"]
    assert base.diff(_identity(seed=1)) == ["seed null -> 1"]
    assert base.diff(_identity(base_url="http://other:9000", retry_budget_s=5.0)) == []
    assert base.hash() == _identity(base_url="http://other:9000").hash() != _identity(max_tokens=64).hash()


def _manifest(identity: RunIdentity, seeds=(1, 2, 3)) -> RunManifest:
    return RunManifest(run_id="r", rowgym_version="0", policy=PolicyInfo(agent="fake-llm"), identity=identity,
                       identity_hash=identity.hash(),
                       source=RunSource(env_id=ENV, env_version="0", split="train", seeds=list(seeds),
                                        seed_set_hash="h"))


def test_store_refuses_a_resume_with_another_temperature(tmp_path):
    with TrajectoryStore(tmp_path) as s:
        s.start(_manifest(_identity()))
    with TrajectoryStore(tmp_path) as s, pytest.raises(StoreError, match=r"temperature 1\.0 -> 0\.7"):
        s.start(_manifest(_identity(temperature=0.7)))
    with TrajectoryStore(tmp_path) as s:  # a longer seed plan that extends the run is a resume
        m = s.start(_manifest(_identity(), seeds=(1, 2, 3, 4)))
        assert m.source.seeds == [1, 2, 3, 4]
    with TrajectoryStore(tmp_path) as s, pytest.raises(StoreError, match=r"episodes 4 -> 2 .*never shrink"):
        s.start(_manifest(_identity(), seeds=(1, 2)))


def test_a_run_can_be_extended_with_more_episodes(tmp_path):
    first = collect(_cfg(tmp_path))
    ids = {e.episode_id for e in TrajectoryStore(tmp_path, readonly=True).episodes()}
    more = collect(_cfg(tmp_path, episodes=5))
    assert (more.n_done, more.n_skipped, more.n_played) == (5, 3, 2) and more.run_id == first.run_id
    store = TrajectoryStore(tmp_path, readonly=True)
    assert ids < {e.episode_id for e in store.episodes()}
    assert len(store.manifest.source.seeds) == 5 and store.manifest.status == "complete"
    assert store.verify() == []


def test_shards_without_a_manifest_are_refused_not_restarted(tmp_path):
    collect(_cfg(tmp_path))
    (tmp_path / "manifest.json").unlink()
    with pytest.raises(StoreError, match="holds shards but no manifest.json"):
        collect(_cfg(tmp_path))
    assert not (tmp_path / "manifest.json").exists()
    assert sum(p.read_bytes().count(b"\n") for p in (tmp_path / "shards").iterdir()) == 3  # nothing replayed


@pytest.mark.parametrize("kw, msg", [
    ({"episodes": 0}, "episodes must be a whole number >= 1"),
    ({"episodes": -5}, "episodes must be a whole number >= 1"),
    ({"group_size": 0}, "group_size must be"),
    ({"concurrency": 0}, "concurrency must be"),
    ({"seed_offset": -1}, "seed_offset must be"),
    ({"turn_timeout_s": 0.0}, "turn_timeout_s must be a positive"),
    ({"backend": "threads"}, "unknown backend"),
    ({"split": "test"}, "unknown split"),
    ({"agent_kwargs": {"noise": float("nan")}}, "not a finite number"),
])
def test_invalid_settings_are_refused_before_anything_is_written(tmp_path, kw, msg):
    out = tmp_path / "run"
    with pytest.raises(RowgymError, match=msg):
        collect(_cfg(out, **kw))
    assert not out.exists()


@pytest.mark.parametrize("agent, kw, msg", [
    ("os:system", {}, "'os:system' is not an agent class"),
    ("no.such.module:Agent", {}, "cannot load agent"),
    ("random", {"noise": 0.5}, "'random'.*noise"),
])
def test_a_bad_agent_is_one_error_and_no_run_dir(tmp_path, agent, kw, msg):
    out = tmp_path / "run"
    with pytest.raises(RowgymError, match=msg) as e:
        collect(_cfg(out, agent=agent, agent_kwargs=kw))
    if not kw:  # a spec that is not an agent class fails as the agent's fault
        assert isinstance(e.value, AgentError)
    assert not out.exists()


def test_a_failed_start_removes_the_run_dir_it_created(tmp_path, monkeypatch):
    def boom(self, manifest, *, resume=True):
        raise StoreError("disk full")

    monkeypatch.setattr(TrajectoryStore, "start", boom)
    out = tmp_path / "new" / "run"
    with pytest.raises(StoreError, match="disk full"):
        collect(_cfg(out))
    assert not out.parent.exists()  # the missing parent it made goes too
    out.mkdir(parents=True)  # a dir the user made is kept, only what the store wrote goes
    with pytest.raises(StoreError, match="disk full"):
        collect(_cfg(out))
    assert out.is_dir() and list(out.iterdir()) == []


def test_identity_is_recorded_in_the_manifest(tmp_path):
    collect(_cfg(tmp_path, agent_kwargs={"noise": 0.25}))
    m = TrajectoryStore(tmp_path, readonly=True).manifest
    assert m.identity is not None and m.identity_hash == m.identity.hash()
    assert (m.identity.env_id, m.identity.split, m.identity.agent) == (ENV, "train", "expert")
    assert m.identity.agent_options == {"noise": 0.25, "seed": 0}
    assert m.identity.reward_versions and m.identity.env_version


def test_config_validation_matches_the_dataclass():
    assert engine.OPERATIONAL_OPTIONS >= {"base_url", "retry_budget_s"}
    _cfg("x").validate()
    with pytest.raises(CollectConfigError):
        replace(_cfg("x"), ray_actors=0).validate()
    assert agent_options(_FakeLLM(), {"temperature": 0.5})["temperature"] == 0.5


def test_a_run_that_dies_before_storing_anything_leaves_nothing(tmp_path, monkeypatch):
    async def dead(cfg, keys, on_episode, concurrency=None, **kw):
        raise RowgymError("backend unavailable")

    monkeypatch.setattr(engine, "run_keys", dead)
    out = tmp_path / "run"
    with pytest.raises(RowgymError, match="backend unavailable"):
        collect(_cfg(out))
    assert not out.exists()


def test_a_run_that_dies_after_storing_episodes_is_kept_for_resume(tmp_path, monkeypatch):
    real = engine.run_keys

    async def dies_late(cfg, keys, on_episode, concurrency=None, **kw):
        await real(cfg, keys[:2], on_episode, concurrency)
        raise RowgymError("killed")

    monkeypatch.setattr(engine, "run_keys", dies_late)
    with pytest.raises(RowgymError, match="killed"):
        collect(_cfg(tmp_path / "run"))
    monkeypatch.setattr(engine, "run_keys", real)
    s = collect(_cfg(tmp_path / "run"))
    assert (s.n_done, s.n_skipped) == (3, 2)


def test_the_vllm_agents_temperature_is_identity(tiny_model_dir, tmp_path):
    """The real LLM agent (no server needed to build it): a resume with another temperature is refused."""
    from rowgym.agents.llm import VLLMAgent

    def identity(**kw):
        env = rowgym.make(ENV)
        try:
            kw = {"model_dir": tiny_model_dir, **kw}
            return run_identity(CollectConfig(env_id=ENV, agent="vllm", agent_kwargs=kw), env, VLLMAgent(**kw))
        finally:
            env.close()

    base = identity(base_url="http://127.0.0.1:8000")
    assert {"temperature", "top_p", "max_tokens", "seed", "model", "model_dir"} <= set(base.agent_options)
    assert "base_url" not in base.agent_options and "retry_budget_s" not in base.agent_options
    assert base.diff(identity(base_url="http://10.0.0.2:9000/v1", retry_budget_s=1.0)) == []
    assert base.diff(identity(temperature=0.7, max_tokens=64)) == ["max_tokens 256 -> 64", "temperature 1.0 -> 0.7"]
    with TrajectoryStore(tmp_path) as s:
        s.start(_manifest(base))
    with TrajectoryStore(tmp_path) as s, pytest.raises(StoreError, match=r"refusing to resume .*temperature 1\.0 -> 0\.7"):
        s.start(_manifest(identity(temperature=0.7)))
