"""Environments over HTTP: the same rows as a local env, many sessions, tokens, expiry, attribution."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import urllib.error
import urllib.request
from typing import Any

import pytest
from remote_helpers import TOKEN, ThreadServer

import rowgym
from rowgym.envs.remote.client import RemoteEnv
from rowgym.errors import EnvError, GraderError
from rowgym.launcher import ManagedProcess, free_port, tcp_ok
from rowgym.rollouts import mock
from rowgym.rollouts.engine import CollectConfig, collect
from rowgym.rows import ToolCall, Verdict
from rowgym.store import TrajectoryStore

RETAIL = "rowgym/ToolAPI-Retail-v0"


@pytest.fixture(scope="module")
def retail_server():
    """``rowgym env serve``'s server module in its own process (as on another machine)."""
    port = free_port()
    proc = ManagedProcess("env server", [sys.executable, "-m", "rowgym.envs.remote.server", RETAIL, str(port)],
                          ready=lambda: tcp_ok("127.0.0.1", port), env={**os.environ, "ROWGYM_ENV_TOKEN": TOKEN})
    with proc.start(timeout=60, poll_s=0.05):
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(autouse=True)
def _token(monkeypatch):
    monkeypatch.setenv("ROWGYM_ENV_TOKEN", TOKEN)


def _health(base: str) -> dict:
    req = urllib.request.Request(base + "/v1/health", headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read())


def _comparable(ep) -> dict:
    """An episode without what differs between two runs of the same seeds: ids of the run, timings."""
    d = ep.model_dump(mode="json", exclude={"run_id", "episode_id", "group_id", "duration_s", "started_at"})
    for s in d["steps"]:
        for k in ("run_id", "episode_id", "group_id", "timings"):
            s.pop(k)
    return d


@pytest.mark.parametrize("agent,kwargs", [("expert", {"noise": 0.4}), ("random", {})])
def test_remote_and_local_collections_give_identical_rows(tmp_path, retail_server, agent, kwargs):
    before = _health(retail_server)["privileged_resets"]
    runs = {}
    for name, env_id in (("local", RETAIL), ("remote", f"{retail_server}/{RETAIL}")):
        s = collect(CollectConfig(env_id=env_id, agent=agent, agent_kwargs=kwargs, episodes=20, concurrency=8,
                                  out=tmp_path / name, progress=False))
        assert s.n_done == 20 and s.n_failed == 0
        runs[name] = sorted(TrajectoryStore(tmp_path / name).episodes(), key=lambda e: e.seed)
    local, remote = runs["local"], runs["remote"]
    assert [e.seed for e in local] == [e.seed for e in remote] and len(local) == 20
    assert sum(len(e.steps) for e in local) > 20 and any(s.bad_call for e in local for s in e.steps)
    for a, b in zip(local, remote, strict=True):
        assert _comparable(a) == _comparable(b)
    if agent == "expert":  # the expert read every task through the server's recorded privileged channel
        assert all(e.policy.privileged and e.success for e in remote)
        assert _health(retail_server)["privileged_resets"] - before >= 20
    else:
        assert _health(retail_server)["privileged_resets"] == before
    assert _health(retail_server)["sessions"] == 0


def test_64_concurrent_remote_episodes_on_one_server(tmp_path, retail_server):
    s = collect(CollectConfig(env_id=f"{retail_server}/{RETAIL}", agent="expert", episodes=32, group_size=2,
                              concurrency=64, out=tmp_path, progress=False))
    assert (s.n_done, s.n_success, s.n_failed) == (64, 64, 0)
    assert len({e.episode_id for e in TrajectoryStore(tmp_path).episodes()}) == 64
    assert _health(retail_server)["sessions"] == 0


