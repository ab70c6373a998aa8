"""The one process launcher: readiness, log tail on death, group kill, detached pidfiles that never
signal a recycled pid."""

import os
import sys
import time

import pytest

from rowgym.launcher import LaunchError, ManagedProcess, read_recorded, runs_command, stop_recorded

SERVER = "import sys, time; open(sys.argv[1], 'w').write('up'); time.sleep(600)"


def test_ready_then_stop_kills_the_whole_group(tmp_path):
    flag = tmp_path / "ready"
    child_pid = tmp_path / "child"
    code = ("import os, subprocess, sys, time; p = subprocess.Popen([sys.executable, '-c', 'import time; "
            "time.sleep(600)']); open(sys.argv[2], 'w').write(str(p.pid)); open(sys.argv[1], 'w').write('up'); "
            "time.sleep(600)")
    proc = ManagedProcess("forker", [sys.executable, "-c", code, str(flag), str(child_pid)], ready=flag.exists)
    with proc.start(timeout=30):
        assert proc.alive()
        grandchild = int(child_pid.read_text())
        assert os.path.exists(f"/proc/{grandchild}")
    assert not proc.alive()
    deadline = time.monotonic() + 10
    while os.path.exists(f"/proc/{grandchild}") and time.monotonic() < deadline:
        time.sleep(0.05)
    status = open(f"/proc/{grandchild}/status").read() if os.path.exists(f"/proc/{grandchild}") else "gone"
    assert status == "gone" or "zombie" in status  # the forked worker died with its leader


def test_death_during_startup_raises_with_the_log_tail(tmp_path):
    proc = ManagedProcess("crasher", [sys.executable, "-c", "print('port 8000 already in use'); raise SystemExit(3)"],
                          ready=lambda: False, log_path=tmp_path / "log")
    with pytest.raises(LaunchError, match=r"(?s)exited with code 3.*port 8000 already in use"):
        proc.start(timeout=30)


def test_not_ready_in_time_is_stopped_and_reported(tmp_path):
    proc = ManagedProcess("sleeper", [sys.executable, "-c", "import time; print('warming up'); time.sleep(600)"],
                          ready=lambda: False, log_path=tmp_path / "log")
    with pytest.raises(LaunchError, match="not ready after"):
        proc.start(timeout=1)
    assert not proc.alive()


def test_detached_pidfile_stops_ours_and_refuses_a_recycled_pid(tmp_path):
    flag = tmp_path / "ready"
    proc = ManagedProcess("server", [sys.executable, "-c", SERVER, str(flag)], ready=flag.exists,
                          marker=str(flag)).start(timeout=30)
    record = proc.detach(tmp_path / "server.json", port=1234)
    assert record["port"] == 1234 and read_recorded(tmp_path / "server.json")["alive"]
    pid = record["pid"]
    assert stop_recorded(tmp_path / "server.json", grace=5)
    assert not runs_command(pid, str(flag)) and not (tmp_path / "server.json").exists()
    # a pidfile naming a live process that is NOT ours (our own pid here) is never signalled
    (tmp_path / "other.json").write_text(f'{{"pid": {os.getpid()}, "marker": "definitely-not-this"}}')
    assert read_recorded(tmp_path / "other.json")["alive"] is False
    assert stop_recorded(tmp_path / "other.json") is False
