"""Training datasets from trajectories: tool-use SFT conversations and GRPO prompts.

>>> import tempfile
>>> from rowgym.rollouts.engine import CollectConfig, collect
>>> from rowgym.trainers.datasets import sft_conversations, grpo_prompts
>>> run = collect(CollectConfig(env_id="rowgym/ToolAPI-Retail-v0", episodes=2, out=tempfile.mkdtemp(),
...                             progress=False)).out
>>> rows = sft_conversations(run)
>>> [m["role"] for m in rows[0]["messages"]][:4]
['system', 'user', 'assistant', 'tool']
>>> grpo_prompts("rowgym/ToolAPI-Retail-v0", n=2)[0]["split"]
'train'

Both builders emit plain ``list[dict]`` rows in the shape TRL expects:

* SFT rows: ``messages`` (system = the env's ``system_prompt``, user = the first
  observation, then per step an assistant message with ``tool_calls`` and a ``tool``
  message with the observation), ``tools`` (the env's tool schemas as a JSON string,
  which TRL's SFTTrainer ``json.loads`` per row) and provenance columns.
* GRPO rows: ``prompt`` (the chat messages of the first turn), ``seed``, ``env_id``,
  ``split``, ``task_hash``, ``tools``.

Tool-call ``arguments`` stay JSON *strings* exactly as the policy wrote them (a bad
call's broken JSON included): Arrow mangles dicts whose keys differ from row to row,
and Qwen-style chat templates render a string verbatim.

Held-out data never becomes training data: any held-out episode raises
:class:`rowgym.errors.HeldOutLeakError`, and there is no override. The split and task hash
of an episode are re-derived from its env (the task re-made from env id + seed and its
content hashed, :class:`TaskOracle`), never read from the row: a row whose stored split or
task hash disagrees, or has none, is refused as :class:`TamperedDataError`, and a run whose
manifest says ``heldout`` is refused whole. Seed and task hash are only labels, though, and
``env.task_hash(seed)`` is public, so the *content* is checked too: the episode's first
observation must be the task of the seed it claims (:meth:`TaskOracle.content_problem`),
and its ids must be the ones its run, seed and sample index give. ``dev`` is used only when
asked for explicitly.
A run directory must also pass verification (:meth:`rowgym.store.TrajectoryStore.verify`)
unless ``allow_unverified=True``, which the dataset's provenance then records.
:func:`write_dataset` saves rows with a ``provenance.json`` (task hashes, source run
manifests, env ids) that the contamination check reads.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import rowgym
from rowgym.errors import (
    HeldOutLeakError,
    RowgymError,
    SplitError,
    StoreError,
    TamperedDataError,
    UnknownEnvError,
)
from rowgym.registry import spec as env_spec
from rowgym.rollouts.episode import EpisodeKey
from rowgym.rows import Episode, RunManifest, Split, StepRow
from rowgym.splits import as_split
from rowgym.store import IntegrityError, TrajectoryStore, atomic_write, sha256_file
from rowgym.task_oracle import TaskFacts, TaskOracle

Source = str | Path | Episode | Iterable[Episode]

DATA_FILE = "data.jsonl"
# Verdict flags that keep an episode out of training data by default (the agent touched what grades it).
EXCLUDED_FLAGS = frozenset({"suspicious"})
PROVENANCE_FILE = "provenance.json"


# --------------------------------------------------------------------- split guard
def check_splits(splits: Iterable[str | Split]) -> tuple[Split, ...]:
    """The requested splits, refusing ``heldout`` (there is no override)."""
    out = tuple(as_split(s) for s in splits)
    if Split.HELDOUT in out:
        raise HeldOutLeakError("held-out seeds are for evaluation only and cannot become training data; "
                               "build training sets from 'train' (or 'dev', when you ask for it explicitly)")
    if not out:
        raise SplitError("no split requested; use splits=('train',)")
    return out


@functools.lru_cache(maxsize=64)
def _env_class(env_id: str) -> type | None:
    try:
        return env_spec(env_id).load()
    except (UnknownEnvError, RowgymError, ImportError):
        return None


def _true_split(ep: Episode, oracle: TaskOracle | None = None) -> Split:
    """The split of an episode's seed according to its env (never the stored label)."""
    if oracle is not None:
        return oracle.facts(ep.env_id, ep.seed).split
    with TaskOracle() as o:
        return o.facts(ep.env_id, ep.seed).split


