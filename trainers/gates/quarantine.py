"""The quarantine: content that must never reach training (dev and held-out tasks, eval files).

>>> from rowgym.trainers.gates.quarantine import build_quarantine
>>> q = build_quarantine(["rowgym/ToolAPI-Home-v0"], n_per_split=5)
>>> sorted({e.split for e in q.entries}), len(q.hashes)
(['dev', 'heldout'], 10)

Per env: the first ``n_per_split`` seeds of ``dev`` and ``heldout``, each as its task content
hash, its instruction (the prompt side) and its gold tool calls (the answer side). Per eval
file: every record's prompt-like and answer-like text. Built lists are cached under
``${ROWGYM_CACHE:-~/.cache/rowgym}/quarantine`` keyed by env id, rowgym version and size.
Envs that need a service (a browser, Docker) are skipped, and the isolation manifest says so.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import rowgym
from rowgym.registry import all_specs
from rowgym.rows import Split
from rowgym.splits import content_hash
from rowgym.store import atomic_write
from rowgym.trainers.gates.minhash import normalize

VERSION = "1"
SERVICE_TAGS = frozenset({"docker", "browser"})
_PROMPT_KEYS = ("instruction", "prompt", "question", "input", "query", "problem")
_ANSWER_KEYS = ("answer", "output", "completion", "response", "solution", "target")


@dataclass(frozen=True)
class Entry:
    """One quarantined item."""

    source: str
    """An env id or an eval file path."""
    split: str
    seed: int | None
    task_hash: str
    prompt: str
    answer: str


@dataclass
class Quarantine:
    entries: list[Entry] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    """Env id or file -> why it is not quarantined."""
    files: dict[str, str] = field(default_factory=dict)
    """Eval file -> its sha256."""
    n_per_split: int = 0

    @property
    def hashes(self) -> set[str]:
        return {e.task_hash for e in self.entries}

    def by_source(self) -> dict[str, list[Entry]]:
        out: dict[str, list[Entry]] = {}
        for e in self.entries:
            out.setdefault(e.source, []).append(e)
        return out

    def key_words(self, entries: list[Entry], side: str, max_df: float = 0.2) -> list[frozenset[str]]:
        """Per entry, its rare words (in under ``max_df`` of its source's texts): names, ids, values."""
        texts = [getattr(e, side) for e in entries]
        df = Counter(w for t in texts for w in set(normalize(t).split()))
        cut = max_df * len(texts)
        return [frozenset(w for w in set(normalize(t).split()) if df[w] < cut) for t in texts]


def _cache_dir() -> Path:
    cache = os.environ.get("ROWGYM_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "rowgym")
    return Path(cache) / "quarantine"


def _gold_text(task: Any) -> str:
    gold = getattr(task, "gold", None) or []
    calls = [f"{c.name} {c.arguments}" for c in gold if hasattr(c, "name")]
    answer = getattr(task, "answer", None)
    return "\n".join(calls + ([str(answer)] if answer and not calls else []))


def env_entries(env_id: str, n_per_split: int) -> list[Entry]:
    """Dev and held-out entries of one env (cached on disk)."""
    env = rowgym.make(env_id)
    try:
        u = env.unwrapped
        key = hashlib.sha256(json.dumps([env_id, getattr(u, "version", ""), rowgym.__version__, VERSION,
                                         n_per_split]).encode()).hexdigest()[:16]
        path = _cache_dir() / f"{env_id.replace('/', '_')}-{key}.json"
        if path.exists():
            try:
                return [Entry(**d) for d in json.loads(path.read_text())]
            except (OSError, ValueError, TypeError):
                pass
        out = []
        for split in (Split.DEV, Split.HELDOUT):
            for seed in u.splits.seeds(split, n_per_split):
                task = u.make_task(seed)
                out.append(Entry(env_id, split.value, seed, content_hash(u.task_content(task)),
                                 u.instruction(task), _gold_text(task)))
    finally:
        env.close()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps([asdict(e) for e in out]))
    return out


def _texts(record: Any, keys: tuple[str, ...]) -> str:
    if isinstance(record, dict):
        if "messages" in record and keys is _PROMPT_KEYS:
            return "\n".join(str(m.get("content") or "") for m in record["messages"] if m.get("role") == "user")
        if "messages" in record:
            return "\n".join(str(m.get("content") or "") for m in record["messages"] if m.get("role") == "assistant")
        return "\n".join(str(record[k]) for k in keys if record.get(k) not in (None, ""))
    return str(record) if keys is _PROMPT_KEYS else ""


def file_entries(path: str | Path) -> list[Entry]:
    """Entries of an eval file: JSON lines, a JSON list of records, or plain text (one item a line)."""
    p = Path(path)
    text = p.read_text()
    try:
        records: list[Any] = json.loads(text) if p.suffix == ".json" else [
            json.loads(line) for line in text.splitlines() if line.strip()]
    except ValueError:
        records = [line for line in text.splitlines() if line.strip()]
    if isinstance(records, dict):
        records = [records]
    out = []
    for i, r in enumerate(records):
        prompt, answer = _texts(r, _PROMPT_KEYS), _texts(r, _ANSWER_KEYS)
        h = str(r.get("task_hash")) if isinstance(r, dict) and r.get("task_hash") else content_hash(r)
        out.append(Entry(str(p), "eval", i, h, prompt, answer))
    return out


def quarantine_envs(extra: Iterable[str] = ()) -> tuple[list[str], dict[str, str]]:
    """Every registered env that can make tasks offline, plus ``extra``; and the skipped ones with why."""
    ids, skipped = [], {}
    for s in all_specs():
        tags = set(s.tags) & SERVICE_TAGS
        if tags and s.id not in extra:
            skipped[s.id] = f"needs {', '.join(sorted(tags))} to make tasks; not quarantined by default"
        else:
            ids.append(s.id)
    return sorted(set(ids) | set(extra)), skipped


def build_quarantine(env_ids: Iterable[str] | None = None, *, n_per_split: int = 200,
                     eval_files: Iterable[str | Path] = ()) -> Quarantine:
    """The quarantine of ``env_ids`` (default: :func:`quarantine_envs`) plus ``eval_files``."""
    skipped: dict[str, str] = {}
    if env_ids is None:
        env_ids, skipped = quarantine_envs()
    q = Quarantine(skipped=skipped, n_per_split=n_per_split)
    for env_id in env_ids:
        try:
            q.entries += env_entries(env_id, n_per_split)
        except Exception as e:  # an env that cannot be made here is named, not silently dropped
            q.skipped[env_id] = f"{type(e).__name__}: {str(e)[:200]}"
    for f in eval_files:
        q.entries += file_entries(f)
        q.files[str(f)] = hashlib.sha256(Path(f).read_bytes()).hexdigest()
    return q
