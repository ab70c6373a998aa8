"""Credit assignment for multi-turn episodes: per-turn returns, GRPO and GiGPO advantages.

>>> from rowgym.rewards.credit import discounted_returns, group_advantages
>>> discounted_returns([0.0, 0.0, 0.0], gamma=0.5, final_reward=1.0)
[0.25, 0.5, 1.0]
>>> group_advantages([1.0, 0.0, 1.0, 0.0], ["g", "g", "g", "g"], scale="none")
[0.5, -0.5, 0.5, -0.5]

Three layers, each usable alone:

* **Array functions** on plain floats and labels, with the formula in the docstring:
  :func:`discounted_returns`, :func:`group_advantages` (GRPO / Dr. GRPO) and
  :func:`step_group_advantages` (GiGPO's anchor-state groups).
* **Episode functions** on :class:`rowgym.rows.Episode`: :func:`episode_rewards`,
  :func:`episode_returns` and :func:`assign_credit`, which combines the three into one
  advantage per step, ``A = A_episode + omega * A_step``.
* :class:`CreditConfig`, the knobs (a dataclass, so trainers can put it in their config).

A step's local reward (``StepRow.reward``) never includes the final reward; the final
reward (``Episode.final_reward``, the verifier's) is added at the last turn here, so the
undiscounted return of an episode equals the sum of the rewards Gymnasium's ``step()``
returned. See ``docs/rewards.md`` for the formulas and a worked example.
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from rowgym.rows import Episode, StepRow

Scale = Literal["group", "none"]


# --------------------------------------------------------------------------- arrays
def discounted_returns(rewards: Sequence[float], *, gamma: float = 1.0, final_reward: float = 0.0) -> list[float]:
    """Per-turn discounted returns of one episode.

    ``G_t = r_t + gamma * G_{t+1}`` for ``t = T-1 .. 0`` with ``G_T = 0``, where the final
    reward is added to the last turn's reward: ``r_{T-1} += final_reward``. So
    ``G_t = sum_{k>=t} gamma^(k-t) r_k + gamma^(T-1-t) * final_reward``.

    Args:
        rewards: local reward of each turn, ``r_0 .. r_{T-1}``.
        gamma: discount factor in ``[0, 1]``.
        final_reward: the episode's final (verifier) reward, credited to the last turn.

    Returns:
        ``[G_0, .., G_{T-1}]`` (empty for an episode without turns).
    """
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be in [0, 1], got {gamma}")
    out = [0.0] * len(rewards)
    g = 0.0
    for t in range(len(rewards) - 1, -1, -1):
        r = float(rewards[t]) + (final_reward if t == len(rewards) - 1 else 0.0)
        g = r + gamma * g
        out[t] = g
    return out


def _std(xs: Sequence[float], ddof: int) -> float:
    n = len(xs)
    if n - ddof <= 0:
        return 0.0
    m = sum(xs) / n
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (n - ddof))


def _normalise(values: Sequence[float], labels: Sequence[Hashable], *, scale: Scale, eps: float,
               ddof: int) -> list[float]:
    """``(x - mean(x[label])) / (std(x[label]) + eps)`` per label; 0 for a label seen once."""
    if len(values) != len(labels):
        raise ValueError(f"{len(values)} values but {len(labels)} labels")
    if scale not in ("group", "none"):
        raise ValueError(f"scale must be 'group' or 'none', got {scale!r}")
    members: dict[Hashable, list[int]] = defaultdict(list)
    for i, lab in enumerate(labels):
        members[lab].append(i)
    out = [0.0] * len(values)
    for idx in members.values():
        if len(idx) < 2:
            continue  # nothing to compare with: no signal (and no 0/0)
        xs = [float(values[i]) for i in idx]
        mean = sum(xs) / len(xs)
        denom = _std(xs, ddof) + eps if scale == "group" else 1.0
        for i, x in zip(idx, xs, strict=True):
            out[i] = (x - mean) / denom if denom > 0 else 0.0  # eps=0 and equal values: no signal
    return out


def group_advantages(rewards: Sequence[float], group_ids: Sequence[Hashable], *, scale: Scale = "group",
                     eps: float = 1e-6, ddof: int = 1) -> list[float]:
    """Episode-level group-relative advantages (GRPO; Dr. GRPO with ``scale="none"``).

    For episode ``i`` in group ``g`` (the k rollouts of one seed):

    * ``scale="group"`` (GRPO):   ``A_i = (R_i - mean_g(R)) / (std_g(R) + eps)``
    * ``scale="none"`` (Dr. GRPO): ``A_i = R_i - mean_g(R)``

    ``std`` uses ``ddof=1`` by default (Bessel's correction), as ``torch.std`` does in
    TRL's GRPOTrainer, so the numbers match what TRL computes; pass ``ddof=0`` for the
    population std. A group with a single episode has no baseline: its advantage is 0.

    Args:
        rewards: ``R_i``, one score per episode.
        group_ids: the group of each episode (``Episode.group_id``).

    Returns:
        ``A_i`` in the order of ``rewards``.
    """
    return _normalise(rewards, group_ids, scale=scale, eps=eps, ddof=ddof)


def step_group_advantages(returns: Sequence[float], group_ids: Sequence[Hashable], state_keys: Sequence[Hashable],
                          *, scale: Scale = "group", eps: float = 1e-6, ddof: int = 1) -> list[float]:
    """Step-level advantages over repeated states (GiGPO's anchor-state grouping).

    Steps are flattened across the episodes of a batch. Steps of the same episode
    group ``g`` whose anchor state is identical (``state_keys``, e.g. a hash of the
    observation the agent saw) form a *step group* ``S = (g, s)``; each step's
    discounted return ``G_t`` (:func:`discounted_returns`) is normalised within it:

    * ``scale="group"``: ``A_step = (G_t - mean_S(G)) / (std_S(G) + eps)``
    * ``scale="none"``:  ``A_step = G_t - mean_S(G)``

    A step whose state no other step of its group saw has ``A_step = 0``. The same
    state visited twice in one episode counts twice, as in GiGPO.

    Args:
        returns: ``G_t`` of every step.
        group_ids: the episode group of every step.
        state_keys: the anchor-state key of every step.
    """
    if len(group_ids) != len(state_keys):
        raise ValueError(f"{len(group_ids)} group ids but {len(state_keys)} state keys")
    return _normalise(returns, list(zip(group_ids, state_keys, strict=True)), scale=scale, eps=eps, ddof=ddof)


# ------------------------------------------------------------------------- episodes
def observation_key(step: StepRow) -> str:
    """The anchor state of a step: a hash of the observation text the agent saw."""
    return hashlib.sha256(step.observation.encode()).hexdigest()[:16]


def history_key(episode: Episode, turn: int) -> str:
    """A stricter anchor: a hash of every observation and action up to ``turn`` (the full context)."""
    h = hashlib.sha256()
    for s in episode.steps[:turn]:
        h.update(s.observation.encode() + b"\0" + s.action.model_dump_json().encode() + b"\0")
    h.update(episode.steps[turn].observation.encode())
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class CreditConfig:
    """How credit is assigned (all fields have the defaults of the GRPO/GiGPO papers' setups)."""

    gamma: float = 1.0
    """Discount of per-turn returns (1.0: undiscounted)."""
    local_coef: float = 1.0
    """Weight of the local (per-step) rewards relative to the final reward; 0 uses the final reward only."""
    scale: Scale = "group"
    """'group' divides by the group std (GRPO); 'none' only subtracts the mean (Dr. GRPO)."""
    omega: float = 1.0
    """Weight of the step-level (GiGPO) advantage in A = A_episode + omega * A_step; 0 is plain GRPO."""
    eps: float = 1e-6
    ddof: int = 1
    anchor: Literal["observation", "history"] = "observation"
    """Which steps share a state: the same observation text, or the same whole history."""


def episode_rewards(ep: Episode, *, local_coef: float = 1.0) -> list[float]:
    """The per-turn rewards ``local_coef * r_t`` of an episode (without the final reward)."""
    return [local_coef * s.reward for s in ep.steps]


UNTRUSTED_FLAGS = frozenset({"suspicious"})
"""Verdict flags whose reward is not trained on: the agent touched what grades it."""


def trained_final_reward(ep: Episode) -> float:
    """The final reward RL trains on: the verifier's, or 0 for a verdict flagged ``suspicious``
    (a reward the agent may have won by tampering must never become the policy's strategy)."""
    if ep.verdict is not None and UNTRUSTED_FLAGS.intersection(ep.verdict.flags):
        return 0.0
    return ep.final_reward


def episode_return(ep: Episode, *, local_coef: float = 1.0) -> float:
    """``R = final_reward + local_coef * sum_t r_t``: the episode's score for GRPO."""
    return trained_final_reward(ep) + local_coef * sum(s.reward for s in ep.steps)


def episode_returns(ep: Episode, *, gamma: float = 1.0, local_coef: float = 1.0) -> list[float]:
    """Per-turn discounted returns ``G_t`` of an episode (see :func:`discounted_returns`)."""
    return discounted_returns(episode_rewards(ep, local_coef=local_coef), gamma=gamma,
                              final_reward=trained_final_reward(ep))


@dataclass
class EpisodeCredit:
    """The credit of one episode: its score, its advantage, and per-step returns and advantages."""

    episode_id: str
    group_id: str
    score: float
    episode_advantage: float
    returns: list[float] = field(default_factory=list)
    step_advantages: list[float] = field(default_factory=list)
    advantages: list[float] = field(default_factory=list)
    """``A_t = episode_advantage + omega * step_advantages[t]``, one per step."""


def assign_credit(episodes: Iterable[Episode], cfg: CreditConfig | None = None,
                  *, state_key: Callable[[Episode, int], Hashable] | None = None) -> dict[str, EpisodeCredit]:
    """GRPO + GiGPO credit for a batch of episodes, keyed by ``episode_id``.

    ``score = R_i`` (:func:`episode_return`), ``episode_advantage`` from
    :func:`group_advantages` over ``Episode.group_id``, ``returns`` the ``G_t`` of each
    step, ``step_advantages`` from :func:`step_group_advantages` with the anchor
    state chosen by ``cfg.anchor`` (or ``state_key(episode, turn)``), and
    ``advantages[t] = A_episode + omega * A_step[t]``.
    """
    cfg = cfg or CreditConfig()
    eps_list = list(episodes)
    if len({e.episode_id for e in eps_list}) != len(eps_list):
        raise ValueError("duplicate episode ids: each episode must appear once")
    if state_key is None:
        state_key = (lambda e, t: observation_key(e.steps[t])) if cfg.anchor == "observation" else history_key
    scores = [episode_return(e, local_coef=cfg.local_coef) for e in eps_list]
    ep_adv = group_advantages(scores, [e.group_id for e in eps_list], scale=cfg.scale, eps=cfg.eps, ddof=cfg.ddof)
    returns = [episode_returns(e, gamma=cfg.gamma, local_coef=cfg.local_coef) for e in eps_list]
    flat_g, flat_group, flat_key = [], [], []
    for e, g in zip(eps_list, returns, strict=True):
        flat_g += g
        flat_group += [e.group_id] * len(g)
        flat_key += [state_key(e, t) for t in range(len(g))]
    flat_a = step_group_advantages(flat_g, flat_group, flat_key, scale=cfg.scale, eps=cfg.eps, ddof=cfg.ddof)
    out: dict[str, EpisodeCredit] = {}
    pos = 0
    for e, score, a_ep, g in zip(eps_list, scores, ep_adv, returns, strict=True):
        a_step = flat_a[pos:pos + len(g)]
        pos += len(g)
        out[e.episode_id] = EpisodeCredit(e.episode_id, e.group_id, score, a_ep, g, a_step,
                                          [a_ep + cfg.omega * a for a in a_step])
    return out


# ----------------------------------------------------------------- per-turn modes
CreditMode = Literal["grpo", "turn", "gigpo"]
CREDIT_MODES: tuple[str, ...] = ("grpo", "turn", "gigpo")


def turn_advantages(episodes: Iterable[Episode], mode: CreditMode = "grpo",
                    cfg: CreditConfig | None = None) -> dict[str, list[float]]:
    """One advantage per step (turn) of each episode, keyed by ``episode_id``; a trainer gives
    every token the policy sampled in turn ``t`` the advantage ``A_t``.

    * ``grpo``:  ``A_t = A_episode`` for every turn (group-relative, :func:`group_advantages`
      of ``R_i`` = :func:`episode_return`).
    * ``turn``:  ``A_t = (G_t - mean_g(R)) / (std_g(R) + eps)`` (``scale="none"``: without the
      division): each turn's discounted return-to-go (:func:`episode_returns`) against the
      group's baseline, so a turn after which local rewards were earned gets more credit than
      the turns after it. With ``gamma=1`` and ``local_coef=0`` it equals ``grpo``. A group whose
      scores are all equal is not divided (its std is 0): ``A_t = G_t - mean_g(R)``.
    * ``gigpo``: ``A_t = A_episode + omega * A_step[t]`` (:func:`assign_credit`).

    A group with a single episode has no baseline: its advantages are 0.
    """
    cfg = cfg or CreditConfig()
    eps_list = list(episodes)
    if mode == "gigpo":
        return {k: c.advantages for k, c in assign_credit(eps_list, cfg).items()}
    if mode not in CREDIT_MODES:
        raise ValueError(f"unknown credit mode {mode!r}; use one of {', '.join(CREDIT_MODES)}")
    if len({e.episode_id for e in eps_list}) != len(eps_list):
        raise ValueError("duplicate episode ids: each episode must appear once")
    scores = [episode_return(e, local_coef=cfg.local_coef) for e in eps_list]
    if mode == "grpo":
        adv = group_advantages(scores, [e.group_id for e in eps_list], scale=cfg.scale, eps=cfg.eps, ddof=cfg.ddof)
        return {e.episode_id: [a] * len(e.steps) for e, a in zip(eps_list, adv, strict=True)}
    members: dict[str, list[float]] = defaultdict(list)
    for e, r in zip(eps_list, scores, strict=True):
        members[e.group_id].append(r)
    out: dict[str, list[float]] = {}
    for e in eps_list:
        xs = members[e.group_id]
        g = episode_returns(e, gamma=cfg.gamma, local_coef=cfg.local_coef)
        if len(xs) < 2:
            out[e.episode_id] = [0.0] * len(g)
            continue
        mean = sum(xs) / len(xs)
        sd = _std(xs, cfg.ddof)
        # a group whose scores are all equal has no scale: its turns keep their raw difference from the
        # baseline (dividing by eps alone would blow up a within-episode signal)
        denom = sd + cfg.eps if cfg.scale == "group" and sd > 0 else 1.0
        out[e.episode_id] = [x - mean if denom == 1.0 else (x - mean) / denom for x in g]
    return out
