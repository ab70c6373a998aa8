"""Red team: the env server's and client's boundaries (marker ``redteam``).

* A reset that raises answers at once with the env's error, and closes the env (it held the
  session's lock while closing the session, and hung until the client timed out).
* A reset that got no answer leaves no session behind once the client resets again or closes.
* Agent input never raises through ``RemoteEnv.step``: what a local env makes a bad call of
  (too long, nested too deep) is a bad call of the same kind, with the same reward.
* Malformed request bodies are a 400 usage error, never a 500.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request

import pytest
from remote_helpers import TOKEN, ThreadServer

import rowgym
from rowgym.envs.remote import protocol as P
from rowgym.errors import EnvError
from rowgym.rollouts import mock
from rowgym.rows import Action, ToolCall
from rowgym.tools import MAX_ACTION_CHARS, MAX_ARGUMENTS_CHARS

pytestmark = pytest.mark.redteam
RETAIL = "rowgym/ToolAPI-Retail-v0"


@pytest.fixture(autouse=True)
def _token(monkeypatch):
    monkeypatch.setenv("ROWGYM_ENV_TOKEN", TOKEN)


def post(base: str, path: str, raw: bytes, timeout: float = 5) -> tuple[int, dict]:
    req = urllib.request.Request(base + path, data=raw, method="POST",
                                 headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def wait_until(cond, timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


# ---------------------------------------------------------------- resets that fail or get no answer
CLOSED: list[int] = []


class _ResetBoom(mock.CountdownEnv):
    async def setup(self, task):
        raise RuntimeError("backend down during reset")

    async def aclose(self):
        CLOSED.append(id(self))
        await super().aclose()


class _SlowReset(mock.CountdownEnv):
    async def setup(self, task):
        await asyncio.sleep(0.3)
        return await super().setup(task)


BOOM, SLOW = "rowgym-test/RemoteResetBoom-v0", "rowgym-test/RemoteSlowReset-v0"
COUNTDOWN = "rowgym-test/RemoteCountdown-v0"
for _id, _cls in ((BOOM, _ResetBoom), (SLOW, _SlowReset), (COUNTDOWN, mock.CountdownEnv)):
    rowgym.register(_id, _cls, replace=True)


@pytest.fixture(scope="module")
def boom_server():
    ts = ThreadServer(BOOM)
    yield ts
    ts.close()


def test_a_failing_reset_answers_at_once_with_its_cause_and_closes_the_env(boom_server):
    ts = boom_server
    env = rowgym.make(f"{ts.url}/{BOOM}", request_timeout_s=5)
    before = len(CLOSED)
    t = time.monotonic()
    with pytest.raises(EnvError, match="RuntimeError: backend down during reset"):
        env.reset(seed=1)
    assert time.monotonic() - t < 2  # was: hung until the client's timeout, as a bare TimeoutError
    assert len(CLOSED) == before + 1 and not ts.srv.sessions
    env.close()


def test_a_bad_seed_is_a_usage_error_at_once(boom_server):
    # gymnasium refuses a negative seed on the client; a raw frame reaches the env's own check
    status, body = post(boom_server.url, "/v1/sessions", b'{"seed": -5}')
    assert status == 400 and body["error"]["kind"] == "usage" and "non-negative" in body["error"]["message"]
    assert not boom_server.srv.sessions


def test_a_reset_without_an_answer_leaves_no_session_behind():
    ts = ThreadServer(SLOW)
    try:
        env = rowgym.make(f"{ts.url}/{SLOW}", request_timeout_s=0.05)
        for seed in range(3):
            with pytest.raises(EnvError, match="Timeout"):
                env.reset(seed=seed)
        assert env.session_id is None and len(env._unanswered) == 3
        # each reset closed the sessions of the ones before it: at most the last is still open
        sessions = ts.srv.sessions
        assert wait_until(lambda: len(sessions) <= 1 and not any(s.lock.locked() for s in sessions.values()))
        env.close()  # deletes the one it never heard back about
        assert wait_until(lambda: not ts.srv.sessions), ts.srv.sessions
        env.request_timeout_s = 5
        env.reset(seed=1)  # and the env is still usable
        assert list(ts.srv.sessions) == [env.session_id] and env._unanswered == []
        env.close()
        assert not ts.srv.sessions
    finally:
        ts.close()


def test_a_create_that_arrives_after_its_id_was_replaced_is_refused():
    ts = ThreadServer(COUNTDOWN)
    try:
        base = ts.url
        late = "a" * 32
        status, _ = post(base, "/v1/sessions", json.dumps({"seed": 1, "replaces": [late]}).encode())
        assert status == 200 and len(ts.srv.sessions) == 1
        status, body = post(base, "/v1/sessions", json.dumps({"seed": 1, "session_id": late}).encode())
        assert status == 409 and "closed already" in body["error"]["message"] and len(ts.srv.sessions) == 1
        # a v1 client (no id of its own, one id to replace) is served as before
        sid = next(iter(ts.srv.sessions))
        status, body = post(base, "/v1/sessions", json.dumps({"seed": 2, "replaces": sid}).encode())
        assert status == 200 and list(ts.srv.sessions) == [body["session_id"]]
        # an id that exists cannot be taken, and ids must look like ids
        status, _ = post(base, "/v1/sessions", json.dumps({"session_id": body["session_id"]}).encode())
        assert status == 409
        status, _ = post(base, "/v1/sessions", json.dumps({"session_id": "../x"}).encode())
        assert status == 400 and len(ts.srv.sessions) == 1
    finally:
        ts.close()


def test_a_client_of_a_v1_server_sends_no_session_id(monkeypatch):
    ts = ThreadServer(COUNTDOWN)
    try:
        env = rowgym.make(f"{ts.url}/{COUNTDOWN}")
        env.protocol = 1
        sent: list[dict] = []
        real = env._call

        async def spy(method, path, body, **kw):
            sent.append(body)
            return await real(method, path, body, **kw)

        monkeypatch.setattr(env, "_call", spy)
        env.reset(seed=1)
        first = env.session_id
        env.reset(seed=2)
        assert "session_id" not in sent[0] and sent[1]["replaces"] == first
        assert list(ts.srv.sessions) == [env.session_id]
        env.close()
    finally:
        ts.close()


# ---------------------------------------------------------------- agent input through the client
def deep(n: int):
    d: object = 1
    for _ in range(n):
        d = {"a": d}
    return d


HUGE = 9_000_000  # over the server's 8 MiB body limit
ACTIONS = {
    "dict args nested 2000": {"name": "calculate", "arguments": deep(2000)},
    "dict unknown tool nested 2000": {"name": "nope", "arguments": deep(2000)},
    "dict args nested 200": {"name": "calculate", "arguments": deep(200)},
    "dict int of 5000 digits": {"name": "calculate", "arguments": {"expression": 10**4999}},
    "dict without a name, huge": {"arguments": "x" * HUGE},
    "dict huge arguments": {"name": "calculate", "arguments": {"expression": "1" * HUGE}},
    "dict huge junk key": {"name": "calculate", "arguments": {"expression": "1+1"}, "junk": "x" * HUGE},
    "str 9 MB": "<tool_call>" + "x" * HUGE,
    "str 1.5M chars + lone surrogate": "\ud800" + "é" * 1_500_000,
    "str 100k chars": "y" * 100_000,
    "Action text 9 MB": Action(text="x" * HUGE),
    "ToolCall huge arguments": ToolCall(name="calculate", arguments='{"expression": "' + "1" * HUGE + '"}'),
    "ToolCall huge blank arguments": ToolCall(name="calculate", arguments=" " * HUGE),
    "ToolCall huge name": ToolCall(name="n" * HUGE, arguments="{}"),
}
EXACT = {"dict args nested 200", "dict without a name, huge", "dict huge junk key", "str 100k chars",
         "ToolCall huge blank arguments"}
"""Actions whose remote observation is the local one word for word (the others say the same thing,
with the length or the cause of what could not travel)."""


@pytest.fixture(scope="module")
def retail_server():
    ts = ThreadServer(RETAIL)
    yield ts
    ts.close()


@pytest.fixture(scope="module")
def retail_pair(retail_server):
    local, remote = rowgym.make(RETAIL), rowgym.make(f"{retail_server.url}/{RETAIL}", token=TOKEN)
    yield local, remote
    local.close()
    remote.close()


@pytest.mark.parametrize("name", list(ACTIONS))
def test_agent_input_is_the_same_bad_call_through_the_remote_env(retail_pair, name):
    local, remote = retail_pair
    out = {}
    for label, env in (("local", local), ("remote", remote)):
        env.reset(seed=1)
        obs, reward, terminated, truncated, info = env.step(ACTIONS[name])
        out[label] = obs, reward, terminated, truncated, {k: info[k] for k in ("bad_call", "error_kind", "turn")}
        out[label + "_call"] = info["tool_call"]
    (lo, *lrest), (ro, *rrest) = out["local"], out["remote"]
    assert rrest == lrest, (lo[:200], ro[:200])
    assert (out["local_call"] is None) == (out["remote_call"] is None)
    if name in EXACT:
        assert ro == lo
    assert len(ro) < 2000


@pytest.mark.parametrize("name", list(ACTIONS))
def test_a_step_body_fits_the_server(name):
    body = P.step_body(ACTIONS[name])
    assert len(body) <= P.MAX_BODY_BYTES
    if name in EXACT - {"dict without a name, huge", "dict huge junk key", "ToolCall huge blank arguments"}:
        assert json.loads(body)["action"] == P.encode_action(ACTIONS[name])  # sent as it is


def test_bounded_actions_stay_what_they_were():
    blank = P.bounded_action(ToolCall(name="t", arguments=" " * (MAX_ARGUMENTS_CHARS + 5)))
    assert blank.arguments == ""  # blank arguments are no arguments, as locally
    padded = P.bounded_action(ToolCall(name="t", arguments=" " * MAX_ARGUMENTS_CHARS + "{}"))
    assert len(padded.arguments) == MAX_ARGUMENTS_CHARS + 1 and padded.arguments.strip() == "{}"  # still too long
    assert len(P.bounded_action("x" * (MAX_ACTION_CHARS + 10))) == MAX_ACTION_CHARS + 1
    assert P.bounded_action({"arguments": deep(5)}) == {}
    assert P.bounded_action({"name": "t", "arguments": deep(5000)}) == P.TOO_DEEP


# ---------------------------------------------------------------- malformed frames
def test_json_too_deep_for_any_decoder_is_a_value_error():
    with pytest.raises(ValueError, match="nested too deeply"):
        P.loads(b"[" * 100_000 + b"]" * 100_000)


@pytest.mark.parametrize("path", ["/v1/sessions", "/v1/sessions/SID", "/v1/splits", "/v1/task_hashes"])
def test_a_body_nested_too_deep_is_a_400(retail_server, path):
    if "SID" in path:  # a step names a session that exists
        status, body = post(retail_server.url, "/v1/sessions", b'{"seed": 1}')
        assert status == 200
        path = path.replace("SID", body["session_id"])
    raw = b'{"action":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    status, body = post(retail_server.url, path, raw)
    assert status == 400 and body["error"]["message"] == "the JSON is nested too deeply"
