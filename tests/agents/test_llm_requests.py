"""What the vLLM agent puts on the wire and what it accepts back: the request bytes, the check that the
server echoed the prompt ids it was sent, and the errors of a rejecting, failing, dead or slow server."""

from __future__ import annotations

import asyncio
import json
import re
import socket
from collections.abc import Callable
from typing import Any

import pytest

from rowgym import aio
from rowgym.agents import llm
from rowgym.errors import PolicyServerError

pytest.importorskip("transformers", reason="the vllm agent needs the tiny model's tokenizer")

PROMPT = [151644, 8948, 198, 7771, 13, 151645, 198, 151644, 872, 198]
SAMPLED = [27, 14172, 151645]
LOGPROBS = [-0.5, -0.25, -0.125]


@pytest.fixture(autouse=True)
def _fresh_pools(fresh_server_pools):
    """Every test here starts and ends with no server pools (tests/conftest.py)."""


def answer(prompt: list[int], *, top: Any = None, in_choice: Any = "same", ids: Any = SAMPLED,
           lps: Any = LOGPROBS) -> dict[str, Any]:
    """A completions answer in vLLM's shape; ``top``/``in_choice`` are the echoed prompt ids (``"same"``:
    the prompt as sent, None: not echoed)."""
    choice: dict[str, Any] = {"index": 0, "text": "x", "finish_reason": "stop", "token_ids": ids,
                              "logprobs": {"token_logprobs": lps}}
    if in_choice is not None:
        choice["prompt_token_ids"] = prompt if in_choice == "same" else in_choice
    out: dict[str, Any] = {"choices": [choice]}
    if top is not None:
        out["prompt_token_ids"] = prompt if top == "same" else top
    return out


class Server:
    """A completions server whose answer is ``respond(request_body) -> (status, json)``; records the raw bodies."""

    def __init__(self, respond: Callable[[dict[str, Any]], tuple[int, Any]], delay_s: float = 0.0):
        self.respond, self.delay_s = respond, delay_s
        self.bodies: list[bytes] = []
        self.content_types: list[str] = []

    async def __aenter__(self) -> Server:
        from aiohttp import web

        async def completions(request: Any) -> Any:
            raw = await request.read()
            self.bodies.append(raw)
            self.content_types.append(request.headers.get("Content-Type", ""))
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            status, out = self.respond(aio.loads(raw))
            body = out if isinstance(out, bytes) else aio.dumps(out)  # bytes: sent as they are
            return web.Response(status=status, body=body, content_type="application/json")

        app = web.Application()
        app.router.add_post("/v1/completions", completions)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.runner.cleanup()


def agent(url: str, model_dir: Any, **kw: Any) -> llm.VLLMAgent:
    return llm.VLLMAgent(url, model_dir=model_dir, max_tokens=64, **kw)


@pytest.mark.parametrize("seed", [None, 5])
async def test_the_request_bytes_are_the_documented_json(tiny_model_dir, seed):
    async with Server(lambda b: (200, answer(b["prompt"]))) as srv:
        a = agent(srv.url, tiny_model_dir, seed=seed, temperature=0.7, top_p=0.9)
        try:
            for turn in (11, 12):
                assert await a.generate(PROMPT + [turn], turn) == (SAMPLED, LOGPROBS, "stop")
        finally:
            await a.aclose()
    assert len(srv.bodies) == 2 and set(srv.content_types) == {"application/json"}
    for turn, raw in zip((11, 12), srv.bodies, strict=True):
        want = {"model": a.model, "prompt": PROMPT + [turn], "max_tokens": 64, "temperature": 0.7, "top_p": 0.9,
                "logprobs": 0, "return_token_ids": True, "skip_special_tokens": False}
        if seed is not None:
            want["seed"] = turn  # the per-turn seed the turn loop passes, only for a seeded agent
        assert raw == aio.dumps(want)


