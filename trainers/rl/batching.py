"""Episodes read from the run store -> one token sequence each, with per-token advantages.

An episode's sequence is its first turn's prompt followed by everything after it: every
sampled turn and every observation (with its chat-template glue), exactly the ids the
policy saw and sampled (never re-tokenised). For each token:

* ``mask`` 1 = sampled by the policy in some turn, 0 = prompt / observation (no loss);
* ``sampling_logprobs`` = the logprob the sampler recorded (0.0 where mask is 0);
* ``advantage`` = the advantage of the turn that sampled it (0.0 where mask is 0).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rowgym.errors import RowgymError
from rowgym.rewards.credit import CreditConfig, turn_advantages
from rowgym.rows import Episode, PolicyVersion


@dataclass
class EpisodeTokens:
    episode_id: str
    group_id: str
    ids: list[int]
    mask: list[int]
    sampling_logprobs: list[float]
    turn: list[int]
    """The step index whose turn sampled each token (-1 for prompt and observation tokens)."""
    versions: list[PolicyVersion] = field(default_factory=list)
    advantages: list[float] = field(default_factory=list)

    @property
    def n_policy_tokens(self) -> int:
        return sum(self.mask)


def episode_tokens(ep: Episode) -> EpisodeTokens:
    """The episode's token sequence (see the module doc); raises if its turns are not prefixes of each other."""
    out = EpisodeTokens(ep.episode_id, ep.group_id, [], [], [], [])
    first = True
    for t, s in enumerate(ep.steps):
        r = s.tokens
        if r is None:
            continue
        full = list(r.prompt_ids)
        if first:
            out.ids, out.mask = list(full), [0] * len(full)
            out.sampling_logprobs, out.turn = [0.0] * len(full), [-1] * len(full)
            first = False
        else:
            if full[: len(out.ids)] != out.ids:
                raise RowgymError(f"episode {ep.episode_id}: turn {t}'s prompt does not extend the previous turns; "
                                  f"the policy re-tokenised its history (token fidelity broken)")
            new = full[len(out.ids):]  # observation + template glue since the last completion
            out.ids += new
            out.mask += [0] * len(new)  # an observation is never trained on (r.mask there is 0 too)
            out.sampling_logprobs += [0.0] * len(new)
            out.turn += [-1] * len(new)
        if len(r.logprobs) != len(r.completion_ids):
            raise RowgymError(f"episode {ep.episode_id}: turn {t} has {len(r.completion_ids)} ids but "
                              f"{len(r.logprobs)} logprobs")
        out.ids += r.completion_ids
        out.mask += [1] * len(r.completion_ids)
        out.sampling_logprobs += list(r.logprobs)
        out.turn += [t] * len(r.completion_ids)
        if r.policy_version is not None:
            out.versions.append(r.policy_version)
    return out


TRAINABLE_FAILURES = frozenset({"policy", "timeout"})
"""Failure kinds that are the policy's doing (trained on with the reward they got); an env, sandbox or
grader failure says nothing about the policy, so those episodes leave their group."""


def usable(ep: Episode) -> bool:
    return ep.failure is None or ep.failure.kind in TRAINABLE_FAILURES


def build_items(episodes: list[Episode], credit: str = "grpo", cfg: CreditConfig | None = None) -> list[EpisodeTokens]:
    """Token sequences of ``episodes`` with per-token advantages from ``credit`` (grpo | turn | gigpo)."""
    adv = turn_advantages(episodes, credit, cfg)  # type: ignore[arg-type]
    items = []
    for ep in episodes:
        it = episode_tokens(ep)
        a = adv[ep.episode_id]
        it.advantages = [a[t] if (m and t >= 0) else 0.0 for t, m in zip(it.turn, it.mask, strict=True)]
        items.append(it)
    return items


def collate(items: list[EpisodeTokens], pad_id: int) -> dict[str, Any]:
    """Right-padded tensors: ids, attention, and per target position (shifted by one) mask,
    sampling logprobs and advantages."""
    import torch

    width = max(len(it.ids) for it in items)
    pad = [width - len(it.ids) for it in items]
    ids = torch.tensor([it.ids + [pad_id] * p for it, p in zip(items, pad, strict=True)])
    att = torch.tensor([[1] * len(it.ids) + [0] * p for it, p in zip(items, pad, strict=True)])
    # position i of the targets predicts token i+1
    mask = torch.tensor([it.mask[1:] + [0] * p for it, p in zip(items, pad, strict=True)], dtype=torch.float32)
    slp = torch.tensor([it.sampling_logprobs[1:] + [0.0] * p for it, p in zip(items, pad, strict=True)])
    adv = torch.tensor([it.advantages[1:] + [0.0] * p for it, p in zip(items, pad, strict=True)])
    return {"input_ids": ids, "attention_mask": att, "mask": mask, "sampling_logprobs": slp, "advantages": adv}
