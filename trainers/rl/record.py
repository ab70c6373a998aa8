"""Crash safety: checkpoints and the consumption record.

``<out>/checkpoints/step-N/`` holds the weights after optimizer step N (``model/``, the
``save_pretrained`` layout vLLM can reload), the optimizer state and ``state.json`` (step,
weights hash, RNG states). It is written to a temporary directory and renamed into place,
so a checkpoint either exists whole or not at all; the newest one is the truth on resume.

``<out>/consumption.jsonl`` beside the run store says which optimizer step consumed which
groups and episode ids, with the versions that sampled them; one fsynced line per step,
written *before* the step's checkpoint. On resume, lines of steps after the last checkpoint
(trained into weights that were lost) are dropped and those groups are trained on again by
the resumed steps, so in the record, and in the weights, every group is trained exactly once.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from rowgym.errors import RowgymError
from rowgym.store import atomic_write
from rowgym.store.files import fsync_dir

STATE = "state.json"


def save_weights(model: Any, path: Path) -> None:
    """``config.json`` + one ``model.safetensors`` with every tensor of the state dict.

    Tied weights are written under both names (``save_pretrained`` keeps only one): vLLM's
    in-place ``reload_weights`` loads layer by layer, and a tied LM head absent from the file
    keeps its old values (``ParallelLMHead: Failed to load weights`` in the server log).
    """
    from safetensors.torch import save_file

    path.mkdir(parents=True, exist_ok=True)
    model.config.save_pretrained(path)
    save_file({k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}, str(path / "model.safetensors"),
              metadata={"format": "pt"})


class Checkpoints:
    def __init__(self, root: Path, keep: int = 2):
        self.root, self.keep = Path(root), max(1, keep)

    def path(self, step: int) -> Path:
        return self.root / f"step-{step:06d}"

    def steps(self) -> list[int]:
        if not self.root.is_dir():
            return []
        out = []
        for p in self.root.iterdir():
            if p.name.startswith("step-") and not p.name.endswith(".tmp") and (p / STATE).exists():
                out.append(int(p.name[5:]))
        return sorted(out)

    def latest(self) -> int | None:
        s = self.steps()
        return s[-1] if s else None

    def save(self, step: int, model: Any, optimizer: Any, state: dict[str, Any]) -> Path:
        import torch

        final = self.path(step)
        tmp = final.with_name(final.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        save_weights(model, tmp / "model")
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        (tmp / STATE).write_text(json.dumps({**state, "step": step}, indent=2))
        for f in (tmp / "model").iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        shutil.rmtree(final, ignore_errors=True)
        os.rename(tmp, final)
        fsync_dir(self.root)
        for old in self.steps()[: -self.keep]:
            shutil.rmtree(self.path(old), ignore_errors=True)
        return final

    def load(self, step: int, model: Any, optimizer: Any) -> dict[str, Any]:
        import torch
        from safetensors.torch import load_file

        p = self.path(step)
        sd: dict[str, Any] = {}
        for f in sorted((p / "model").glob("*.safetensors")):
            sd.update(load_file(f))
        missing, unexpected = model.load_state_dict(sd, strict=False)
        tied = {k for k in missing if "lm_head" in k} if getattr(model.config, "tie_word_embeddings", False) else set()
        if set(missing) - tied or unexpected:
            raise RowgymError(f"checkpoint {p} does not fit the model (missing {sorted(missing)[:3]}, "
                              f"unexpected {sorted(unexpected)[:3]})")
        optimizer.load_state_dict(torch.load(p / "optimizer.pt", weights_only=False))
        return json.loads((p / STATE).read_text())


class ConsumptionRecord:
    """``consumption.jsonl``: one line per optimizer step (see the module doc)."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def entries(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text().splitlines():
            if line.endswith("}"):  # a torn last line (crash while appending) is dropped
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
        return out

    def truncate_after(self, step: int) -> list[dict[str, Any]]:
        """Keep the lines of steps <= ``step`` (the last checkpoint); returns what was dropped."""
        entries = self.entries()
        keep = [e for e in entries if e["step"] <= step]
        dropped = [e for e in entries if e["step"] > step]
        if dropped or (self.path.exists() and len(keep) != len(self.path.read_text().splitlines())):
            atomic_write(self.path, "".join(json.dumps(e, sort_keys=True) + "\n" for e in keep))
        return dropped

    def append(self, entry: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as f:
            f.write(json.dumps(entry, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def consumed_groups(self) -> dict[str, int]:
        """group id -> the step that consumed it (raises if a group was consumed twice)."""
        seen: dict[str, int] = {}
        for e in self.entries():
            for g in e["group_ids"]:
                if g in seen:
                    raise RowgymError(f"group {g} consumed by steps {seen[g]} and {e['step']}")
                seen[g] = e["step"]
        return seen
