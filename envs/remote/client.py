"""An environment served over HTTP, with the Gymnasium API and its async twin.

    env = rowgym.make("http://10.0.0.5:8100/rowgym/ToolAPI-Retail-v0")   # token from $ROWGYM_ENV_TOKEN
    obs, info = env.reset(seed=3)
    obs, reward, terminated, truncated, info = env.step({"name": "calculate", "arguments": {"expression": "1+1"}})

:class:`RemoteEnv` looks like the env it serves: ``env_id`` (the served id, so rows are the
same as a local run's), ``version``, ``system_prompt``, ``tools``, ``max_turns``,
``reward_versions()``, ``splits`` (``seeds``/``split_of`` answered by the server and
cached per process), ``task_hash(seed)``, ``observation_space``/``action_space``, and
``reset/step/close`` plus ``areset/astep/aclose``. Each episode is one server session
(opened by reset, closed by the next reset or by close).

**Privileged agents.** Scripted experts read ``env.task`` (the engine puts it in their
``EpisodeContext``). Over HTTP the task is served only on request: the first read of
``env.task`` in an episode fetches it (``GET /v1/sessions/ID/task``, one blocking round
trip), and from then on every reset of this env instance asks for the task with the reset
itself (``privileged=True`` does so from the start). The server counts and logs every privileged
reset, and may refuse them (``rowgym env serve --no-privileged``). The task is rebuilt as
the env class's task model when that env is installed here, else as a read-only
attribute view of its JSON.

**Resets that get no answer.** The client names each new session itself (protocol v2), so a
reset that timed out or was cancelled leaves no session it cannot reach: the next reset
closes it with the previous one (``replaces``), and ``close()`` deletes it.

**Agent input.** As with a local env, ``step`` never raises on what the agent sent: an action
too large for a request, or one that cannot be encoded as JSON, is sent as a small stand-in
the env refuses with the same kind of bad call (:func:`~rowgym.envs.remote.protocol.step_body`).

Transport failures (server down, a session expired) raise :class:`~rowgym.errors.EnvError`;
failures of the served env arrive with their own kind (sandbox, grader, timeout, env).
"""

from __future__ import annotations

import asyncio
import threading
import typing
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import gymnasium as gym
from pydantic import BaseModel

from rowgym import aio
from rowgym.envs.remote import protocol as P
from rowgym.errors import EnvError, RowgymError
from rowgym.rows import Action, Split
from rowgym.spaces import TextSpace, ToolCallSpace
from rowgym.splits import as_split

_INFO: dict[tuple[str, str, str], dict[str, Any]] = {}
_SPLIT_CACHE: dict[tuple[str, str], dict[int, Split]] = {}
_HASH_CACHE: dict[tuple[str, str, str], dict[int, str]] = {}
_LOCK = threading.Lock()


def parse_url(url: str) -> tuple[str, str]:
    """``http://host:port/ns/Name-v0`` -> (``http://host:port``, ``ns/Name-v0``).

    >>> parse_url("http://127.0.0.1:8100/rowgym/ToolAPI-Retail-v0")
    ('http://127.0.0.1:8100', 'rowgym/ToolAPI-Retail-v0')
    """
    parts = urlsplit(url)
    env_id = parts.path.lstrip("/")
    if parts.scheme not in ("http", "https") or not parts.netloc or not env_id:
        raise RowgymError(f"a remote env id looks like http://host:port/ENV_ID, got {url!r}")
    if parts.username or parts.password:
        raise RowgymError("put the env server's token in $ROWGYM_ENV_TOKEN (or token=...), not in the URL")
    return f"{parts.scheme}://{parts.netloc}", env_id


class _Sessions:
    """One aiohttp client session per event loop, shared by every RemoteEnv on it (reference-counted)."""

    by_loop: dict[int, tuple[Any, int]] = {}

    @classmethod
    def acquire(cls) -> Any:
        import aiohttp

        key = id(asyncio.get_running_loop())
        sess, n = cls.by_loop.get(key, (None, 0))
        if sess is None or sess.closed:
            sess, n = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300)), 0
        cls.by_loop[key] = (sess, n + 1)
        return sess

    @classmethod
    async def release(cls) -> None:
        key = id(asyncio.get_running_loop())
        sess, n = cls.by_loop.get(key, (None, 0))
        if sess is None:
            return
        if n <= 1:
            cls.by_loop.pop(key, None)
            await sess.close()
        else:
            cls.by_loop[key] = (sess, n - 1)