ACCEPTED = {
    "echoed in the choice": dict(in_choice="same"),
    "echoed at the top": dict(top="same", in_choice=None),
    "both": dict(top="same"),
    "not echoed": dict(in_choice=None),
    "empty at the top, right in the choice": dict(top=[], in_choice="same"),
}
REFUSED = {
    "one id changed": dict(in_choice=PROMPT[:-1] + [PROMPT[-1] + 1]),
    "first id changed": dict(in_choice=[PROMPT[0] - 1] + PROMPT[1:]),
    "a prefix": dict(in_choice=PROMPT[:-1]),
    "one more id": dict(in_choice=PROMPT + [198]),
    "reordered": dict(in_choice=PROMPT[::-1]),
    "ids as strings": dict(in_choice=[str(i) for i in PROMPT]),
    "empty in the choice": dict(in_choice=[]),
    "wrong at the top, right in the choice": dict(top=PROMPT[:3], in_choice="same"),
    "empty at the top, wrong in the choice": dict(top=[], in_choice=PROMPT[1:]),
}


@pytest.mark.parametrize("echo", list(ACCEPTED.values()), ids=list(ACCEPTED))
async def test_an_exact_echo_of_the_prompt_ids_is_accepted(tiny_model_dir, echo):
    async with Server(lambda b: (200, answer(b["prompt"], **echo))) as srv:
        a = agent(srv.url, tiny_model_dir)
        try:
            assert await a.generate(list(PROMPT), 1) == (SAMPLED, LOGPROBS, "stop")
        finally:
            await a.aclose()


@pytest.mark.parametrize("echo", list(REFUSED.values()), ids=list(REFUSED))
async def test_any_other_echo_of_the_prompt_ids_is_refused(tiny_model_dir, echo):
    async with Server(lambda b: (200, answer(b["prompt"], **echo))) as srv:
        a = agent(srv.url, tiny_model_dir)
        try:
            with pytest.raises(PolicyServerError, match="^the server reports different prompt ids than were sent$"):
                await a.generate(list(PROMPT), 1)
        finally:
            await a.aclose()
    assert len(srv.bodies) == 1  # a lying server is not retried


async def test_logprobs_must_match_the_sampled_ids(tiny_model_dir):
    async with Server(lambda b: (200, answer(b["prompt"], lps=LOGPROBS[:2]))) as srv:
        a = agent(srv.url, tiny_model_dir)
        try:
            with pytest.raises(PolicyServerError, match="returned 3 token ids but 2 logprobs"):
                await a.generate(list(PROMPT), 1)
        finally:
            await a.aclose()


@pytest.mark.parametrize("lps, shown", [([-0.5, None, -0.125], "None"), ([-0.5, "-inf", -0.125], "'-inf'"),
                                        ([-0.5, -0.25, {}], "{}")])
async def test_a_logprob_that_is_not_a_finite_number_is_refused(tiny_model_dir, lps, shown):
    """JSON's null (how NaN and the infinities come out of most JSON writers) would be stored as null and never
    read back."""
    async with Server(lambda b: (200, answer(b["prompt"], lps=lps))) as srv:
        a = agent(srv.url, tiny_model_dir)
        try:
            with pytest.raises(PolicyServerError, match=rf"^server returned a logprob that is not a finite number "
                                                        rf"\({re.escape(shown)}\) for one of 3 sampled tokens$"):
                await a.generate(list(PROMPT), 1)
        finally:
            await a.aclose()
    assert len(srv.bodies) == 1


@pytest.mark.parametrize("loads", ["orjson", "json"])
async def test_a_nan_literal_in_the_answer_is_the_policys_failure(tiny_model_dir, monkeypatch, loads):
    """A NaN literal is not JSON: orjson refuses the answer, the stdlib parser reads a NaN; a policy error either way."""
    if loads == "json":
        monkeypatch.setattr(llm.aio, "loads", json.loads)
    raw = aio.dumps(answer(PROMPT, lps=[-0.5, 1234.5, -0.125])).replace(b"1234.5", b"NaN")
    async with Server(lambda b: (200, raw)) as srv:
        a = agent(srv.url, tiny_model_dir)
        try:
            with pytest.raises(PolicyServerError) as e:
                await a.generate(list(PROMPT), 1)
        finally:
            await a.aclose()
    want = (f"policy server {srv.url} answered with invalid JSON: " if loads == "orjson"
            else "server returned a logprob that is not a finite number (nan)")
    assert str(e.value).startswith(want), e.value


