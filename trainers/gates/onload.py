"""The gates again, on rows a trainer is about to train on (a dataset directory or ready rows).

A dataset directory is protected only by the ``data_sha256`` in its ``provenance.json``, which
anyone can rewrite, so a trainer trusts none of what the dataset builder checked. For every
conversation of every row (``messages``; ``prompt`` + ``chosen`` and ``prompt`` + ``rejected``;
each of ``hard_negatives``):

* ``tools`` must be the env's own tool schemas (the chat template renders them into every prompt);
* a deterministic env (the tool-API families) is *replayed*: the seed reset, each assistant turn
  stepped, and every tool and user message after it compared with what the env answered, so no
  user or tool message can be anything the env did not say; where the replay ends with a verdict,
  the row's stored reward must be the verifier's;
* the leakage gate is run again (quarantined task hash, the prompt, and each message on its own,
  :meth:`LeakageGate.message_problem`): no quarantined (dev or held-out) task or gold answer anywhere in
  it. The whole-answer Jaccard stays the builder's: a short templated answer (Home) can equal a dev gold
  answer, and ready rows built without the gates would be refused for it;
* the stored reward must be a finite number.

:func:`refuse_leaked_rows` raises :class:`rowgym.errors.HeldOutLeakError` for quarantined content and
:class:`rowgym.trainers.datasets.TamperedDataError` for the rest. Each distinct conversation is checked
once; the quarantine is the dataset builder's (cached on disk).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator, Sequence
from typing import Any

from rowgym.errors import HeldOutLeakError
from rowgym.rows import Action, ToolCall
from rowgym.tools import clean_text
from rowgym.trainers import datasets as ds
from rowgym.trainers.gates.base import Candidate, GateContext
from rowgym.trainers.gates.format import tools_problem
from rowgym.trainers.gates.leakage import LeakageGate


def conversations(row: dict[str, Any]) -> Iterator[tuple[str, list[dict[str, Any]], Any]]:
    """``(label, messages, stored reward or None)`` for every conversation a row carries."""
    if isinstance(row.get("messages"), list):
        yield "messages", row["messages"], row.get("final_reward")
    prompt = row.get("prompt")
    if isinstance(prompt, list):
        sides = [k for k in ("chosen", "rejected") if isinstance(row.get(k), list)]
        for k in sides:
            yield k, list(prompt) + list(row[k]), row.get(f"{k}_reward")
        if not sides:
            yield "prompt", list(prompt), None
    for j, neg in enumerate(row.get("hard_negatives") or []):
        if isinstance(neg, dict) and isinstance(neg.get("messages"), list):
            yield f"hard_negatives[{j}]", neg["messages"], neg.get("final_reward")


def _action(m: dict[str, Any]) -> Action:
    calls = m.get("tool_calls") or []
    if calls:
        fn = calls[0].get("function") or {}
        return Action(text=str(m.get("content") or ""),
                      tool_call=ToolCall(name=str(fn.get("name") or ""), arguments=str(fn.get("arguments") or ""),
                                         id=calls[0].get("id")))
    return Action(text=str(m.get("content") or ""), tool_call=None)


def replay_problem(env: Any, seed: int, msgs: list[dict[str, Any]], reward: Any) -> str | None:
    """Why a conversation is not what the env shows when its assistant turns are replayed on ``seed``, or None."""
    obs, _ = env.reset(seed=seed)
    users = [i for i, m in enumerate(msgs) if m.get("role") == "user"]
    if not users or msgs[users[0]].get("content") != clean_text(obs):
        return "its first user message is not the env's first observation of the seed"
    verdict = None
    i = users[0] + 1
    while i < len(msgs):
        m = msgs[i]
        if m.get("role") != "assistant":
            return f"message {i} ({m.get('role')}) answers no assistant turn"
        if verdict is not None:
            return f"message {i}: the replayed episode had already ended"
        calls = m.get("tool_calls") or []
        if not isinstance(calls, list) or len(calls) > 1:
            # an env step takes one call: the others would be trained on without ever being replayed
            return f"message {i} holds {len(calls) if isinstance(calls, list) else 'malformed'} tool calls; a turn " \
                   f"of a recorded episode holds at most one"
        obs, _, term, trunc, info = env.step(_action(m))
        if term or trunc:
            verdict = info.get("verdict")
        nxt = msgs[i + 1] if i + 1 < len(msgs) else None
        if nxt is not None:
            if nxt.get("role") not in ("tool", "user"):
                return f"message {i + 1}: {nxt.get('role')} where the env's reply was expected"
            if nxt.get("content") != clean_text(obs):
                return (f"message {i + 1} ({nxt.get('role')}) is not what the env answered to message {i}; only the "
                        f"env's own replies may follow an assistant turn")
        i += 2
    if verdict is not None and reward is not None and not abs(float(reward) - verdict.reward) <= 1e-6:
        return f"its stored reward {reward} is not the verifier's {verdict.reward} on replay"
    return None


def refuse_leaked_rows(rows: Sequence[dict[str, Any]], *, quarantine_seeds: int | None = None,
                       eval_files: Sequence[str] = ()) -> None:
    """Re-check rows loaded for training (see the module docstring); raise on the first problem."""
    from rowgym.trainers.gates import GateConfig, quarantine_for

    cfg = GateConfig(eval_files=list(eval_files))
    if quarantine_seeds is not None:
        cfg.quarantine_seeds = max(cfg.quarantine_seeds, int(quarantine_seeds))
    leak = LeakageGate(quarantine_for(cfg), prompt_threshold=cfg.prompt_threshold,
                       answer_threshold=cfg.answer_threshold)
    seen: set[str] = set()
    tools_ok: set[tuple[str, str]] = set()
    with GateContext() as ctx:
        for n, r in enumerate(rows):
            name = f"row {n} ({r.get('episode_id') or r.get('chosen_episode_id') or 'no episode id'})"
            env_id, seed = str(r.get("env_id") or ""), r.get("seed")
            if not env_id or seed is None:
                raise ds.TamperedDataError(f"{name} names no env and seed, so its content cannot be checked")
            seed = int(seed)
            tools = r.get("tools")
            if tools is not None and (env_id, str(tools)) not in tools_ok:
                try:
                    parsed = json.loads(tools) if isinstance(tools, str) else tools
                except ValueError:
                    raise ds.TamperedDataError(f"{name}: its tools column is not valid JSON") from None
                wrong = tools_problem(parsed, ctx.env(env_id))
                if wrong:
                    raise ds.TamperedDataError(f"{name} ({env_id}, seed {seed}) refused: {wrong}")
                tools_ok.add((env_id, str(tools)))
            for label, msgs, reward in conversations(r):
                if reward is not None and not _finite(reward):
                    raise ds.TamperedDataError(f"{name} {label}: stored reward {reward!r} is not a finite number")
                wrong = system_problem(msgs, env_id)
                if wrong:
                    raise ds.TamperedDataError(f"{name} {label} ({env_id}, seed {seed}) refused: {wrong}")
                key = hashlib.sha256(json.dumps([env_id, seed, msgs, reward], sort_keys=True,
                                                default=str).encode()).hexdigest()
                if key in seen:
                    continue
                if ctx.deterministic(env_id):
                    wrong = replay_problem(ctx.env(env_id), seed, msgs, reward)
                    if wrong:
                        raise ds.TamperedDataError(f"{name} {label} ({env_id}, seed {seed}) refused: {wrong}")
                cand = Candidate(f"{name} {label}", {"messages": msgs, "env_id": env_id, "seed": seed,
                                                     "task_hash": r.get("task_hash")})
                # the whole-answer Jaccard is the builder's (short templated Home answers can equal a dev gold
                # answer); here: quarantined task hash, the prompt, and each message on its own
                problem = leak._problem(cand, ctx, whole_answer=False)
                if problem:
                    raise HeldOutLeakError(f"{name} {label} ({env_id}, seed {seed}) holds quarantined (dev or "
                                           f"held-out) content, {problem[0]}: {problem[1]}")
                seen.add(key)


def system_problem(msgs: list[dict[str, Any]], env_id: str) -> str | None:
    """Why a conversation's system text is not its env's system prompt (once, first; none at all is fine).
    The model conditions on it in every turn, and no replay reaches it: it comes before the first user message."""
    at = [i for i, m in enumerate(msgs) if m.get("role") == "system"]
    if not at:
        return None
    if at != [0]:
        return f"a system message at position {at[-1] if at[0] == 0 else at[0]}: only the first message may be one"
    if msgs[0].get("content") != ds.system_prompt_of(env_id):
        return "its system message is not the env's system prompt"
    return None


def _finite(x: Any) -> bool:
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False