def test_task_hashes_are_one_round_trip_and_cached(retail_server, monkeypatch):
    local, remote = rowgym.make(RETAIL), rowgym.make(f"{retail_server}/{RETAIL}")
    calls: list[tuple[str, Any]] = []
    real = remote._call_sync
    monkeypatch.setattr(remote, "_call_sync", lambda m, path, body: calls.append((path, body)) or real(m, path, body))
    try:
        seeds = list(range(100, 160))
        assert remote.task_hashes(seeds) == local.task_hashes(seeds)
        assert [c[0] for c in calls] == ["/v1/task_hashes"]
        assert remote.task_hash(130) == local.task_hash(130) and remote.task_hashes([159, 100]) == {
            159: local.task_hash(159), 100: local.task_hash(100)}
        assert len(calls) == 1  # every later ask is answered from the cache
        remote.task_hashes([100, 7, 7])
        assert calls[-1] == ("/v1/task_hashes", {"seeds": [7]})  # only the new seed, once
    finally:
        local.close()
        remote.close()


def test_the_remote_env_has_the_local_api(retail_server):
    local, remote = rowgym.make(RETAIL), rowgym.make(f"{retail_server}/{RETAIL}")
    try:
        assert isinstance(remote, RemoteEnv) and remote.env_id == RETAIL
        assert remote.tools == local.tools and remote.system_prompt == local.system_prompt
        assert remote.version == local.version and remote.reward_versions() == local.reward_versions()
        assert remote.splits.seeds("heldout", 5, start=2) == local.splits.seeds("heldout", 5, start=2)
        assert [remote.splits.split_of(s) for s in range(30)] == [local.splits.split_of(s) for s in range(30)]
        assert remote.task_hash(7) == local.task_hash(7)
        for env in (local, remote):
            env.action_space.seed(0)
        obs_l, info_l = local.reset(seed=7)
        obs_r, info_r = remote.reset(seed=7)
        assert (obs_l, info_l) == (obs_r, info_r) and remote.task is not None
        assert remote.task.model_dump() == local.task.model_dump()
        for _ in range(4):
            action = local.action_space.sample()
            out_l, out_r = local.step(action), remote.step(action)
            assert out_l == out_r
            assert isinstance(out_r[4]["tool_call"], ToolCall | type(None))
        # an unseeded reset draws a training seed, as locally
        _, info = remote.reset()
        assert info["split"] == "train"
    finally:
        local.close()
        remote.close()


async def test_sessions_are_isolated_and_run_concurrently(retail_server):
    envs = [rowgym.make(f"{retail_server}/{RETAIL}") for _ in range(2)]
    try:
        (o0, i0), (o1, i1) = await asyncio.gather(envs[0].areset(seed=3), envs[1].areset(seed=4))
        assert i0["seed"] == 3 and i1["seed"] == 4 and envs[0].session_id != envs[1].session_id
        call = {"name": "find_user_id_by_email", "arguments": {"email": "nobody@example.com"}}
        a, b = await asyncio.gather(envs[0].astep(call), envs[1].astep(call))
        assert a[4]["turn"] == b[4]["turn"] == 1
        assert (await envs[0].astep(call))[4]["turn"] == 2 and (await envs[1].astep(call))[4]["turn"] == 2
    finally:
        for e in envs:
            await e.aclose()
    assert _health(retail_server)["sessions"] == 0


@pytest.mark.redteam
@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN},
                                     {"Authorization": f"Bearer {TOKEN}x"}, {"Authorization": f"bearer {TOKEN}"}])
@pytest.mark.parametrize("method,path", [("GET", "/v1/info"), ("POST", "/v1/sessions"), ("GET", "/v1/health"),
                                         ("POST", "/v1/sessions/abc"), ("GET", "/nope"), ("POST", "/v1/splits")])
def test_a_bad_token_gets_401_and_nothing_else(retail_server, headers, method, path):
    req = urllib.request.Request(retail_server + path, method=method, headers=headers,
                                 data=b'{"seed": 3, "privileged": true}' if method == "POST" else None)
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req)
    body = e.value.read()
    assert e.value.code == 401 and body == b"401: Unauthorized"