def id_problem(run_id: Any, seed: Any, *, episode_ids: Iterable[Any] = (), group_id: Any = None,
               sample_index: Any = None) -> str | None:
    """Why episode / group ids disagree with the run, seed (and sample index) they are stored with, or None.

    The ids are the engine's (:class:`rowgym.rollouts.episode.EpisodeKey`): a relabelled seed that keeps
    its old ids shows.
    """
    key = EpisodeKey(str(run_id), seed, 0 if sample_index is None else sample_index)
    if group_id is not None and group_id != key.group_id:
        return f"group id {group_id!r} is not {key.group_id!r} (run id and seed)"
    want = key.episode_id if sample_index is not None else f"{key.group_id}:<sample index>"
    for eid in episode_ids:
        if eid is None:
            continue
        if eid != want if sample_index is not None else not str(eid).startswith(f"{key.group_id}:"):
            return f"episode id {eid!r} is not {want!r} (run id, seed and sample index)"
    return None


def refuse_heldout(episodes: Iterable[Episode], manifests: Sequence[RunManifest] = ()) -> None:
    """Raise :class:`HeldOutLeakError` if any episode is held out, and :class:`TamperedDataError`
    if its rows disagree with its env or its run.

    The split and task hash of each episode are re-derived from its env id and seed (and the
    env kwargs its run recorded); the stored ``split`` and ``task_hash`` fields have to agree
    with them, and the content has to be the seed's (:func:`_episode_problem`). A run whose
    manifest says ``heldout`` is refused as a whole.
    """
    runs = {m.run_id: m for m in manifests}
    for m in manifests:
        if m.source.split == Split.HELDOUT or (m.identity is not None and m.identity.split == Split.HELDOUT):
            raise HeldOutLeakError(f"run {m.run_id} ({m.source.env_id}) was collected from the held-out split; "
                                   f"held-out runs never become training data (keep them for `rowgym bench`)")
    with TaskOracle() as oracle:
        for ep in episodes:
            man = runs.get(ep.run_id)
            if manifests and man is None:
                raise TamperedDataError(f"episode {ep.episode_id} names run {ep.run_id!r}, which is not the run "
                                        f"it is stored in ({', '.join(sorted(runs))})")
            if man is not None and ep.env_id != man.source.env_id:
                raise TamperedDataError(f"episode {ep.episode_id} says env {ep.env_id} but its run "
                                        f"{man.run_id} was collected on {man.source.env_id}")
            kwargs = man.identity.env_kwargs if man is not None and man.identity is not None else None
            facts = oracle.facts(ep.env_id, ep.seed, kwargs)
            if facts.split == Split.HELDOUT or ep.split == Split.HELDOUT:
                raise HeldOutLeakError(
                    f"episode {ep.episode_id} ({ep.env_id}, seed {ep.seed}) is from the held-out split; held-out "
                    f"episodes never become training data. Collect training data with --split train and keep "
                    f"held-out runs for `rowgym bench`.")
            for s in ep.steps:
                if (s.env_id, s.seed, s.split, s.episode_id) != (ep.env_id, ep.seed, ep.split, ep.episode_id):
                    raise TamperedDataError(f"episode {ep.episode_id}: step {s.turn} says {s.env_id} seed {s.seed} "
                                            f"({s.split}), the episode {ep.env_id} seed {ep.seed} ({ep.split})")
            if ep.split != facts.split:
                raise TamperedDataError(f"episode {ep.episode_id}: stored split {str(ep.split)!r} but {ep.env_id} "
                                        f"puts seed {ep.seed} in {facts.split.value!r}; the row was edited")
            problem = _episode_problem(ep, facts, oracle, kwargs)
            if problem:
                raise TamperedDataError(f"episode {ep.episode_id} ({ep.env_id}, seed {ep.seed}) refused: {problem}")


