"""Ray actor resources: explicit ones must exist in the cluster (else a clear error, not an actor that waits forever)."""

import pytest

from rowgym.errors import RowgymError
from rowgym.rollouts.engine import CollectConfig
from rowgym.rollouts.ray_backend import actor_resources


def test_explicit_resources_the_cluster_lacks_are_refused_with_what_it_has():
    cfg = CollectConfig(env_id="rowgym/ToolAPI-Retail-v0", backend="ray", ray_resources={"browser": 1.0})
    assert actor_resources(cfg, {"CPU": 4.0, "browser": 2.0}) == {"browser": 1.0}
    with pytest.raises(RowgymError, match=r"offers \{'browser': 1.0\}.*the cluster has: CPU=4"):
        actor_resources(cfg, {"CPU": 4.0, "memory": 1e9})


def test_env_tags_ask_only_for_resources_the_cluster_has():
    cfg = CollectConfig(env_id="rowgym/Shop-v0", backend="ray")
    assert actor_resources(cfg, {"CPU": 2.0}) == {}
    assert actor_resources(cfg, {"CPU": 2.0, "browser": 1.0}) == {"browser": 1.0}
