"""Pure-Python pieces of the sandbox package (no backend needed)."""

from __future__ import annotations

import dataclasses

import pytest

from rowgym.errors import RowgymError
from rowgym.sandboxes import SandboxError, SandboxPathError, SandboxUnavailable, pick_backend
from rowgym.sandboxes.base import ExecResult, OutputBuffer, as_argv, sandbox_relpath
from rowgym.sandboxes.image import RECIPE, debian_mirror, recipe_hash


def test_output_buffer_keeps_head_and_tail() -> None:
    buf = OutputBuffer(10)
    for chunk in (b"abc", b"defgh", b"ijklmnop", b"qrst"):
        buf.feed(chunk)
    assert buf.total == 20 and buf.truncated
    assert buf.text().startswith("abcde") and buf.text().endswith("pqrst")
    small = OutputBuffer(100)
    small.feed(b"ok")
    assert small.text() == "ok" and not small.truncated


def test_as_argv() -> None:
    assert as_argv("ls -l") == ["/bin/sh", "-c", "ls -l"]
    assert as_argv(["ls", "-l"]) == ["ls", "-l"]
    with pytest.raises(SandboxError):
        as_argv([])


def test_exec_result_forbids_extra_fields() -> None:
    r = ExecResult(stdout="", stderr="", exit_code=0, timed_out=False, duration_s=0.1)
    assert r.ok
    with pytest.raises(ValueError):
        ExecResult(stdout="", stderr="", exit_code=0, timed_out=False, duration_s=0.1, extra=1)


def test_exceptions_share_one_root() -> None:
    assert issubclass(SandboxUnavailable, SandboxError)
    assert issubclass(SandboxPathError, SandboxError)
    assert issubclass(SandboxError, RowgymError)


def test_sandbox_relpath_mapping() -> None:
    assert sandbox_relpath("a/b") == "a/b"
    assert sandbox_relpath("/workspace/a") == "a"
    assert sandbox_relpath("/workspace") == "." and sandbox_relpath("d/../x") == "x"
    for bad in ("/etc/passwd", "../x", "/workspace/../etc", "/workspacex/y", "a\x00b"):
        with pytest.raises(SandboxPathError):
            sandbox_relpath(bad)


def test_recipe_hash_is_stable_and_tracks_changes() -> None:
    assert recipe_hash(RECIPE) == recipe_hash(dataclasses.replace(RECIPE))
    assert recipe_hash(RECIPE) != recipe_hash(dataclasses.replace(RECIPE, include=(*RECIPE.include, "make")))


def test_debian_mirror_env_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROWGYM_DEBIAN_MIRROR", "http://mirror.example/debian")
    assert debian_mirror() == "http://mirror.example/debian"
    monkeypatch.delenv("ROWGYM_DEBIAN_MIRROR")
    assert debian_mirror().startswith("http")


def test_pick_backend_rejects_unknown_names() -> None:
    with pytest.raises(SandboxError, match="unknown sandbox backend"):
        pick_backend("podman")  # type: ignore[arg-type]
    assert pick_backend("bwrap") == "bwrap"