def _episode_problem(ep: Episode, facts: TaskFacts, oracle: TaskOracle, kwargs: dict[str, Any] | None) -> str | None:
    """Why an episode that claims a train seed is not that seed's episode (task hash, ids, content), or None.

    An episode whose reset failed has no steps and no task hash, and nothing to train on: it
    passes (its split was checked). Every other episode must carry its seed's task hash.
    """
    if not ep.task_hash:
        if not ep.steps and ep.failure is not None:
            return None
        return ("it has no task hash; every recorded episode carries its task's hash, so the row was edited "
                "(a blank hash would skip the check)")
    if ep.task_hash != facts.task_hash:
        return (f"stored task hash {ep.task_hash} is not the hash of {ep.env_id} seed {ep.seed}'s task "
                f"({facts.task_hash}); the row was edited (seed, env id or task)")
    if ep.steps:
        wrong = oracle.content_problem(ep.env_id, ep.seed, ep.steps[0].observation, kwargs)
        if wrong:
            return f"{wrong}: the recorded task is another seed's"
        wrong = episode_tools_problem(ep, oracle._env(ep.env_id, kwargs)[1])
        if wrong:
            return wrong
    wrong_ids = id_problem(ep.run_id, ep.seed, episode_ids=[ep.episode_id], group_id=ep.group_id,
                           sample_index=ep.sample_index)
    if wrong_ids:
        return f"{wrong_ids}; the seed was edited"
    return None


def episode_tools_problem(ep: Episode, env: Any) -> str | None:
    """Why an episode's stored ``tools`` are not its env's tool schemas, or None. Every SFT / DPO row
    carries them and the chat template renders them into every prompt, so they are training text."""
    from rowgym.trainers.gates.format import tools_problem

    try:
        tools = json.loads(ep.tools) if isinstance(ep.tools, str) else ep.tools
    except ValueError:
        return "its tools column is not valid JSON"
    wrong = tools_problem(tools, env)
    return f"{wrong}; the stored episode was edited" if wrong else None


def reward_at_least(reward: Any, min_reward: float) -> bool:
    """``reward >= min_reward`` for a finite number; NaN, infinities and non-numbers never pass a filter."""
    try:
        r = float(reward)
    except (TypeError, ValueError):
        return False
    return math.isfinite(r) and r >= min_reward


# --------------------------------------------------------------------------- sources
def load_episodes(source: Source, *, allow_unverified: bool = False) -> tuple[list[Episode], list[RunManifest]]:
    """Episodes (and the manifests of the runs they came from) from a run directory,
    a list of run directories, an Episode or an iterable of Episodes.

    A run directory must pass verification (:meth:`TrajectoryStore.verify`, fast path):
    otherwise :class:`rowgym.store.IntegrityError` is raised, unless ``allow_unverified``
    (then the lines that do not parse are left out and the rest is used).
    """
    if isinstance(source, Episode):
        return [source], []
    if isinstance(source, str | Path):
        root = Path(source)
        if not (root / "manifest.json").exists():
            raise StoreError(f"{root} is not a rowgym run directory (no manifest.json); "
                             f"collect one with `rowgym collect ... --out {root}`")
        # read-only: a dataset build must never write into a run that may still be collecting
        store = TrajectoryStore(root, readonly=True)
        if not allow_unverified:
            store.require_verified()
        assert store.manifest is not None
        return list(store.episodes()), [store.manifest]
    episodes: list[Episode] = []
    manifests: list[RunManifest] = []
    for item in source:
        eps, mans = load_episodes(item, allow_unverified=allow_unverified)
        episodes += eps
        manifests += mans
    return episodes, manifests


def run_problems(run_dir: str | Path, *, fast: bool = True) -> list[str]:
    """The integrity problems of a run directory (empty when it verifies); ``fast``: sealed shards whose
    hash matches the manifest are not parsed (a shard rewritten together with its manifest can still
    hold a line that does not parse: the full check finds it)."""
    return [str(p) for p in TrajectoryStore(run_dir, readonly=True).verify(fast=fast)]


def system_prompt_of(env_id: str) -> str:
    """The system prompt of the environment registered as ``env_id``."""
    cls = _env_class(env_id)
    if cls is None:
        raise UnknownEnvError(f"cannot find environment {env_id!r} to read its system prompt; install its "
                              f"plugin or pass system_prompt=... explicitly")
    return cls.system_prompt