async def test_a_rejected_request_fails_at_once_with_the_answer(tiny_model_dir):
    async with Server(lambda b: (400, {"error": "prompt too long"})) as srv:
        a = agent(srv.url, tiny_model_dir)
        try:
            with pytest.raises(PolicyServerError, match=r"rejected the request \(400\): .*prompt too long"):
                await a.generate(list(PROMPT), 1)
        finally:
            await a.aclose()
    assert len(srv.bodies) == 1
    assert llm.server_stats().get(srv.url, {"failures": 0})["failures"] == 0  # a refusal does not mark it down


async def test_a_5xx_is_retried_with_the_same_bytes(tiny_model_dir):
    statuses = [503, 200]

    def respond(b: dict[str, Any]) -> tuple[int, Any]:
        status = statuses.pop(0)
        return status, answer(b["prompt"]) if status == 200 else {"error": "busy"}

    async with Server(respond) as srv:
        a = agent(srv.url, tiny_model_dir)
        try:
            assert await a.generate(list(PROMPT), 1) == (SAMPLED, LOGPROBS, "stop")
        finally:
            await a.aclose()
    assert len(srv.bodies) == 2 and srv.bodies[0] == srv.bodies[1]
    assert {k: v for k, v in llm.server_stats()[srv.url].items() if "latency" not in k} == {"requests": 1,
                                                                                             "failures": 1}


async def test_a_dead_server_fails_the_turn_after_the_budget(tiny_model_dir):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
    a = agent(url, tiny_model_dir, retry_budget_s=0.2)
    try:
        with pytest.raises(PolicyServerError) as e:
            await a.generate(list(PROMPT), 1)
    finally:
        await a.aclose()
    assert str(e.value).startswith(f"policy server at {url} unavailable after 1 attempts over 0s; "
                                   f"last error: {url}: ClientConnectorError: ")
    assert llm.server_stats()[url]["failures"] == 1


async def test_a_slow_server_times_out_and_the_turn_fails_after_the_budget(tiny_model_dir):
    async with Server(lambda b: (200, answer(b["prompt"])), delay_s=2.0) as srv:
        a = agent(srv.url, tiny_model_dir, request_timeout_s=0.1, retry_budget_s=0.05)
        try:
            with pytest.raises(PolicyServerError) as e:
                await a.generate(list(PROMPT), 1)
        finally:
            await a.aclose()
    msg = str(e.value)
    assert msg.startswith(f"policy server at {srv.url} unavailable after 1 attempts over 0s; last error: {srv.url}: ")
    assert "Timeout" in msg.split("last error: ", 1)[1]


@pytest.mark.parametrize("model", ["tiny", 'a "quoted" "prompt":[1] name', "modèle-ünïcode", "x\\", ""])
def test_the_echo_check_finds_the_prompt_in_the_request_bytes(tiny_model_dir, model):
    a = agent("http://127.0.0.1:9", tiny_model_dir, model=model or None)
    payload = aio.dumps({"model": a.model, "prompt": PROMPT, "max_tokens": 64})
    at = a._prompt_offset()
    assert payload[at:].startswith(aio.dumps(PROMPT) + b',"max_tokens":')


ECHOES = [PROMPT, list(PROMPT), [float(i) for i in PROMPT], [True] + PROMPT[1:], PROMPT[:-1] + [PROMPT[-1] + 1],
          PROMPT[:-1], PROMPT + [1], [str(i) for i in PROMPT], [2**70] + PROMPT[1:], [None] * len(PROMPT),
          [[i] for i in PROMPT], "abc", {"a": 1}, [], tuple(PROMPT)]


@pytest.mark.parametrize("sent", ECHOES, ids=range(len(ECHOES)))
@pytest.mark.parametrize("prompt", [PROMPT, [1] + PROMPT[1:], [float(PROMPT[0])] + PROMPT[1:]], ids=["ids", "one", "float"])
def test_the_echo_check_answers_as_the_list_comparison(sent, prompt):
    """The byte comparison is a shortcut: it decides exactly as ``list(sent) == prompt`` for any echo."""
    payload = aio.dumps({"model": "m", "prompt": prompt, "max_tokens": 64})
    at = len(b'{"model":"m","prompt":')
    assert llm._same_ids(sent, prompt, payload, at) is ((sent if isinstance(sent, list) else list(sent)) == prompt)