class TaskView:
    """A read-only attribute view of a task's JSON (when the task's model is not installed here)."""

    def __init__(self, data: dict[str, Any]):
        object.__setattr__(self, "_data", data)

    def __getattr__(self, name: str) -> Any:
        try:
            v = self._data[name]
        except KeyError:
            raise AttributeError(name) from None
        return _view(v)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("a remote task is read-only")

    def model_dump(self, **kw: Any) -> dict[str, Any]:
        return self._data

    def __repr__(self) -> str:
        return f"TaskView({self._data!r})"


def _view(v: Any) -> Any:
    if isinstance(v, dict):
        return TaskView(v)
    if isinstance(v, list):
        return [_view(x) for x in v]
    return v


class RemoteSplits:
    """``seeds``/``split_of`` of the served env, asked of the server (blocking) and cached per process."""

    def __init__(self, env: RemoteEnv):
        self._env = env
        self._cache = _SPLIT_CACHE.setdefault((env.base_url, env.env_id), {})

    def seeds(self, split: str | Split, n: int | None = None, start: int = 0) -> list[int]:
        split = as_split(split)
        seeds = self._env._call_sync("POST", "/v1/splits", {"split": split.value, "n": n, "start": start})["seeds"]
        with _LOCK:
            for s in seeds:
                self._cache[int(s)] = split
        return [int(s) for s in seeds]

    def split_of(self, seed: int) -> Split:
        hit = self._cache.get(seed)
        if hit is None:
            [name] = self._env._call_sync("POST", "/v1/splits", {"seeds": [seed]})["splits"]
            hit = self._cache[seed] = Split(name)
        return hit