# ------------------------------------------------------------------------------ SFT
def _assistant_message(step: StepRow) -> dict[str, Any]:
    call = step.action.tool_call
    if call is None:  # the policy wrote text without a parsable call (a no_tool_call bad call)
        return {"role": "assistant", "content": step.action.text}
    return {"role": "assistant", "content": "",
            "tool_calls": [{"id": call.id or f"call_{step.turn}", "type": "function",
                            "function": {"name": call.name, "arguments": call.arguments}}]}


def episode_messages(ep: Episode, *, system_prompt: str, keep_bad_calls: bool = True) -> list[dict[str, Any]]:
    """The chat conversation of one episode (see the module docstring for the shape).

    The observation after the last step (e.g. "Conversation ended.") is left out, so a
    conversation ends with the assistant's final call. With ``keep_bad_calls=False`` a
    bad call and the error it got are dropped; the repair then follows the previous
    observation directly.
    """
    if not ep.steps:
        return []
    messages: list[dict[str, Any]] = [{"role": "system", "content": system_prompt},
                                      {"role": "user", "content": ep.steps[0].observation}]
    steps = [s for s in ep.steps if keep_bad_calls or not s.bad_call]
    for i, step in enumerate(steps):
        msg = _assistant_message(step)
        messages.append(msg)
        if i == len(steps) - 1 and (step.terminated or step.truncated or step is ep.steps[-1]):
            break
        if "tool_calls" in msg:
            messages.append({"role": "tool", "tool_call_id": msg["tool_calls"][0]["id"],
                             "name": msg["tool_calls"][0]["function"]["name"], "content": step.next_observation})
        else:  # no call to answer: the environment's reply comes back as the user
            messages.append({"role": "user", "content": step.next_observation})
    return messages


def sft_conversations(source: Source, *, min_reward: float = 1.0, splits: Sequence[str | Split] = ("train",),
                      keep_bad_calls: bool = True, require_success: bool = False,
                      system_prompt: str | None = None, allow_unverified: bool = False) -> list[dict[str, Any]]:
    """Tool-use SFT rows from stored episodes.

    Args:
        source: a run directory, a list of them, or Episode objects.
        min_reward: keep episodes whose final reward is at least this.
        splits: splits to keep; ``heldout`` is refused, ``dev`` only when listed here.
        keep_bad_calls: keep bad calls and the errors they got (they teach repair).
        require_success: also require the verifier's ``success`` flag.
        system_prompt: override the env's ``system_prompt`` (default: read from the registry).
        allow_unverified: use runs that fail verification (see :func:`load_episodes`).

    Returns:
        One row per kept episode: ``messages``, ``tools`` (JSON string), ``env_id``,
        ``seed``, ``split``, ``episode_id``, ``group_id``, ``run_id``, ``task_hash``,
        ``final_reward``, ``n_bad_calls``.

    Raises:
        HeldOutLeakError: if any episode in ``source`` is held out, whatever ``splits`` says
            (:class:`TamperedDataError` if a row disagrees with its env about its seed).
        IntegrityError: if a run fails verification and ``allow_unverified`` is off.
    """
    rows, _, _ = sft_candidates(source, min_reward=min_reward, splits=splits, keep_bad_calls=keep_bad_calls,
                                require_success=require_success, system_prompt=system_prompt,
                                allow_unverified=allow_unverified)
    return rows


def sft_candidates(source: Source, *, min_reward: float = 1.0, splits: Sequence[str | Split] = ("train",),
                   keep_bad_calls: bool = True, require_success: bool = False, system_prompt: str | None = None,
                   allow_unverified: bool = False) -> tuple[list[dict[str, Any]], list[Episode], list[RunManifest]]:
    """What :func:`sft_conversations` returns, plus the episodes and run manifests it read
    (the data gates replay the episodes and record the manifests)."""
    wanted = set(check_splits(splits))
    episodes, manifests = load_episodes(source, allow_unverified=allow_unverified)
    refuse_heldout(episodes, manifests)
    prompts: dict[str, str] = {}
    rows = []
    for ep in episodes:
        if ep.split not in wanted or ep.failure is not None or ep.verdict is None or not ep.steps:
            continue
        if not reward_at_least(ep.final_reward, min_reward) or (require_success and not ep.success):
            continue
        if EXCLUDED_FLAGS.intersection(ep.verdict.flags):
            continue
        if system_prompt is None and ep.env_id not in prompts:
            prompts[ep.env_id] = system_prompt_of(ep.env_id)
        sp = system_prompt if system_prompt is not None else prompts[ep.env_id]
        rows.append({"messages": episode_messages(ep, system_prompt=sp, keep_bad_calls=keep_bad_calls),
                     "tools": ep.tools, "env_id": ep.env_id, "seed": ep.seed, "split": ep.split.value,
                     "episode_id": ep.episode_id, "group_id": ep.group_id, "run_id": ep.run_id,
                     "task_hash": ep.task_hash, "final_reward": ep.final_reward, "n_bad_calls": ep.n_bad_calls})
    return rows, episodes, manifests


