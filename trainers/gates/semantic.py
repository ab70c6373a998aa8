"""semantic@1: the stored verdict and observations agree with the env's verifier.

Deterministic envs (the tool-API families) are *replayed*: a fresh episode of the same
seed, the stored actions stepped one by one, every observation compared with the stored
one, and the verifier's verdict at the end compared with the stored reward and success.
Other envs (a browser, a sandbox) cannot be replayed cheaply; their verdict must come from
the env's current verifier name and version. GRPO prompt rows are compared with the env's
first observation of their seed.
"""

from __future__ import annotations

import math
from typing import Any

from rowgym.trainers.gates.base import Candidate, Gate, GateContext, Rejection


class SemanticGate(Gate):
    name = "semantic"
    version = "1"

    def __init__(self, *, replay: bool = True, reward_tol: float = 1e-6):
        self.replay, self.reward_tol = replay, reward_tol

    def params(self) -> dict[str, Any]:
        return {"replay_deterministic_envs": self.replay, "reward_tolerance": self.reward_tol}

    def check(self, cands: list[Candidate], ctx: GateContext) -> list[Rejection]:
        out = []
        for c in cands:
            problem = self._problem(c, ctx)
            if problem is not None:
                out.append(self.reject(c, *problem))
        return out

    def _problem(self, c: Candidate, ctx: GateContext) -> tuple[str, str] | None:
        if c.episode is None:
            if c.seed is None or not c.env_id:
                return None
            first = ctx.first_observation(c.env_id, c.seed)
            if c.prompt != first:
                return "prompt_mismatch", f"{c.env_id} seed {c.seed}: the prompt is not the env's first observation"
            return None
        ep = c.episode
        env = ctx.env(ep.env_id).unwrapped
        if ep.verdict is None:
            return "no_verdict", "the episode has no verdict"
        if not math.isfinite(ep.final_reward):
            return "verdict_contradicted", f"the episode's verdict reward is {ep.final_reward}, not a finite number"
        if "final_reward" in c.row and not abs(float(c.row["final_reward"]) - ep.final_reward) <= self.reward_tol:
            return "verdict_contradicted", (f"row says final reward {c.row['final_reward']}, its episode's verdict "
                                            f"{ep.final_reward}")
        if (ep.verdict.verifier, ep.verdict.verifier_version) != (env.verifier, env.verifier_version):
            return "verifier_version", (f"graded by {ep.verdict.verifier}@{ep.verdict.verifier_version}, the env's "
                                        f"verifier is now {env.verifier}@{env.verifier_version}")
        if self.replay and ctx.deterministic(ep.env_id):
            return self._replay(c, ctx)
        return None

    def _replay(self, c: Candidate, ctx: GateContext) -> tuple[str, str] | None:
        ep = c.episode
        assert ep is not None and ep.verdict is not None
        env = ctx.env(ep.env_id)
        obs, _ = env.reset(seed=ep.seed)
        if ep.steps and obs != ep.steps[0].observation:
            return "replay_mismatch", f"turn 0: the stored first observation is not what seed {ep.seed} shows"
        verdict = None
        for i, s in enumerate(ep.steps):
            obs, _, term, trunc, info = env.step(s.action)
            if obs != s.next_observation:
                return "replay_mismatch", f"turn {s.turn}: the stored observation differs from the replay's"
            if bool(info["bad_call"]) != s.bad_call:
                return "replay_mismatch", f"turn {s.turn}: stored bad_call={s.bad_call}, the replay says {info['bad_call']}"
            if term or trunc:
                verdict = info.get("verdict")
                if i != len(ep.steps) - 1:
                    return "replay_mismatch", f"turn {s.turn}: the replay ended here, the stored episode goes on"
                break
        if verdict is None:
            return "verdict_contradicted", "the stored episode ends, the replay has not finished"
        if not abs(verdict.reward - ep.verdict.reward) <= self.reward_tol or verdict.success != ep.verdict.success:
            return "verdict_contradicted", (f"stored reward {ep.verdict.reward} (success {ep.verdict.success}); the "
                                            f"verifier says {verdict.reward} (success {verdict.success})")
        return None
