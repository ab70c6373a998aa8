"""The GRPO loop reads each batch back from the run store; it never trains on part of one."""

from __future__ import annotations

import pytest

from rowgym.errors import RowgymError
from rowgym.rows import Episode, PolicyInfo
from rowgym.store import TrajectoryStore
from rowgym.trainers.rl.loop import _read_batch


def _ep(seed: int, k: int) -> Episode:
    return Episode(run_id="r", episode_id=f"r:{seed}:{k}", group_id=f"r:{seed}", sample_index=k, env_id="rowgym/X-v0",
                   env_version="0", seed=seed, split="train", task_hash="h", policy=PolicyInfo(agent="a"))


def test_a_batch_comes_back_whole_in_seed_order_or_not_at_all(tmp_path):
    with TrajectoryStore(tmp_path) as s:
        for ep in (_ep(5, 1), _ep(4, 0), _ep(5, 0), _ep(4, 1), _ep(9, 0)):
            s.append(ep)
    ids = {"r:4:0", "r:4:1", "r:5:0", "r:5:1"}
    assert [e.episode_id for e in _read_batch(tmp_path, [4, 5], ids)] == ["r:4:0", "r:4:1", "r:5:0", "r:5:1"]
    # an id the trainer was told is stored but the store does not give back: an error, not a smaller batch
    with pytest.raises(RowgymError, match=r"did not give back 1 episode\(s\).*r:5:2"):
        _read_batch(tmp_path, [4, 5], ids | {"r:5:2"})