# --------------------------------------------------------------------------- groups
def episode_groups(episodes: Iterable[Episode]) -> dict[str, list[Episode]]:
    """Episodes by ``group_id`` (the k samples of one seed in a run collected with ``--group-size k``),
    each group in ``sample_index`` order.

    Raises:
        TamperedDataError: if a group mixes runs, envs or seeds (a group is one seed of one run).
    """
    groups: dict[str, list[Episode]] = {}
    for ep in episodes:
        groups.setdefault(ep.group_id, []).append(ep)
    for gid, eps in groups.items():
        keys = {(e.run_id, e.env_id, e.seed) for e in eps}
        if len(keys) > 1:
            raise TamperedDataError(f"group {gid} mixes {len(keys)} (run, env, seed) combinations "
                                    f"({sorted(keys)[:3]}); a group is the samples of one seed of one run")
        eps.sort(key=lambda e: (e.sample_index, e.episode_id))
    return groups


def conversation_row(ep: Episode, *, system_prompt: str, keep_bad_calls: bool = True) -> dict[str, Any]:
    """The SFT row of one episode (what :func:`sft_candidates` emits per kept episode)."""
    return {"messages": episode_messages(ep, system_prompt=system_prompt, keep_bad_calls=keep_bad_calls),
            "tools": ep.tools, "env_id": ep.env_id, "seed": ep.seed, "split": ep.split.value,
            "episode_id": ep.episode_id, "group_id": ep.group_id, "run_id": ep.run_id,
            "task_hash": ep.task_hash, "final_reward": ep.final_reward, "n_bad_calls": ep.n_bad_calls}