def test_a_client_with_a_bad_token_says_so(retail_server, monkeypatch):
    monkeypatch.setenv("ROWGYM_ENV_TOKEN", "wrong")
    with pytest.raises(EnvError, match="401"):
        rowgym.make(f"{retail_server}/{RETAIL}")


def test_idle_sessions_expire_and_say_so():
    ts = ThreadServer(RETAIL, idle_timeout_s=3600)
    try:
        env = rowgym.make(f"{ts.url}/{RETAIL}")
        env.reset(seed=3)
        assert len(ts.srv.sessions) == 1
        assert ts.call(ts.srv.reap()) == 0  # not idle yet
        for s in ts.srv.sessions.values():
            s.last_used -= 7200
        assert ts.call(ts.srv.reap()) == 1 and not ts.srv.sessions
        with pytest.raises(EnvError, match="expired"):
            env.step({"name": "calculate", "arguments": {"expression": "1+1"}})
        env.reset(seed=3)  # a new episode opens a new session
        assert len(ts.srv.sessions) == 1
        env.close()
        assert not ts.srv.sessions
    finally:
        ts.close()


class _GraderBoom(mock.CountdownEnv):
    async def grade(self) -> Verdict:
        raise RuntimeError("grader exploded")



def test_failures_keep_their_kind_and_privileged_resets_can_be_refused():
    rowgym.register("rowgym-test/RemoteGraderBoom-v0", _GraderBoom, replace=True)
    ts = ThreadServer("rowgym-test/RemoteGraderBoom-v0", allow_privileged=False)
    try:
        env = rowgym.make(f"{ts.url}/rowgym-test/RemoteGraderBoom-v0")
        env.reset(seed=1)
        for _ in range(7):
            env.step({"name": "tick", "arguments": {}})
        with pytest.raises(GraderError, match="grader exploded"):
            env.step({"name": "tick", "arguments": {}})
        env.reset(seed=1)
        with pytest.raises(rowgym.RowgymError, match="privileged"):
            env.task  # noqa: B018
        env.close()
    finally:
        ts.close()


def test_an_unreachable_server_is_an_env_error():
    with pytest.raises(EnvError, match="unreachable"):
        rowgym.make(f"http://127.0.0.1:{free_port()}/{RETAIL}")
    with pytest.raises(rowgym.RowgymError, match="token"):
        rowgym.make(f"http://user:pw@127.0.0.1:1/{RETAIL}")


def test_rowgym_env_serve_and_collect_through_the_cli(tmp_path, rowgym_cli):
    import subprocess

    port = free_port()
    env = {**os.environ, "ROWGYM_ENV_TOKEN": TOKEN}
    proc = ManagedProcess("rowgym env serve", [*rowgym_cli, "env", "serve", RETAIL, "--port", str(port)],
                          ready=lambda: tcp_ok("127.0.0.1", port), env=env)
    with proc.start(timeout=60, poll_s=0.05):
        out = subprocess.run([*rowgym_cli, "collect", f"http://127.0.0.1:{port}/{RETAIL}", "--episodes", "3",
                              "--out", str(tmp_path / "run"), "--no-progress"], env=env, capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert 'SUMMARY {"episodes": 3, "success_rate": 1.0' in out.stdout
        bad = subprocess.run([*rowgym_cli, "collect", f"http://127.0.0.1:{port}/{RETAIL}", "--episodes", "1",
                              "--out", str(tmp_path / "bad")], env={**env, "ROWGYM_ENV_TOKEN": "nope"},
                             capture_output=True, text=True, timeout=120)
        assert bad.returncode != 0 and "401" in bad.stdout + bad.stderr and "Traceback" not in bad.stderr
    assert [e.seed for e in TrajectoryStore(tmp_path / "run").episodes()] != []
