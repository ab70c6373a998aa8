"""Reading a run: episodes in write order (a retried episode's latest record), rows, exports.

Readers skip a line that does not parse (strictly: see :func:`~rowgym.store.integrity.parse_episode`)
and record it in ``quarantined`` (or raise :class:`~rowgym.store.IntegrityError`, once the store's
caller required verification); a partial shard that a live writer is still appending to is read up
to its last complete line.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Container, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rowgym import aio
from rowgym.errors import StoreError
from rowgym.rows import Episode, StepRow
from rowgym.store.files import PARTIAL
from rowgym.store.integrity import first_error, parse_episode

_ID = re.compile(rb'"episode_id":"((?:[^"\\]|\\.)*)"')


def episode_id(line: bytes) -> str:
    """The episode id of one stored line, without parsing the whole episode (ValueError if none).

    >>> episode_id(b'{"run_id":"r","episode_id":"r:4:0","steps":[]}')
    'r:4:0'
    """
    m = _ID.search(line, 0, 4096)
    if m is None or b"\\" in m.group(1):  # not near the start, or escaped: parse it properly
        obj = aio.loads(line)
        if not isinstance(obj, dict) or not isinstance(obj.get("episode_id"), str):
            raise ValueError("no episode_id")
        return obj["episode_id"]
    return m.group(1).decode()


class Reader:
    """The reading half of :class:`~rowgym.store.TrajectoryStore`."""

    if TYPE_CHECKING:  # provided by the other halves of TrajectoryStore
        def _shard_paths(self, sealed_only: bool = False) -> list[Path]:
            ...

        def _quarantine(self, shard: str, i: int, why: str) -> None:
            ...

    def _lines(self, *, complete_only: bool = True,
               shards: Callable[[str], bool] | None = None) -> Iterator[tuple[str, int, bytes]]:
        for p in self._shard_paths():
            if shards is not None and not shards(p.name):
                continue
            try:
                f = open(p, "rb")
            except FileNotFoundError:  # the writer sealed it since we listed the folder
                if not p.name.endswith(PARTIAL):
                    continue
                p = p.with_name(p.name[: -len(PARTIAL)])
                try:
                    f = open(p, "rb")
                except FileNotFoundError:
                    continue
            with f:
                for i, line in enumerate(f):
                    if line.endswith(b"\n") or not complete_only:
                        yield p.name, i, line

    def _records(self) -> Iterator[tuple[str, int, bytes, str]]:
        """(shard, line index, line, episode id) of every complete line with an episode id.

        A shard is named as it is once sealed, even while it is still partial: a live writer may seal
        it between two passes over the run (:meth:`episodes` makes two), and a line must be the same
        (shard, index) in both, or the second pass would find no line the first one chose.
        """
        for shard, i, line in self._lines():
            shard = shard.removesuffix(PARTIAL)
            try:
                yield shard, i, line, episode_id(line)
            except (ValueError, UnicodeDecodeError, KeyError) as e:
                self._quarantine(shard, i, f"{type(e).__name__}: {e}"[:200])

    def episodes(self, only: Container[str] | None = None) -> Iterator[Episode]:
        """Every stored episode, in write order, each id once: its latest record.

        ``only``: ids to return (the others' lines are skipped unparsed, so a trainer that
        reads one batch of a long run pays for that batch, not for the whole run).

        An id has more than one record only when a failed episode was played again
        (``collect --retry-failed``); the retry's record replaces the failed one. A line
        that does not parse is skipped and recorded in :attr:`quarantined`.
        """
        last = self._last_records()
        for shard, i, line, eid in self._records():
            if last.get(eid) == (shard, i) and (only is None or eid in only):
                try:
                    ep = parse_episode(line)
                except ValueError as e:
                    self._quarantine(shard, i, first_error(e))
                    continue
                yield ep

    def rows(self) -> Iterator[StepRow]:
        for ep in self.episodes():
            yield from ep.steps

    def _last_records(self) -> dict[str, tuple[str, int]]:
        return {eid: (shard, i) for shard, i, _, eid in self._records()}

    def completed_ids(self, *, failed: bool = True) -> set[str]:
        """Ids of stored episodes; with ``failed=False`` only those whose latest record did not fail."""
        latest: dict[str, bool] = {}
        for shard, i, line, eid in self._records():
            if failed:
                latest[eid] = True
                continue
            try:
                latest[eid] = aio.loads(line).get("failure") is None
            except ValueError as e:
                self._quarantine(shard, i, str(e)[:200])
        return {k for k, ok in latest.items() if ok}

    # ----------------------------------------------------------------- export
    def to_arrow(self, level: str = "steps") -> Any:
        """A pyarrow Table with one row per step (``level="steps"``) or per episode."""
        import pyarrow as pa

        records = [r for ep in self.episodes() for r in flatten(ep, level)]
        return pa.Table.from_pylist(records)

    def export_parquet(self, path: str | Path, level: str = "steps") -> Path:
        import pyarrow.parquet as pq

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(self.to_arrow(level), path)
        return path

    def to_dataset(self, level: str = "steps") -> Any:
        """The run as a Hugging Face ``datasets.Dataset`` (needs the ``datasets`` extra)."""
        try:
            import datasets
        except ImportError as e:
            raise StoreError("exporting to a Dataset needs `pip install rowgym[datasets]`") from e
        return datasets.Dataset(self.to_arrow(level))


def flatten(ep: Episode, level: str = "steps") -> list[dict[str, Any]]:
    """Arrow-friendly records: dicts whose keys vary from row to row become JSON strings."""
    episode_cols = {"final_reward": ep.final_reward, "success": ep.success,
                    "failure": ep.failure.model_dump_json() if ep.failure else None}
    if level == "episodes":
        d = ep.model_dump(mode="json", exclude={"steps", "verdict", "failure", "reward_versions", "policy"})
        return [{**d, **episode_cols, "n_turns": len(ep.steps), "local_return": ep.local_return,
                 "n_bad_calls": ep.n_bad_calls, "policy": ep.policy.model_dump_json(),
                 "verdict": ep.verdict.model_dump_json() if ep.verdict else None,
                 "reward_versions": json.dumps(ep.reward_versions)}]
    if level != "steps":
        raise StoreError(f"unknown export level {level!r}; use 'steps' or 'episodes'")
    out = []
    for s in ep.steps:
        d = s.model_dump(mode="json")
        d["reward_breakdown"] = json.dumps(d["reward_breakdown"], sort_keys=True)
        out.append({**d, **episode_cols})
    return out
