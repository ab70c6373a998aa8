"""Append-only JSONL shards: group commit, torn-line repair, sealing into the manifest.

Finished episodes are appended to the active shard ``shards/episodes-NNNNN.jsonl.partial``
as one JSON line each. :meth:`Shards.append_many` is a group commit: the lines of every
episode given go out in one synchronous ``write`` per shard touched (the shard is opened
with ``O_DSYNC``: the write returns once the data and the file's new size are on disk, as
``write`` + ``fdatasync`` would, in one system call), and they are durable when it returns;
:meth:`Shards.append` is the batch of one. :meth:`Shards.append_lines` takes lines already
serialised (the engine's writer serialises on the event loop and writes in a thread, so the
thread needs the GIL only around that one call). A new shard's directory entry is fsynced
when it is created. A killed writer loses at
most the lines of the batch in flight (never one that was reported stored), and re-opening
the run drops a torn last line: one without its newline (a complete line is never cut, even one
that does not parse; see :meth:`Shards._repair_partials`). A shard is sealed by fsync + rename
once it holds ``shard_size`` episodes; its sha256 and line count go into the manifest first. They are kept
up as its lines are written (:class:`~rowgym.store.files.RunningDigest`), so sealing does not
read the shard back; a shard this writer did not write whole (one repaired after a crash, or
whose size on disk is not what was written) is hashed from the file as it is on disk.

A line is written only if it reads back: JSON has no NaN or infinity (pydantic and orjson write
``null`` for them, which a float field refuses on read), so :func:`encode` refuses an episode
holding one (:func:`non_finite`) rather than store a line that every reader would quarantine.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from rowgym.errors import StoreError
from rowgym.rows import (
    Action,
    Check,
    Episode,
    Failure,
    PolicyInfo,
    PolicyVersion,
    RunManifest,
    ShardInfo,
    StepRow,
    Timings,
    TokenRecord,
    ToolCall,
    Verdict,
)
from rowgym.store import files
from rowgym.store.files import PARTIAL, RunningDigest, fsync_dir
from rowgym.store.lock import RunLock


class Shards:
    """The writing half of :class:`~rowgym.store.TrajectoryStore`."""

    root: Path
    shard_dir: Path
    shard_size: int
    readonly: bool
    lock: RunLock
    manifest: RunManifest | None
    _active: Path | None
    _active_count: int
    _fh: Any
    _written: RunningDigest | None  # the active shard's bytes as written (None: unknown, read the file back)

    if TYPE_CHECKING:  # provided by the other halves of TrajectoryStore
        def _write_manifest(self) -> None:
            ...

        def _remember(self, path: Path, digest: str, lines: int) -> None:
            ...

    def _shard_paths(self, sealed_only: bool = False) -> list[Path]:
        if not self.shard_dir.is_dir():
            return []
        paths = sorted(p for p in self.shard_dir.iterdir() if p.suffix == ".jsonl" or p.name.endswith(PARTIAL))
        return [p for p in paths if not (sealed_only and p.name.endswith(PARTIAL))]

    def _repair_partials(self) -> None:
        """Drop a torn last line from a partial shard and seal it (after a crash).

        Only a last line without its newline is torn: each batch is one ``O_DSYNC`` write of whole
        lines, so a crash can cut the last one short but never leaves a line that ends in a newline
        incomplete. A complete line that does not parse (a value this version refuses, a newer
        schema's field) is not a crash's doing: like a bad line before it, it is kept, counted in
        the manifest and quarantined (reported) by readers, never silently cut.
        """
        for p in self._shard_paths():
            if not p.name.endswith(PARTIAL):
                continue
            data = p.read_bytes()
            keep = data.rfind(b"\n") + 1  # 0 when no line is complete
            if keep != len(data):
                with open(p, "r+b") as f:
                    f.truncate(keep)
                    f.flush()
                    os.fsync(f.fileno())
            self._seal(p)

    def _seal(self, partial: Path, written: RunningDigest | None = None) -> None:
        """Seal ``partial``; ``written``: its bytes as this writer wrote them, if it wrote them all."""
        final = partial.with_name(partial.name[: -len(PARTIAL)])
        size = partial.stat().st_size
        if size == 0:
            partial.unlink()
            return
        # manifest first, then the rename: a reader never finds a sealed shard the manifest does not
        # list (only, for an instant, a listed one still named .partial), and after a crash in
        # between, reopening seals the partial again with the same hash (read from the file)
        if written is not None and written.size == size:
            digest, n = written.result()
        else:  # bytes this writer did not count (or a write that failed part-way): hash what is on disk
            digest, n = files.digest(partial)
        if self.manifest is not None:
            self.manifest.shards = [s for s in self.manifest.shards if s.name != final.name]
            self.manifest.shards.append(ShardInfo(name=final.name, sha256=digest, n_episodes=n))
            self.manifest.n_episodes = sum(s.n_episodes for s in self.manifest.shards)
            self._write_manifest()
        os.replace(partial, final)
        fsync_dir(self.shard_dir)
        self._remember(final, digest, n)

    def _next_shard(self) -> Path:
        existing = [p.name.split(".")[0] for p in self._shard_paths()]
        idx = 1 + max((int(n.rsplit("-", 1)[1]) for n in existing if n.rsplit("-", 1)[-1].isdigit()), default=-1)
        return self.shard_dir / f"episodes-{idx:05d}.jsonl{PARTIAL}"

    def append(self, episode: Episode) -> None:
        """Durably add one finished episode (one line, one write, fsync)."""
        self.append_many([episode])

    def append_many(self, episodes: Sequence[Episode]) -> None:
        """Durably add finished episodes in order: a group commit.

        All lines are serialised first (an episode that cannot be serialised raises before
        anything is written), then written with one synchronous ``write`` per shard they land
        in. When this returns, every one of them is on disk.
        """
        self.append_lines([encode(e) for e in episodes])

    def append_lines(self, lines: Sequence[bytes]) -> None:
        """Durably add episode lines made by :func:`encode`, in order (see :meth:`append_many`)."""
        if self.readonly:
            raise StoreError(f"{self.root} was opened read-only")
        if not self.lock.held:
            raise StoreError(f"{self.root} was closed; open the store again to write")
        lines = list(lines)
        while lines:
            if self._fh is None:
                self._active = self._next_shard()
                fd = os.open(self._active, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_DSYNC, 0o644)
                self._fh = open(fd, "ab", buffering=0)
                fsync_dir(self.shard_dir)  # the new shard's name survives a power loss too
                self._active_count = 0
                self._written = RunningDigest() if os.fstat(fd).st_size == 0 else None
            n = min(len(lines), self.shard_size - self._active_count)
            chunk = lines[:n]
            data = b"".join(chunk)
            written, self._written = self._written, None  # unknown until this write has returned
            write_durably(self._fh, data)
            if written is not None:
                written.add(data, chunk)
                self._written = written
            self._active_count += n
            lines = lines[n:]
            if self._active_count >= self.shard_size:
                self.flush()

    def flush(self) -> None:
        """Seal the active shard, if any."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None
            assert self._active is not None
            written, self._written = self._written, None
            self._seal(self._active, written)
            self._active = None


def encode(episode: Episode) -> bytes:
    """One episode as its stored line: exactly ``episode.model_dump_json()`` and a newline.

    Written by orjson in one call (:func:`_fast_line`), at well under half of pydantic's cost
    (12 against 29 us for a tool-API episode, 141 against 327 for an 8-turn LLM one; the bytes are
    the same, tests/rowgym/test_store_encode.py): orjson formats strings,
    ints, floats and UTC datetimes as pydantic does, and the schema's own models are handed to it
    as their fields in declaration order. Anything unusual (a subclass, a value orjson refuses, a
    time zone offset of seconds) takes pydantic's path for the whole line.

    Byte-for-byte holds for models whose fields hold their declared types, as every validated
    model's do. A model built without validation that holds an int where the schema says float
    is written with the int (pydantic would write ``1.0`` for ``1``), which reads back as the
    same float.

    Raises :class:`StoreError` for an episode with a NaN or infinite float (see :func:`non_finite`):
    its line would hold ``null`` there and never read back.
    """
    where = non_finite(episode)
    if where is not None:
        raise StoreError(f"episode {episode.episode_id} cannot be stored: {where} (JSON has no NaN or infinity; "
                         "it would be written as null and not read back)")
    line = _fast_line(episode)
    return line if line is not None else episode.model_dump_json().encode() + b"\n"


# The schema's own models: orjson writes each as its fields (``__dict__``, kept in declaration order by
# validation, ``model_construct``, ``model_copy`` and :func:`rowgym.rows.unvalidated`), as pydantic does.
# A subclass may serialise differently (a computed field, an override): it is not in the set.
_OWN_MODELS = frozenset({Episode, StepRow, Action, ToolCall, Timings, TokenRecord, PolicyVersion, PolicyInfo, Verdict,
                         Check, Failure})
_LINE = orjson.OPT_UTC_Z | orjson.OPT_APPEND_NEWLINE  # "Z" for UTC, as pydantic writes it


def _fields(model: Any) -> dict[str, Any]:
    """orjson's hook for the types it does not know: the schema's own models, as their fields."""
    if type(model) in _OWN_MODELS:
        return model.__dict__
    raise TypeError(f"{type(model).__name__} is not one of the row schema's models")


def _fast_line(episode: Episode, steps_json: bytes | None = None) -> bytes | None:
    """``episode``'s line by orjson (None: take pydantic's path); ``steps_json``: its rows' JSON, written already."""
    if type(episode) is not Episode or not _plain_time(episode.started_at):
        return None
    fields = episode.__dict__
    try:
        fields = {**fields, "tools": _tools_json(fields["tools"])}
        if steps_json is not None:
            fields["steps"] = orjson.Fragment(steps_json)
        return orjson.dumps(fields, default=_fields, option=_LINE)
    except orjson.JSONEncodeError:  # a subclass, an int beyond 64 bits, a lone surrogate: pydantic decides
        return None


_last_tools: tuple[Any, orjson.Fragment] = (None, orjson.Fragment(b"null"))


def _tools_json(tools: Any) -> orjson.Fragment:
    """The JSON of an episode's tool schemas, written once for all the episodes of an env that hold the
    same string (a tool-API env's are 40% of its line): the last one is kept, with the string itself
    (so no other object can take its id)."""
    global _last_tools
    last = _last_tools  # one read: a writer thread may replace it meanwhile
    if last[0] is tools:
        return last[1]
    if type(tools) is not str:
        raise orjson.JSONEncodeError("tools is not a str")
    out = orjson.Fragment(orjson.dumps(tools))
    _last_tools = (tools, out)
    return out


def _plain_time(when: Any) -> bool:
    """Whether orjson writes ``when`` as pydantic does: every datetime but one whose UTC offset has
    seconds (orjson rounds those to a minute, pydantic cuts them)."""
    if type(when) is not datetime:
        return False
    tz = when.tzinfo
    if tz is UTC or tz is None:
        return True
    offset = when.utcoffset()
    return offset is None or (offset.seconds % 60 == 0 and not offset.microseconds)


class EpisodeLine:
    """An episode's stored line, built as its rows are recorded: ``add`` takes each row, and
    ``of(episode)`` writes the episode's own fields around them: exactly what :func:`encode` returns,
    or None when that must decide (a row not added here, a value orjson refuses, a row with a NaN).

    A row with a token record (a policy's turn) is written when it is added: the loop waits on
    the policy server between turns, so the work is spread over the episode instead of piling up
    when it ends (at 256 in flight, all of a collection's episodes end in its last turn), and its
    growing prompt is written from the last row's (:class:`_Lists`). A row without one (a scripted
    agent's, whose loop never waits) is written with the episode, in the same orjson call: one pass
    over the episode costs ~2.5% of a tool-API step less than a pass a row between env steps, which
    find the writer's code and data cold (docs/bench.md).

    A row is taken as it is when it is added, so it must not change afterwards: rows made by
    :func:`rowgym.rollouts.episode.step_row` own everything they hold (copies of what the agent and
    the env handed over, or the agent's immutable action itself), and ``of`` takes only the very row
    objects that were added, in order.
    """

    def __init__(self) -> None:
        self.rows: list[StepRow] = []
        self.parts: list[bytes | None] = []
        """Each row's JSON, or None where it is written with the episode."""
        self.deferred = 0
        self.to_check: list[int] = []
        """Rows written with the episode that may hold a NaN (not added with ``finite=True``): looked at then."""
        self.prompts, self.masks = _Lists(), _Lists()
        self.broken = False
        self.text: bytes | None = None
        """The finished line, where the caller keeps it (``play_episode`` does)."""

    def add(self, row: StepRow, *, finite: bool = False) -> bool:
        """Take ``row`` (False, and nothing more is written: the episode takes pydantic's path).

        ``finite``: the caller has checked that every float of the row is finite (its reward and
        breakdown, timings and logprobs, as :func:`rowgym.rollouts.episode.step_row` and the episode
        loop do), so it is not looked at again; left False, the row is looked at for a NaN or an
        infinity before anything of it is written.
        """
        if self.broken:
            return False
        try:
            if type(row) is not StepRow:
                raise TypeError("a row encode() must look at")
            tokens = row.tokens
            if tokens is None:  # written (and looked at for NaNs, unless known finite) with the episode
                self.parts.append(None)
                self.deferred += 1
                if not finite:
                    self.to_check.append(len(self.rows))
            else:  # the token record's growing id lists: only each row's new ids are written
                if not finite and _row_non_finite(row, len(self.rows)) is not None:
                    raise ValueError("a NaN: encode() says where")
                self.parts.append(orjson.dumps({**row.__dict__, "tokens": self._record(tokens)}, default=_fields))
        except Exception:  # orjson refused a value, or a NaN: encode() decides (and may raise)
            self.broken = True
            return False
        self.rows.append(row)
        return True

    def of(self, episode: Episode) -> bytes | None:
        """``encode(episode)`` if ``episode`` holds exactly the rows added, else None."""
        rows = episode.steps
        if self.broken or type(rows) is not list or len(rows) != len(self.rows) \
                or any(a is not b for a, b in zip(rows, self.rows, strict=True)) \
                or non_finite(episode, rows=False) is not None \
                or any(_row_non_finite(rows[i], i) is not None for i in self.to_check):
            return None
        if self.deferred == len(rows):  # no row written yet: the whole line in one call
            return _fast_line(episode)
        parts = self.parts
        if self.deferred:
            try:
                parts = [p if p is not None else orjson.dumps(r, default=_fields) for p, r in zip(parts, rows, strict=True)]
            except orjson.JSONEncodeError:
                return None
        return _fast_line(episode, b"[" + b",".join(parts) + b"]")

    def _record(self, tokens: TokenRecord) -> orjson.Fragment:
        """A row's token record, its prompt and mask written from the last row's (see :class:`_Lists`)."""
        if type(tokens) is not TokenRecord:
            raise TypeError("a TokenRecord subclass")
        d = tokens.__dict__
        return orjson.Fragment(orjson.dumps({**d, "prompt_ids": orjson.Fragment(self.prompts.json(d["prompt_ids"])),
                                             "mask": orjson.Fragment(self.masks.json(d["mask"]))}, default=_fields))


class _Lists:
    """JSON of a growing id list, row after row: a row's prompt (and mask) starts with the previous
    row's (each row holds its turn's whole prompt, most of an LLM episode's bytes), so only the new
    ids are written and appended to the previous row's JSON (checked, not assumed: a list that does
    not extend the last one is written whole)."""

    def __init__(self) -> None:
        self.last: list[int] = []
        self.last_json = b"[]"

    def json(self, ids: list[int]) -> bytes:
        if type(ids) is not list:
            raise TypeError("an id sequence that is not a list")
        n = len(self.last)
        if n and len(ids) >= n and ids[:n] == self.last:
            rest = ids[n:]
            out = self.last_json if not rest else self.last_json[:-1] + b"," + orjson.dumps(rest)[1:]
        else:
            out = orjson.dumps(ids)
        self.last, self.last_json = ids, out
        return out


def write_durably(fh: Any, data: bytes) -> None:
    """Write all of ``data`` to an ``O_DSYNC`` file: on disk when this returns."""
    view = memoryview(data)
    while view:
        view = view[fh.write(view):]


# ------------------------------------------------------------ non-finite floats
_isfinite = math.isfinite


def all_finite(values: Iterable[float]) -> bool:
    """Whether every value of a list (or dict view) is a finite number: False for NaN, an infinity, None.

    A sum is finite when every term is (NaN and the infinities carry through it, and
    ``inf + -inf`` is NaN), and summing 256 logprobs costs about a quarter of testing each
    (1.6 µs against 7.6; 0.4 against 0.8 for 17); only a sum that overflowed, or that failed on
    a value that is not a number, is looked at value by value.

    >>> all_finite([-0.5, -1e-9]), all_finite([-0.5, float("nan")]), all_finite([1e308, 1e308]), all_finite([None])
    (True, False, True, False)
    """
    try:
        return _isfinite(sum(values)) or all(map(_isfinite, values))
    except (TypeError, OverflowError):
        return False


def first_non_finite(values: Iterable[Any]) -> Any:
    """The first value that is not a finite number, for messages (None if there is none, or if it is None).

    >>> first_non_finite([-0.5, float("-inf"), float("nan")])
    -inf
    """
    for v in values:
        try:
            if not _isfinite(v):
                return v
        except (TypeError, OverflowError):
            return v
    return None


def non_finite(episode: Episode, *, rows: bool = True) -> str | None:
    """Where ``episode`` holds a float that JSON cannot (NaN or an infinity), or None if it holds none.

    Every float field of an episode is looked at (the assertion below keeps this list whole), except
    the policy's ``sampling`` values, which may be null and so read back (as None). ``rows=False``
    skips the rows. Per row this is one sum of its floats, about 1 µs for a 17-token turn.
    """
    if rows:
        for i, row in enumerate(episode.steps):
            where = _row_non_finite(row, i)
            if where is not None:
                return where
    verdict = episode.verdict
    try:  # the common case: one finite sum
        if _isfinite(episode.duration_s + (0.0 if verdict is None else verdict.reward + sum(verdict.breakdown.values()))):
            return None
    except (TypeError, OverflowError):
        pass
    checks = [("duration_s", [episode.duration_s])]
    if verdict is not None:
        checks += [("verdict.reward", [verdict.reward]), ("verdict.breakdown", verdict.breakdown.values())]
    return _first_bad_field(checks)


def _row_non_finite(row: StepRow, i: int) -> str | None:
    t, tokens = row.timings, row.tokens
    try:  # the common case: one finite sum
        if _isfinite(row.reward + t.policy_s + t.env_s + sum(row.reward_breakdown.values())
                     + (sum(tokens.logprobs) if tokens is not None else 0.0)):
            return None
    except (TypeError, OverflowError):
        pass
    logprobs = tokens.logprobs if tokens is not None else []
    return _first_bad_field([("reward", [row.reward]), ("reward_breakdown", row.reward_breakdown.values()),
                             ("timings", [t.policy_s, t.env_s]), ("tokens.logprobs", logprobs)], f"steps[{i}].")


def _first_bad_field(checks: list[tuple[str, Iterable[Any]]], prefix: str = "") -> str | None:
    for name, values in checks:
        if not all_finite(values):
            return f"a non-finite value ({first_non_finite(values)}) in {prefix}{name}"
    return None


def _float_fields() -> set[str]:
    """Every field of an episode's models whose type holds a float."""
    models = (Episode, PolicyInfo, StepRow, Action, ToolCall, Timings, TokenRecord, PolicyVersion, Verdict, Check,
              Failure)
    return {f"{m.__name__}.{f}" for m in models for f, info in m.model_fields.items() if "float" in str(info.annotation)}


assert _float_fields() == {"Episode.duration_s", "StepRow.reward", "StepRow.reward_breakdown", "Timings.policy_s",
                           "Timings.env_s", "TokenRecord.logprobs", "Verdict.reward", "Verdict.breakdown",
                           "PolicyInfo.sampling"}, "non_finite must look at every float field of an episode"
