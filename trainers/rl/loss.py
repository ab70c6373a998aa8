"""The GRPO loss on per-token advantages, with truncated importance sampling.

For every policy token ``i`` (mask 1) of the batch, with ``A_i`` its turn's advantage,
``pi`` the trainer's current policy, ``pi_old`` the same weights before this update
(detached), ``mu`` the sampling policy (the stored sampling logprobs, possibly an older
version when the run is asynchronous) and all probabilities at temperature ``T``
(``log_softmax(logits / T)``):

    r_i = pi(y_i) / pi_old(y_i)                       (= 1 in value: one update per batch)
    w_i = min(pi_old(y_i) / mu(y_i), C)               (detached; truncated importance weight)
    L   = - sum_i w_i * min(r_i A_i, clip(r_i, 1-eps, 1+eps) A_i) / sum_i 1

the token-level (DAPO) normalisation over every policy token of the batch. This is TRL's
``vllm_importance_sampling_correction`` with ``vllm_importance_sampling_mode="token_truncate"``.
"""

from __future__ import annotations

from typing import Any


def token_logprobs(model: Any, input_ids: Any, attention_mask: Any, temperature: float) -> Any:
    """``log_softmax(logits / T)`` of each next token: shape [batch, length - 1]."""
    import torch

    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits[:, :-1].float()
    logp = torch.log_softmax(logits / temperature, -1)
    return logp.gather(-1, input_ids[:, 1:, None]).squeeze(-1)


def grpo_loss(logps: Any, sampling_logps: Any, advantages: Any, mask: Any, *, n_tokens: float,
              is_cap: float = 2.0, clip_eps: float = 0.2) -> tuple[Any, dict[str, float]]:
    """The loss above for one micro-batch (divided by ``n_tokens``, the policy tokens of the whole batch)."""
    import torch

    old = logps.detach()
    ratio = torch.exp(logps - old)
    w = torch.clamp(torch.exp(old - sampling_logps), max=is_cap) * mask
    surrogate = torch.minimum(ratio * advantages, torch.clamp(ratio, 1 - clip_eps, 1 + clip_eps) * advantages)
    loss = -(w * surrogate * mask).sum() / n_tokens
    with torch.no_grad():
        m = mask.bool()
        raw = torch.exp(old - sampling_logps)[m]
        stats = {"is_weight_mean": float(raw.mean()) if raw.numel() else 1.0,
                 "is_truncated_frac": float((raw > is_cap).float().mean()) if raw.numel() else 0.0,
                 "abs_logp_diff_max": float((old - sampling_logps).abs()[m].max()) if raw.numel() else 0.0}
    return loss, stats