class RemoteEnv(gym.Env[str, Action]):
    """A client of ``rowgym env serve`` (see the module docstring).

    Args:
        url: ``http://host:port/ENV_ID``.
        token: The server's token (default: ``$ROWGYM_ENV_TOKEN``).
        privileged: Ask for the task with every reset (scripted experts); see the module docstring.
        request_timeout_s: One HTTP request (a step includes the env's own work, e.g. grading).
        env_id: Ignored (``rowgym.make`` passes it); the id is the one the server reports.
    """

    metadata: dict[str, Any] = {"render_modes": ["ansi"]}

    def __init__(self, url: str, *, token: str | None = None, privileged: bool = False,
                 request_timeout_s: float = 600.0, env_id: str | None = None, render_mode: str | None = None):
        import os

        self.url = url
        self.base_url, served = parse_url(url)
        self.token = token if token is not None else os.environ.get(P.TOKEN_ENV, "")
        self._headers = {"Authorization": f"Bearer {self.token}", **aio.JSON_HEADERS}
        self.request_timeout_s = request_timeout_s
        self.render_mode = render_mode
        key = (self.base_url, served, self.token)
        if key not in _INFO:
            _INFO[key] = self._call_sync("GET", "/v1/info", None)
        info = _INFO[key]
        if info.get("env_id") != served:
            raise EnvError(f"{self.base_url} serves {info.get('env_id')!r}, not {served!r}")
        self.env_id: str = served
        self.version: str = info["version"]
        self.system_prompt: str = info["system_prompt"]
        self.tools: list[dict[str, Any]] = info["tools"]
        self.max_turns: int = info["max_turns"]
        self.protocol = int(info.get("protocol", 1))
        self._reward_versions: dict[str, str] = dict(info["reward_versions"])
        self.splits = RemoteSplits(self)
        self.observation_space = TextSpace()
        self.action_space = ToolCallSpace.from_schemas(self.tools)
        self.want_task = privileged
        self.session_id: str | None = None
        self._unanswered: list[str] = []
        """Ids of sessions the server may still hold for this env: a reset that got no answer, or the
        session that reset should have replaced. The next reset replaces them, ``close()`` deletes them."""
        self.episode_seed: int | None = None
        self._task: Any = None
        self._task_fetched = False
        self._last_obs = ""
        self._http: Any = None
        self._http_loop: int | None = None
        self._runner: asyncio.Runner | None = None

    # ------------------------------------------------------------ transport
    def _call_sync(self, method: str, path: str, body: Any) -> Any:
        """A blocking request (construction, splits, task hashes: outside the per-step path)."""
        data = P.dumps(body) if body is not None else None
        req = urllib.request.Request(self.base_url + path, data=data, method=method, headers=self._headers)
        try:
            with urllib.request.urlopen(req, timeout=min(self.request_timeout_s, 60)) as r:
                return P.loads(r.read())
        except urllib.error.HTTPError as e:
            if e.code == 401:
                raise EnvError(f"env server {self.base_url} refused the token (401); "
                               f"set ${P.TOKEN_ENV} to the server's token") from None
            P.raise_error(_safe_json(e.read()), f"{self.base_url}{path}")
        except (urllib.error.URLError, OSError) as e:
            raise EnvError(f"env server {self.base_url} unreachable ({path}): {e}") from None

    async def _call(self, method: str, path: str, body: Any, *, data: bytes | None = None) -> Any:
        """A request on this loop's shared session; ``data`` is a body already encoded (else ``body`` is)."""
        import aiohttp

        loop = id(asyncio.get_running_loop())
        if self._http is None or self._http_loop != loop:
            self._http, self._http_loop = _Sessions.acquire(), loop
            self._timeout = aiohttp.ClientTimeout(total=self.request_timeout_s)
        try:
            if data is None and body is not None:
                data = P.dumps(body)
            async with self._http.request(method, self.base_url + path, data=data, headers=self._headers,
                                          timeout=self._timeout) as r:
                raw = await r.read()
                if r.status == 200:
                    return P.loads(raw)
                if r.status == 401:
                    raise EnvError(f"env server {self.base_url} refused the token (401); "
                                   f"set ${P.TOKEN_ENV} to the server's token")
                P.raise_error(_safe_json(raw), f"{self.base_url}{path}")
        except (aiohttp.ClientError, TimeoutError) as e:
            raise EnvError(f"env server {self.base_url} {method} {path}: {type(e).__name__}: {e}") from e

    # ------------------------------------------------------------ the env API
    @property
    def task(self) -> Any:
        """The episode's task; reading it fetches it (a privileged reset, counted by the server)."""
        if not self._task_fetched and self.session_id is not None:
            self.want_task = True
            self._set_task(self._call_sync("GET", f"/v1/sessions/{self.session_id}/task", None)["task"])
        return self._task

    def _set_task(self, data: Any) -> None:
        self._task, self._task_fetched = (None if data is None else self._task_model(data)), True

    def _task_model(self, data: Any) -> Any:
        model = _local_task_model(self.env_id)
        if model is not None:
            try:
                return model.model_validate(data)
            except ValueError:
                pass
        return _view(data)

    async def areset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict]:
        super().reset(seed=seed)
        if seed is None:  # as a local RowEnv: an unseeded reset draws a training seed from np_random
            train = self.splits.seeds(Split.TRAIN, 1000)
            seed = int(train[int(self.np_random.integers(len(train)))])
        body = {"seed": seed, "options": options, "privileged": self.want_task}
        old = self._maybe_open()[-P.MAX_REPLACES:]
        if self.protocol >= 2:
            sid = uuid.uuid4().hex
            body.update(replaces=old or None, session_id=sid)
            self._unanswered = [*old, sid]
        else:  # a v1 server names the session and replaces one
            body["replaces"] = old[-1] if old else None
            self._unanswered = old
        self.session_id = None
        out = await self._call("POST", "/v1/sessions", body)
        self.session_id, self._unanswered = out["session_id"], []
        self._task, self._task_fetched = None, False
        if self.want_task:
            self._set_task(out.get("task"))
        info = P.decode_info(out)
        self.episode_seed = info.get("seed", seed)
        if "split" in info:
            self.splits._cache.setdefault(int(info["seed"]), Split(info["split"]))
        self._last_obs = out["observation"]
        return out["observation"], info

    def _maybe_open(self) -> list[str]:
        return [*self._unanswered, *([self.session_id] if self.session_id is not None else [])]

    async def astep(self, action: Any) -> tuple[str, float, bool, bool, dict]:
        if self.session_id is None:
            raise RowgymError("step() called before reset() or after close(); call reset() first")
        out = await self._call("POST", f"/v1/sessions/{self.session_id}", None, data=P.step_body(action))
        self._last_obs = out["observation"]
        return out["observation"], out["reward"], out["terminated"], out["truncated"], P.decode_info(out)

    async def aclose(self) -> None:
        ids, self.session_id, self._unanswered = self._maybe_open(), None, []
        try:
            for sid in ids:
                try:
                    await self._call("DELETE", f"/v1/sessions/{sid}", None)
                except (EnvError, RowgymError):
                    pass  # already gone (expired, never opened, server restarted): nothing to close
        finally:
            if self._http is not None and self._http_loop == id(asyncio.get_running_loop()):
                self._http = None
                await _Sessions.release()

    def reward_versions(self) -> dict[str, str]:
        return dict(self._reward_versions)

    def task_hash(self, seed: int) -> str:
        return self.task_hashes([seed])[seed]

    def task_hashes(self, seeds: Iterable[int]) -> dict[int, str]:
        """``seed -> task content hash``: one round trip for the seeds not asked before (cached per process,
        as a seed's task never changes for a served env id and version)."""
        seeds = [int(s) for s in seeds]
        cache = _HASH_CACHE.setdefault((self.base_url, self.env_id, self.version), {})
        missing = list(dict.fromkeys(s for s in seeds if s not in cache))
        for i in range(0, len(missing), P.MAX_HASH_SEEDS):
            chunk = missing[i:i + P.MAX_HASH_SEEDS]
            hashes = self._call_sync("POST", "/v1/task_hashes", {"seeds": chunk})["hashes"]
            if len(hashes) != len(chunk):
                raise EnvError(f"{self.env_id}: the server answered {len(hashes)} task hashes for {len(chunk)} seeds")
            with _LOCK:
                cache.update(zip(chunk, map(str, hashes), strict=True))
        return {s: cache[s] for s in seeds}

    # ------------------------------------------------------- the sync face
    def _run(self, coro: Any) -> Any:
        if self._runner is None:
            self._runner = asyncio.Runner()
        return self._runner.run(coro)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict]:
        return self._run(self.areset(seed=seed, options=options))

    def step(self, action: Any) -> tuple[str, float, bool, bool, dict]:
        return self._run(self.astep(action))

    def close(self) -> None:
        if self._maybe_open() or self._http is not None:
            if self._runner is not None or self._http is None:
                self._run(self.aclose())
            else:  # opened on someone else's loop: close the sessions with plain requests
                ids, self.session_id, self._unanswered = self._maybe_open(), None, []
                for sid in ids:
                    try:
                        self._call_sync("DELETE", f"/v1/sessions/{sid}", None)
                    except (EnvError, RowgymError):
                        pass
        if self._runner is not None:
            self._runner.close()
            self._runner = None

    def render(self) -> str | None:
        return self._last_obs if self.render_mode == "ansi" else None

    async def __aenter__(self) -> RemoteEnv:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()


def _safe_json(raw: bytes) -> Any:
    try:
        return P.loads(raw)
    except ValueError:
        return {"error": {"kind": "env", "type": "HTTPError", "message": raw[:300].decode(errors="replace")}}


def _local_task_model(env_id: str) -> type[BaseModel] | None:
    """The task model of ``env_id``'s class if that env is installed here (the return type of ``make_task``)."""
    from rowgym.registry import spec

    try:
        cls = spec(env_id).load()
        hint = typing.get_type_hints(cls.make_task).get("return")
    except Exception:
        return None
    return hint if isinstance(hint, type) and issubclass(hint, BaseModel) else None
