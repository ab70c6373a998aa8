"""A user's mistake on the command line is a short error, never a traceback, and writes nothing."""

from __future__ import annotations

import subprocess

import pytest
from typer.testing import CliRunner

from rowgym.cli import app

ENV = "rowgym/ToolAPI-Airline-v0"


def _invoke(*args: str):
    res = CliRunner().invoke(app, list(args))
    assert "Traceback" not in res.output, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    return res


def _error_lines(output: str) -> list[str]:
    """The lines that carry the message (typer's usage box borders and hints left out)."""
    return [ln.strip("│ ") for ln in output.splitlines()
            if ln.strip("│╭╰─ ") and not ln.startswith(("Usage:", "Try ")) and "─ Error ─" not in ln]


@pytest.mark.parametrize("args, msg", [
    (["--episodes", "0"], "--episodes"),
    (["--episodes", "-5"], "--episodes"),
    (["--group-size", "0"], "--group-size"),
    (["--concurrency", "0"], "--concurrency"),
    (["--seed-offset", "-1"], "--seed-offset"),
    (["--noise", "1.5"], "--noise"),
    (["--turn-timeout", "0"], "--turn-timeout"),
    (["--episode-timeout", "-1"], "--episode-timeout"),
    (["--split", "test"], "unknown split 'test'"),
    (["--backend", "threads"], "unknown backend 'threads'"),
    (["--agent", "os:system"], "'os:system' is not an agent class"),
    (["--agent", "nosuchmodule:Agent"], "cannot load agent"),
    (["--agent", "nosuch"], "unknown agent 'nosuch'"),
    (["--agent", "random", "--noise", "0.5"], "--noise is an option of the expert agent"),
])
def test_bad_collect_arguments_are_one_line_and_write_nothing(tmp_path, args, msg):
    out = tmp_path / "run"
    res = _invoke("collect", ENV, "--no-progress", "--out", str(out), *args)
    assert res.exit_code == 2
    lines = _error_lines(res.output)
    assert len(lines) <= 2 and msg in " ".join(lines), res.output  # a long one may wrap once in the box
    assert not out.exists()


def test_an_unknown_env_is_one_line(tmp_path):
    res = _invoke("collect", "rowgym/NoSuch-v0", "--out", str(tmp_path / "run"), "--no-progress")
    assert res.exit_code == 2 and res.output.startswith("error: ") and not (tmp_path / "run").exists()


def test_out_naming_a_regular_file_or_an_unwritable_place(tmp_path):
    f = tmp_path / "afile"
    f.write_text("keep me")
    res = _invoke("collect", ENV, "--out", str(f), "--no-progress", "--episodes", "1")
    assert res.exit_code == 2 and "exists and is not a directory" in res.output and f.read_text() == "keep me"
    res = _invoke("collect", ENV, "--out", str(f / "run"), "--no-progress", "--episodes", "1")
    assert res.exit_code == 2 and "cannot write the run directory" in res.output
    res = _invoke("collect", ENV, "--out", "/proc/rowgym-test/run", "--no-progress", "--episodes", "1")
    assert res.exit_code == 2 and "cannot write the run directory" in res.output
    assert not (tmp_path / "shards").exists()


def test_a_real_process_prints_no_traceback(tmp_path, rowgym_cli):
    f = tmp_path / "afile"
    f.write_text("")
    for extra in (["--out", str(f)], ["--out", str(tmp_path / "r"), "--agent", "os:system"],
                  ["--out", str(tmp_path / "r"), "--episodes", "0"]):
        p = subprocess.run([*rowgym_cli, "collect", ENV, "--no-progress", *extra], capture_output=True, text=True)
        assert p.returncode == 2 and "Traceback" not in p.stdout + p.stderr, p.stderr
    assert not (tmp_path / "r").exists()


def test_other_commands_refuse_bad_arguments(tmp_path):
    f = tmp_path / "afile"
    f.write_text("")
    res = _invoke("verify", str(tmp_path / "nothing"))
    assert res.exit_code == 2 and "not a rowgym run directory" in res.output
    res = _invoke("show", str(f))
    assert res.exit_code == 2 and "not a directory" in res.output
    res = _invoke("export", str(tmp_path), "--format", "csv")
    assert res.exit_code == 2 and "unknown format 'csv'" in res.output
    res = _invoke("export", str(tmp_path), "--level", "tokens")
    assert res.exit_code == 2 and "unknown level 'tokens'" in res.output
    res = _invoke("dataset", "grpo", ENV, "--out", str(f))
    assert res.exit_code == 2 and "not a directory" in res.output
    res = _invoke("dataset", "grpo", ENV, "--out", str(tmp_path / "g"), "--n", "0")
    assert res.exit_code == 2 and not (tmp_path / "g").exists()
    res = _invoke("bench", "--env", ENV, "--agent", "expert", "--episodes", "0", "--out", str(tmp_path / "b"))
    assert res.exit_code == 2 and not (tmp_path / "b").exists()
    res = _invoke("check", ENV, "--seeds", "0")
    assert res.exit_code == 2