# ----------------------------------------------------------------------------- GRPO
def grpo_prompts(env_id: str, split: str | Split = "train", n: int = 64, *, start: int = 0,
                 env_kwargs: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """GRPO prompt rows for the first ``n`` seeds of ``split`` (from index ``start``).

    Each row: ``prompt`` (system + first observation, the chat messages of the first
    turn), ``seed``, ``env_id``, ``split``, ``task_hash``, ``tools`` (JSON string) and
    ``prompt_key`` (see :func:`prompt_key`; TRL's ``rollout_func`` receives only the
    prompts, so it maps them back to seeds with it).

    Raises:
        HeldOutLeakError: for ``split="heldout"``.
    """
    (sp,) = check_splits([split])
    env = rowgym.make(env_id, **(env_kwargs or {}))
    rows = []
    try:
        for seed in env.splits.seeds(sp, n, start=start):
            obs, info = env.reset(seed=seed)
            if info["split"] != sp.value:  # the env disagrees with its own split list: never guess
                raise HeldOutLeakError(f"{env_id} seed {seed} is listed as {sp.value} but reset says {info['split']}")
            prompt = [{"role": "system", "content": env.system_prompt}, {"role": "user", "content": obs}]
            rows.append({"prompt": prompt, "seed": seed, "env_id": env.env_id, "split": sp.value,
                         "task_hash": info["task_hash"], "tools": env.tools_json(), "prompt_key": prompt_key(prompt)})
    finally:
        env.close()
    return rows


def prompt_key(messages: Sequence[dict[str, Any]]) -> str:
    """A stable hash of chat messages (role and content only), to map a prompt back to its seed."""
    canon = [{"role": m["role"], "content": m.get("content") or ""} for m in messages]
    return hashlib.sha256(json.dumps(canon, sort_keys=True).encode()).hexdigest()[:16]


# ---------------------------------------------------------------------- persistence
def to_hf_dataset(rows: Sequence[dict[str, Any]]) -> Any:
    """The rows as a ``datasets.Dataset`` (needs the ``datasets`` extra)."""
    try:
        import datasets
    except ImportError as e:
        raise RowgymError("building a Dataset needs `pip install rowgym[datasets]`") from e
    return datasets.Dataset.from_list(list(rows))


def write_dataset(rows: Sequence[dict[str, Any]], out_dir: str | Path, *,
                  sources: Iterable[str | Path | RunManifest] = (), kind: str = "sft",
                  params: dict[str, Any] | None = None, allow_unverified: bool = False) -> Path:
    """Write ``data.jsonl`` and ``provenance.json`` into ``out_dir`` and return ``out_dir``.

    ``provenance.json`` records the sorted set of ``task_hash`` values (overall and per
    env), the env ids, splits and run ids of the rows, the source run manifests
    (``sources``: run directories or manifests), the builder's ``params`` and the
    sha256 of ``data.jsonl``. Refuses rows whose ``split`` is ``heldout``, and source runs
    that fail verification unless ``allow_unverified`` (then ``"unverified": true`` and the
    problems are recorded).
    """
    if any(r.get("split") == Split.HELDOUT.value for r in rows):
        raise HeldOutLeakError("refusing to write held-out rows into a training dataset")
    sources = list(sources)
    # Without the override the episodes were read only from runs that verify, and a line that did not
    # parse stopped the read; with it, reading skipped such lines, which only the full check reports
    problems = {str(s): run_problems(s, fast=not allow_unverified) for s in sources if not isinstance(s, RunManifest)}
    problems = {k: v for k, v in problems.items() if v}
    if problems and not allow_unverified:
        run, found = next(iter(problems.items()))
        raise IntegrityError(f"{run} fails verification ({'; '.join(found[:3])}); rerun with --allow-unverified "
                             f"to use it anyway (the dataset is then marked unverified)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / DATA_FILE, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
    manifests = []
    for s in sources:
        if isinstance(s, RunManifest):
            manifests.append(s)
        else:
            manifests += load_manifest(Path(s))
    by_env: dict[str, set[str]] = {}
    for r in rows:
        if "task_hash" in r:
            by_env.setdefault(r.get("env_id", ""), set()).add(r["task_hash"])
    provenance = {
        "kind": kind, "created_at": datetime.now(UTC).isoformat(), "rowgym_version": rowgym.__version__,
        "n_rows": len(rows), "data_file": DATA_FILE, "data_sha256": sha256_file(out / DATA_FILE),
        "env_ids": sorted({r["env_id"] for r in rows if "env_id" in r}),
        "splits": sorted({r["split"] for r in rows if "split" in r}),
        "run_ids": sorted({r["run_id"] for r in rows if "run_id" in r}),
        "task_hashes": sorted(set().union(*by_env.values())) if by_env else [],
        "task_hashes_by_env": {k: sorted(v) for k, v in sorted(by_env.items())},
        "params": params or {},
        "sources": [m.model_dump(mode="json") for m in manifests],
        "unverified": bool(problems),
        "integrity_problems": {k: v[:50] for k, v in problems.items()},
    }
    atomic_write(out / PROVENANCE_FILE, json.dumps(provenance, indent=2, sort_keys=True))
    return out


def load_manifest(run_dir: Path) -> list[RunManifest]:
    path = run_dir / "manifest.json"
    if not path.exists():
        raise StoreError(f"{run_dir} has no manifest.json; pass run directories as sources")
    return [RunManifest.model_validate_json(path.read_text())]


def read_dataset(out_dir: str | Path, *, allow_unverified: bool = False) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The rows and provenance written by :func:`write_dataset` (checks the data hash).

    A dataset built from runs that failed verification is refused unless ``allow_unverified``.
    """
    out = Path(out_dir)
    prov = json.loads((out / PROVENANCE_FILE).read_text())
    if sha256_file(out / DATA_FILE) != prov["data_sha256"]:
        raise StoreError(f"{out / DATA_FILE} does not match the sha256 in {PROVENANCE_FILE}; rebuild the dataset")
    if prov.get("unverified") and not allow_unverified:
        raise IntegrityError(f"{out} was built from runs that failed verification (its provenance says "
                             f"unverified); pass --allow-unverified to train on it anyway")
    rows = [json.loads(line) for line in (out / DATA_FILE).read_text().splitlines() if line]
    return rows, prov
