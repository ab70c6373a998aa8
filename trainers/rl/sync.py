"""Weights from the trainer to the sampling policy, and the version they carry.

* :class:`InProcessSync` (``--policy hf``): the sampler is the trainer's model itself
  (synchronous runs) or a copy that receives ``load_state_dict`` (asynchronous runs, so
  sampling never reads weights that an optimizer step is changing).
* :class:`VLLMSync` (``--policy vllm``): the step's checkpoint (safetensors, written
  atomically by :mod:`.record`) is loaded by the running server with vLLM's dev-mode
  ``reload_weights`` (:func:`rowgym.agents.serving.reload_weights`), then its prefix cache is
  dropped. On a GPU box TRL's NCCL broadcast would replace the disk round trip.

Both hold :meth:`rowgym.agents.token_policy.PolicyVersions.updating` while the weights
change, so no turn is sampled meanwhile and every turn records exactly one version.
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

from rowgym.agents.token_policy import PolicyVersions
from rowgym.rows import PolicyVersion


def weights_hash(model: Any) -> str:
    """A short content hash of every parameter and buffer (names, dtypes, shapes, bytes)."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}\0".encode())
        h.update(t.detach().contiguous().cpu().view(-1).view(dtype=_u8()).numpy().tobytes())
    return h.hexdigest()[:16]


def _u8() -> Any:
    import torch

    return torch.uint8


class InProcessSync:
    def __init__(self, versions: PolicyVersions, sampler_model: Any, trainer_model: Any):
        self.versions, self.sampler_model, self.trainer_model = versions, sampler_model, trainer_model

    async def push(self, version: PolicyVersion, weights_dir: Path | None = None) -> None:
        async with self.versions.updating():
            if self.sampler_model is not self.trainer_model:
                await asyncio.to_thread(self.sampler_model.load_state_dict, self.trainer_model.state_dict())
            self.versions.set(version)


class VLLMSync:
    def __init__(self, versions: PolicyVersions, base_url: str):
        self.versions, self.base_url = versions, base_url

    async def push(self, version: PolicyVersion, weights_dir: Path | None = None) -> None:
        from rowgym.agents.serving import reload_weights

        assert weights_dir is not None, "a vLLM sync loads a saved checkpoint"
        async with self.versions.updating():
            await asyncio.to_thread(reload_weights, self.base_url, weights_dir)
            self.versions.set(version)
