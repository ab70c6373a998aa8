"""exec, files and copies behave the same on both backends."""

from __future__ import annotations

from pathlib import Path

import pytest
from sandbox_helpers import TEST_CONFIG

from rowgym.sandboxes import SandboxClosed, SandboxPathError
from rowgym.sandboxes.base import Sandbox


async def test_exec_string_list_exit_codes_and_streams(sb: Sandbox) -> None:
    res = await sb.exec("echo out; echo err >&2; exit 3", timeout=10)
    assert (res.stdout, res.stderr, res.exit_code, res.timed_out) == ("out\n", "err\n", 3, False)
    assert res.duration_s > 0 and not res.ok
    res = await sb.exec(["python3", "-c", "import sys; print(sys.argv[1:])", "a b", "$HOME"], timeout=10)
    assert res.stdout == "['a b', '$HOME']\n"  # argv lists are not shell-expanded
    missing = await sb.exec(["no-such-binary"], timeout=10)
    assert missing.exit_code != 0 and not missing.timed_out


async def test_exec_cwd_env_and_persistent_tmp(sb: Sandbox) -> None:
    await sb.write_file("sub/marker", "m")
    res = await sb.exec("pwd; ls; echo $GREETING", timeout=10, cwd="/workspace/sub", env={"GREETING": "hi"})
    assert res.stdout == "/workspace/sub\nmarker\nhi\n"
    await sb.exec("echo kept > /tmp/state", timeout=10)
    assert (await sb.exec("cat /tmp/state", timeout=10)).stdout == "kept\n"


async def test_huge_output_is_truncated_head_and_tail(sb: Sandbox) -> None:
    res = await sb.exec("echo FIRST; yes filler | head -c 5000000; echo; echo LAST", timeout=20)
    assert res.truncated and res.exit_code == 0
    assert res.stdout.startswith("FIRST") and res.stdout.rstrip().endswith("LAST")
    assert "bytes of output truncated" in res.stdout
    assert len(res.stdout) < TEST_CONFIG.max_output_bytes + 200


async def test_read_write_files(sb: Sandbox) -> None:
    await sb.write_file("a/b/c.txt", "héllo")
    await sb.write_file("/workspace/bin.dat", bytes(range(256)))
    assert await sb.read_file("a/b/c.txt") == "héllo".encode()
    assert await sb.read_file("/workspace/bin.dat") == bytes(range(256))
    res = await sb.exec("cat a/b/c.txt && echo changed > a/b/c.txt", timeout=10)
    assert res.stdout == "héllo"
    assert await sb.read_file("a/b/c.txt") == b"changed\n"  # the agent's uid owns what we wrote
    assert b"bookworm" in await sb.read_file("/etc/os-release")  # outside the work dir: read via cat
    with pytest.raises(FileNotFoundError):
        await sb.read_file("nope.txt")
    with pytest.raises(SandboxPathError):
        await sb.write_file("/tmp/x", "only /workspace is writable from the host side")


async def test_copy_in_and_out_roundtrip(sb: Sandbox, tmp_path: Path) -> None:
    src = tmp_path / "repo"
    (src / "pkg").mkdir(parents=True)
    (src / "pkg" / "__init__.py").write_text("")
    (src / "pkg" / "mod.py").write_text("def add(a, b):\n    return a + b\n")
    (src / "test_mod.py").write_text(
        "from pkg.mod import add\n\ndef test_add():\n    assert add(2, 3) == 5\n"
    )
    (src / "alias.py").symlink_to("pkg/mod.py")
    await sb.copy_in(src, "/workspace/repo")
    res = await sb.exec("python3 -m pytest -q -p no:cacheprovider", timeout=60, cwd="/workspace/repo")
    assert res.exit_code == 0, res.stdout + res.stderr
    assert "1 passed" in res.stdout
    await sb.exec("echo '# edited' >> pkg/mod.py && mkfifo pipe", timeout=10, cwd="/workspace/repo")
    out = tmp_path / "back"
    await sb.copy_out("repo", out)
    assert (out / "pkg" / "mod.py").read_text().endswith("# edited\n")
    assert (out / "alias.py").is_symlink()  # links inside the tree are kept
    assert not (out / "pipe").exists()  # fifos are not copied (reading one would hang)


async def test_failing_tests_exit_nonzero(sb: Sandbox) -> None:
    await sb.write_file("test_bad.py", "def test_bad():\n    assert 1 == 2\n")
    res = await sb.exec(["python3", "-m", "pytest", "-q", "-p", "no:cacheprovider"], timeout=60)
    assert res.exit_code == 1 and "1 failed" in res.stdout


async def test_git_works_inside(sb: Sandbox) -> None:
    await sb.write_file("f.txt", "one\n")
    res = await sb.exec(
        "git init -q && git add . && git commit -qm init && echo two >> f.txt && git diff", timeout=20
    )
    assert res.exit_code == 0, res.stderr
    assert "+two" in res.stdout


async def test_closed_sandbox_refuses_use(sb: Sandbox) -> None:
    await sb.close()
    await sb.close()  # idempotent
    with pytest.raises(SandboxClosed):
        await sb.exec("true", timeout=5)
    with pytest.raises(SandboxClosed):
        await sb.read_file("x")
