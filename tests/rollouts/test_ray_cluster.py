"""The Ray backend on a 2-node local cluster: actors placed by a custom resource, a node removed
mid-collection, every episode stored exactly once."""

from __future__ import annotations

import collections
import os
import sys
import threading
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")
cluster_utils = pytest.importorskip("ray.cluster_utils")

from rowgym.rollouts import ray_backend  # noqa: E402
from rowgym.rollouts.engine import CollectConfig, collect  # noqa: E402
from rowgym.store import TrajectoryStore  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import ray_cluster_env  # noqa: E402


def _stored_lines(out: Path) -> int:
    return sum(len(p.read_text().splitlines()) for p in out.glob("shards/*.jsonl*")) if out.exists() else 0


@pytest.mark.slow
def test_a_node_removed_mid_collection_loses_and_duplicates_nothing(tmp_path, monkeypatch):
    # worker processes inherit the environment of the node processes: let them import the helper module
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))
    cluster = cluster_utils.Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "resources": {"sandbox": 1}, "include_dashboard": False,
        "_system_config": {"health_check_initial_delay_ms": 0, "health_check_period_ms": 500,
                           "health_check_failure_threshold": 4}})
    worker = cluster.add_node(num_cpus=1, resources={"sandbox": 1})
    out = tmp_path / "run"
    removed_at: list[int] = []
    try:
        ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
        cluster.wait_for_nodes()
        head_id = ray.get_runtime_context().get_node_id()
        episodes = 12

        def remove_worker_when_a_quarter_is_stored():
            deadline = time.monotonic() + 300
            while _stored_lines(out) < episodes // 4 and time.monotonic() < deadline:
                time.sleep(0.02)
            removed_at.append(_stored_lines(out))
            cluster.remove_node(worker, allow_graceful=False)

        killer = threading.Thread(target=remove_worker_when_a_quarter_is_stored, daemon=True)
        killer.start()
        s = collect(CollectConfig(env_id=ray_cluster_env.SLOW_ID, agent="ray_cluster_env:Ticker", episodes=episodes,
                                  concurrency=4, out=out, progress=False, backend="ray",
                                  setup_modules=["ray_cluster_env"]))
        killer.join(30)
        run = ray_backend.LAST_RUN
    finally:
        ray.shutdown()
        cluster.shutdown()
    # one actor per node: the custom resource, not the CPU count, placed them
    assert run.resources == {"sandbox": 1.0} and len(run.nodes) == 2 and len(set(run.nodes)) == 2
    assert head_id in run.nodes
    assert removed_at and removed_at[0] < episodes, "the node was removed before the collection ended"
    assert run.lost_actors == 1 and run.replayed >= 1
    assert (s.n_done, s.n_success, s.n_failed) == (episodes, episodes, 0)
    # exactly once on disk: every shard line is a distinct episode id (not just what readers dedupe)
    ids = [line.split('"episode_id":"', 1)[1].split('"', 1)[0]
           for p in sorted(out.glob("shards/*.jsonl*")) for line in p.read_text().splitlines()]
    assert len(ids) == episodes and not [i for i, c in collections.Counter(ids).items() if c > 1]
    assert {e.seed for e in TrajectoryStore(out).episodes()} == set(TrajectoryStore(out).manifest.source.seeds)
