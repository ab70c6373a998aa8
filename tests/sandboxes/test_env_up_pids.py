"""env-up's stale pid-file check: a pid file left by a killed daemon must not stop Docker starting.

The failure it guards against: dockerd finds `containerd.pid` from a killed run, the pid has
been reused by an unrelated process, and dockerd waits for that "containerd" until it times out.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _clear(pid_file: Path, name: str) -> str:
    script = (
        'log() { echo "$*"; }; as_root() { "$@"; }; '
        f'source scripts/daemon_pids.sh; clear_stale_pid "{pid_file}" "{name}"'
    )
    proc = subprocess.run(["bash", "-c", script], cwd=REPO, capture_output=True, text=True, timeout=10)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.fixture
def live_sleep():
    proc = subprocess.Popen(["sleep", "60"])
    yield proc.pid
    proc.kill()
    proc.wait()


def test_reused_pid_of_another_process_is_removed(tmp_path: Path, live_sleep: int) -> None:
    pid_file = tmp_path / "containerd.pid"
    pid_file.write_text(str(live_sleep))  # alive, but it is `sleep`, not containerd
    out = _clear(pid_file, "containerd")
    assert not pid_file.exists()
    assert f"pid {live_sleep} is not containerd" in out


def test_pid_of_the_named_live_process_is_kept(tmp_path: Path, live_sleep: int) -> None:
    pid_file = tmp_path / "sleep.pid"
    pid_file.write_text(str(live_sleep))
    assert _clear(pid_file, "sleep") == ""
    assert pid_file.read_text() == str(live_sleep)


@pytest.mark.parametrize("content", ["999999999", "", "not-a-pid"])
def test_dead_or_garbage_pid_is_removed(tmp_path: Path, content: str) -> None:
    pid_file = tmp_path / "dockerd.pid"
    pid_file.write_text(content)
    _clear(pid_file, "dockerd")
    assert not pid_file.exists()


def test_missing_file_is_fine(tmp_path: Path) -> None:
    assert _clear(tmp_path / "absent.pid", "dockerd") == ""


def test_daemon_pid_names_only_a_live_process_of_that_name(tmp_path: Path, live_sleep: int) -> None:
    """env-down stops dockerd only through this check: a reused pid must never be killed."""
    pid_file = tmp_path / "dockerd.pid"
    pid_file.write_text(str(live_sleep))

    def daemon_pid(name: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", "-c", f'source scripts/daemon_pids.sh; daemon_pid "{pid_file}" "{name}"'],
                              cwd=REPO, capture_output=True, text=True, timeout=10)

    named = daemon_pid("sleep")
    assert named.returncode == 0 and named.stdout.strip() == str(live_sleep)
    other = daemon_pid("dockerd")
    assert other.returncode != 0 and other.stdout == ""
