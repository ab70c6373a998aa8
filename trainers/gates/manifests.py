"""The four manifests written beside every dataset (and the consumption one beside every trained model).

* ``source.json``: where the rows came from — env ids and versions, seed-set hashes, agent and
  policy, collection times, run ids and identity hashes;
* ``processing.json``: the builder and its parameters, each gate's ``name@version`` and
  thresholds, counts per gate and reason, examples, the effective sample rate, histograms
  before and after the gates, and the sha256 of ``data.jsonl``;
* ``consumption.json``: who trained on it. In a dataset dir, the list of trainings that read
  it; in a model dir (written by ``rowgym train *`` through :func:`write_consumption`), which
  dataset versions and episode ids that model consumed, plus what its base model had consumed;
* ``isolation.json``: the quarantine the leakage gate checked against (every entry's source,
  split, seed and task hash; eval files with their sha256), and the envs left out with why.

>>> import tempfile, json
>>> from rowgym.trainers.gates.manifests import write_consumption, consumed_hashes
>>> d = tempfile.mkdtemp()
>>> _ = write_consumption(d, model="base", run="sft-1", dataset=None, episode_ids=["e1"], task_hashes=["abc"])
>>> sorted(consumed_hashes(d))
['abc']
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import rowgym
from rowgym.rows import RunManifest
from rowgym.store import atomic_write, sha256_file
from rowgym.trainers.gates.base import GateReport
from rowgym.trainers.gates.quarantine import Quarantine

SOURCE, PROCESSING, CONSUMPTION, ISOLATION = "source.json", "processing.json", "consumption.json", "isolation.json"
MANIFESTS = (SOURCE, PROCESSING, CONSUMPTION, ISOLATION)
SCHEMA = 1


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _write(path: Path, data: dict[str, Any]) -> Path:
    atomic_write(path, json.dumps({"schema_version": SCHEMA, **data}, indent=2, sort_keys=True, default=str) + "\n")
    return path


def source_from_runs(manifests: Sequence[RunManifest], run_dirs: Sequence[str | Path] = ()) -> dict[str, Any]:
    dirs = {m.run_id: str(d) for m, d in zip(manifests, run_dirs, strict=False)}
    return {"kind": "runs", "runs": [{
        "run_dir": dirs.get(m.run_id), "run_id": m.run_id, "env_id": m.source.env_id,
        "env_version": m.source.env_version, "split": m.source.split.value, "n_seeds": len(m.source.seeds),
        "seed_set_hash": m.source.seed_set_hash, "group_size": m.source.group_size, "agent": m.policy.agent,
        "policy_model": m.policy.model, "policy_revision": m.policy.revision, "sampling": m.policy.sampling,
        "privileged": m.policy.privileged, "reward_versions": m.reward_versions,
        "collected_from": m.created_at.isoformat(), "collected_to": m.updated_at.isoformat(),
        "identity_hash": m.identity_hash, "status": m.status, "n_episodes": m.n_episodes} for m in manifests]}


def source_from_env(env_id: str, env_version: str, split: str, seeds: Sequence[int], seed_set_hash: str) -> dict[str, Any]:
    return {"kind": "env_seeds", "env_id": env_id, "env_version": env_version, "split": split,
            "n_seeds": len(seeds), "seeds": list(seeds), "seed_set_hash": seed_set_hash, "agent": None,
            "collected_at": _now()}


def write_manifests(out_dir: str | Path, *, source: dict[str, Any], report: GateReport, gates: Sequence[Any],
                    quarantine: Quarantine, builder: str, params: dict[str, Any],
                    dataset_hashes: Iterable[str] = ()) -> list[Path]:
    """Write source, processing, isolation and an empty consumption manifest into a dataset dir."""
    out = Path(out_dir)
    data = out / "data.jsonl"
    paths = [_write(out / SOURCE, {"created_at": _now(), "rowgym_version": rowgym.__version__, **source})]
    paths.append(_write(out / PROCESSING, {
        "created_at": _now(), "builder": builder, "params": params,
        "gates": [{"id": g.id, "name": g.name, "version": g.version, "params": g.params()} for g in gates],
        "data_sha256": sha256_file(data) if data.exists() else None, "report": report.to_dict()}))
    overlap = sorted(set(dataset_hashes) & quarantine.hashes)
    by: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for e in quarantine.entries:
        by.setdefault(e.source, {}).setdefault(e.split, []).append({"seed": e.seed, "task_hash": e.task_hash})
    paths.append(_write(out / ISOLATION, {
        "created_at": _now(), "n_per_split": quarantine.n_per_split, "n_entries": len(quarantine.entries),
        "sources": by, "eval_files": quarantine.files, "skipped": quarantine.skipped,
        "dataset_overlap": overlap}))
    if not (out / CONSUMPTION).exists():
        paths.append(_write(out / CONSUMPTION, {"consumers": []}))
    return paths


def write_consumption(out_dir: str | Path, *, model: str | Path | None, run: str, dataset: str | Path | None,
                      episode_ids: Iterable[str] = (), task_hashes: Iterable[str] = (),
                      trainer: str = "sft") -> Path:
    """Record that the model in ``out_dir`` (trained from ``model`` by ``run``) consumed ``dataset``.

    Call it from every trainer once training data are fixed (GRPO: the episode ids it played
    and their task hashes). Appends to ``out_dir/consumption.json``; copies what the base
    model ``model`` had consumed (its own consumption manifest) into ``inherited``; and, when
    ``dataset`` is a dataset directory, appends this training to the dataset's consumers.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ds_info: dict[str, Any] | None = None
    if dataset is not None:
        d = Path(dataset)
        prov = d / "provenance.json"
        ds_info = {"path": str(d)}
        if prov.exists():
            p = json.loads(prov.read_text())
            ds_info.update(kind=p.get("kind"), data_sha256=p.get("data_sha256"), n_rows=p.get("n_rows"))
            task_hashes = list(task_hashes) or list(p.get("task_hashes") or [])
    entry = {"at": _now(), "trainer": trainer, "model": str(model) if model else None, "run": run,
             "dataset": ds_info, "episode_ids": sorted(set(episode_ids)), "task_hashes": sorted(set(task_hashes))}
    path = out / CONSUMPTION
    cur = _read(path) or {"consumed": [], "inherited": []}
    cur.setdefault("consumed", []).append(entry)
    if model is not None and Path(model).resolve() != out.resolve():
        base = _read(Path(model) / CONSUMPTION)
        if base:
            cur["inherited"] = base.get("consumed", []) + base.get("inherited", [])
            cur["base_model"] = str(model)
    cur.pop("schema_version", None)
    _write(path, cur)
    if ds_info is not None and (Path(dataset) / "provenance.json").exists():
        dpath = Path(dataset) / CONSUMPTION
        dcur = _read(dpath) or {"consumers": []}
        dcur.pop("schema_version", None)
        dcur.setdefault("consumers", []).append({"at": entry["at"], "trainer": trainer, "model_out": str(out),
                                                 "run": run, "n_episode_ids": len(entry["episode_ids"])})
        _write(dpath, dcur)
    return path


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def consumed_hashes(model_dir: str | Path) -> set[str]:
    """Every task hash a model (and its base models) consumed, from its consumption manifest."""
    data = _read(Path(model_dir) / CONSUMPTION) or {}
    out: set[str] = set()
    for e in data.get("consumed", []) + data.get("inherited", []):
        out.update(e.get("task_hashes") or [])
    return out


def has_consumption(model_dir: str | Path) -> bool:
    return (Path(model_dir) / CONSUMPTION).exists()


def quarantine_touches(model_dirs: Iterable[str | Path], env_ids: Sequence[str], *,
                       n_per_split: int = 200) -> list[tuple[str, str, str, int | None, str]]:
    """``(model dir, env id, split, seed, task hash)`` for every quarantined task (dev or held-out of
    ``env_ids``) that a model's consumption manifests say it trained on; empty when clean."""
    from rowgym.trainers.gates.quarantine import build_quarantine

    dirs = [Path(d) for d in model_dirs if has_consumption(d)]
    if not dirs:
        return []
    q = build_quarantine(list(env_ids), n_per_split=n_per_split)
    by_hash = {e.task_hash: e for e in q.entries}
    out = []
    for d in dirs:
        for h in sorted(consumed_hashes(d) & set(by_hash)):
            e = by_hash[h]
            out.append((str(d), e.source, e.split, e.seed, h))
    return out
