"""The Docker sandbox's exec channel to PID 1: same results as `docker exec`, and out of the box's reach.

The red-team tests play a command that tries to read, write or stop PID 1 (which runs every
command and speaks for them to the host), to forge a reply, or to steal the next request.
"""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import pytest
from pydantic import ValidationError
from sandbox_helpers import TEST_CONFIG, make_sandbox

from rowgym.sandboxes import SandboxError
from rowgym.sandboxes.base import OutputBuffer
from rowgym.sandboxes.exec_channel import _Reply, output

docker = [pytest.mark.docker, pytest.mark.sandbox]


def test_output_rebuilds_the_buffer_the_agent_kept() -> None:
    ref = OutputBuffer(10)
    ref.feed(b"abcdefghijklmnopqrst")
    got = output((base64.b64encode(bytes(ref.head)).decode(), base64.b64encode(bytes(ref.tail)).decode(), 20), 10)
    assert got.text() == ref.text() and got.truncated
    # a reply with more than the limit is cut again on the host side
    big = output((base64.b64encode(b"x" * 100).decode(), base64.b64encode(b"y" * 100).decode(), 200), 10)
    assert len(big.head) == 5 and len(big.tail) == 5 and big.truncated


def test_a_reply_with_unknown_fields_is_refused() -> None:
    ok = {"id": 1, "code": 0, "timed_out": False, "duration": 0.1, "out": ["", "", 0], "err": ["", "", 0]}
    assert _Reply.model_validate_json(json.dumps(ok)).code == 0
    with pytest.raises(ValidationError):
        _Reply.model_validate_json(json.dumps({**ok, "extra": 1}))


@pytest.mark.parametrize("cmd", [
    "echo out; echo err >&2; exit 3",
    ["python3", "-c", "import sys; sys.stdout.write('x' * 20000); sys.exit(0)"],
    ["does-not-exist"],
    "pwd; echo $FOO; id -u; cat",  # stdin is empty
    "kill -9 $$",
])
@pytest.mark.parametrize("_", [pytest.param(None, marks=docker, id="docker")])
async def test_channel_gives_what_docker_exec_gives(cmd, _, tmp_path: Path) -> None:
    async with make_sandbox("docker", tmp_path / "ws") as sb:
        got = {}
        for channel in (True, False):
            sb.exec_channel = channel
            r = await sb.exec(cmd, timeout=10, cwd="/tmp", env={"FOO": "bar"})
            got[channel] = (r.stdout, r.exit_code != 0, r.exit_code in (126, 127), r.timed_out, r.truncated)
        assert got[True] == got[False]


@pytest.mark.redteam
@pytest.mark.parametrize("_", [pytest.param(None, marks=docker, id="docker")])
async def test_the_box_cannot_reach_or_stop_pid_1(_, tmp_path: Path) -> None:
    async with make_sandbox("docker", tmp_path / "ws") as sb:
        probe = """
import os, signal
for path in ("/proc/1/fd/0", "/proc/1/fd/1", "/proc/1/mem", "/proc/1/environ"):
    for mode in (os.O_RDONLY, os.O_WRONLY):
        try:
            os.close(os.open(path, mode))
            print("OPENED", path, mode)
        except OSError as e:
            print("denied", path, e.errno)
try:
    os.listdir("/proc/1/fd")
    print("OPENED fd dir")
except OSError:
    print("denied fd dir")
for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD):
    try:
        os.kill(1, sig)
    except OSError:
        pass
print("fds", sorted(int(f) for f in os.listdir("/proc/self/fd")))
"""
        res = await sb.exec(["python3", "-c", probe], timeout=10)
        assert "OPENED" not in res.stdout and res.stdout.count("denied") == 9, res
        assert "fds [0, 1, 2, 3]" in res.stdout, res  # 3: listdir's own; nothing of PID 1 inherited
        after = await sb.exec("echo alive; ptrace_me=$(cat /proc/1/status | grep TracerPid); echo $ptrace_me",
                              timeout=10)
        assert after.stdout == "alive\nTracerPid: 0\n", after


@pytest.mark.redteam
@pytest.mark.parametrize("_", [pytest.param(None, marks=docker, id="docker")])
async def test_a_forged_reply_or_a_stolen_request_changes_nothing(_, tmp_path: Path) -> None:
    async with make_sandbox("docker", tmp_path / "ws") as sb:
        forged = {"id": 0, "code": 0, "timed_out": False, "duration": 0.0,
                  "out": [base64.b64encode(b"FORGED").decode(), "", 6], "err": ["", "", 0]}
        lines = "\n".join(json.dumps({**forged, "id": n}) for n in range(1, 50))
        await sb.write_file("forged.jsonl", lines + "\n")
        res = await sb.exec("cat forged.jsonl; cat forged.jsonl >&2; cat /dev/stdin; exit 5", timeout=10)
        assert res.exit_code == 5 and res.stdout == lines + "\n" and res.stderr == lines + "\n"
        nxt = await sb.exec("echo real", timeout=10)
        assert nxt.stdout == "real\n" and nxt.exit_code == 0


@pytest.mark.parametrize("_", [pytest.param(None, marks=docker, id="docker")])
async def test_a_dead_container_fails_the_command_instead_of_hanging(_, tmp_path: Path) -> None:
    sb = make_sandbox("docker", tmp_path / "ws", TEST_CONFIG)
    async with sb:
        subprocess.run(["docker", "kill", sb.container.id], check=True, capture_output=True)
        with pytest.raises(SandboxError, match="exec channel"):
            await sb.exec("echo hi", timeout=5)
