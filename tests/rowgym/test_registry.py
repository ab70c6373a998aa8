import subprocess
import sys
import textwrap
from pathlib import Path

import gymnasium
import pytest

import rowgym
from rowgym import registry
from rowgym.errors import RegistryError, UnknownEnvError

ROOT = Path(__file__).resolve().parents[2]


def test_make_builds_versioned_ids_and_latest_version():
    env = rowgym.make("rowgym/ToolAPI-Retail-v0")
    assert env.env_id == "rowgym/ToolAPI-Retail-v0"
    assert type(rowgym.make("rowgym/ToolAPI-Retail")) is type(env)


def test_typo_gets_did_you_mean():
    with pytest.raises(UnknownEnvError, match="did you mean 'rowgym/ToolAPI-Airline-v0'"):
        rowgym.make("rowgym/ToolAPI-Airlne-v0")


def test_ids_need_a_version_and_cannot_be_registered_twice():
    with pytest.raises(RegistryError, match="version"):
        rowgym.register("rowgym/NoVersion", entry_point="x:y")
    with pytest.raises(RegistryError, match="already registered"):
        rowgym.register("rowgym/ToolAPI-Retail-v0", entry_point="x:y")


def test_gymnasium_make_works():
    env = gymnasium.make("rowgym/ToolAPI-Airline-v0")
    obs, info = env.reset(seed=3)
    assert isinstance(obs, str) and info["split"] in {"train", "dev", "heldout"}
    obs, reward, terminated, truncated, info = env.step({"name": "list_airports", "arguments": {}})
    assert "JFK" in obs and not info["bad_call"]
    env.close()


def _write_fake_dist(root: Path, name: str, target: str) -> None:
    dist = root / f"{name}-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[rowgym.envs]\n{name} = {target}\n")


def test_broken_plugin_is_reported_by_name_and_does_not_break_the_rest(tmp_path, monkeypatch):
    _write_fake_dist(tmp_path, "broken_plugin", "broken_plugin_mod:register")
    (tmp_path / "broken_plugin_mod.py").write_text("raise ImportError('missing dependency: frobnicate')\n")
    _write_fake_dist(tmp_path, "good_plugin", "good_plugin_mod:register")
    (tmp_path / "good_plugin_mod.py").write_text(textwrap.dedent("""
        import rowgym
        def register():
            rowgym.register("goodplugin/Retail-v0", entry_point="rowgym.envs.toolapi.retail:RetailEnv")
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    failures = registry.load_plugins(rescan=True)
    broken = [f for f in failures if f.name == "broken_plugin"]
    assert broken and "frobnicate" in broken[0].error
    ids = {s.id: s for s in rowgym.all_specs()}
    assert ids["goodplugin/Retail-v0"].source == "plugin:good_plugin"
    assert "rowgym/ToolAPI-Retail-v0" in ids
    assert rowgym.make("goodplugin/Retail-v0").reset(seed=0)[0]


@pytest.mark.slow
def test_example_plugin_installs_and_appears_in_list_and_make():
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", str(ROOT / "examples" / "plugin")],
                         capture_output=True, text=True)
    assert pip.returncode == 0, pip.stderr
    out = subprocess.run([sys.executable, "-m", "rowgym.cli", "envs", "list"], capture_output=True, text=True,
                         env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert "rowgym-example/GuessNumber-v0" in out.stdout and "plugin:example" in out.stdout
    code = ("import rowgym; e = rowgym.make('rowgym-example/GuessNumber-v0'); o, i = e.reset(seed=0); "
            "print(type(e).__name__, e.step({'name': 'guess', 'arguments': {'number': 1}})[0])")
    made = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    assert made.stdout.split()[0] == "GuessNumberEnv"
    assert made.stdout.split()[1] in {"higher", "correct"}
    check = subprocess.run([sys.executable, "-m", "rowgym.cli", "check", "rowgym-example/GuessNumber-v0"],
                           capture_output=True, text=True, env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"})
    assert check.returncode == 0 and "first_observations_identify_tasks" in check.stdout, check.stdout[-3000:]


def test_plugin_registered_with_a_class_works_through_gymnasium_make_after_import_rowgym(tmp_path):
    _write_fake_dist(tmp_path, "class_plugin", "class_plugin_mod:register")
    (tmp_path / "class_plugin_mod.py").write_text(textwrap.dedent("""
        import rowgym
        from rowgym.envs.toolapi.retail import RetailEnv

        class MyRetail(RetailEnv):
            pass

        def register():
            rowgym.register("classplugin/MyRetail-v0", entry_point=MyRetail)
    """))
    code = ("import rowgym, gymnasium; e = gymnasium.make('classplugin/MyRetail-v0'); o, i = e.reset(seed=0); "
            "print(type(e.unwrapped).__name__, e.unwrapped.env_id)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["MyRetail", "classplugin/MyRetail-v0"]


def test_register_accepts_a_factory_and_refuses_a_bad_entry_point():
    from rowgym.envs.toolapi.retail import RetailEnv

    rowgym.register("factory/Retail-v0", entry_point=lambda **kw: RetailEnv(**kw), replace=True)
    assert rowgym.make("factory/Retail-v0").env_id == "factory/Retail-v0"
    with pytest.raises(RegistryError, match="module:attr"):
        rowgym.register("bad/Entry-v0", entry_point="no_colon_here")


def test_envs_list_exits_non_zero_when_a_plugin_failed(tmp_path):
    _write_fake_dist(tmp_path, "broken_plugin2", "broken_plugin2_mod:register")
    (tmp_path / "broken_plugin2_mod.py").write_text("raise ImportError('missing dependency: frobnicate')\n")
    out = subprocess.run([sys.executable, "-m", "rowgym.cli", "envs", "list"], capture_output=True, text=True,
                         env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin", "COLUMNS": "200"})
    assert out.returncode == 1
    assert "broken_plugin2" in out.stdout and "frobnicate" in out.stdout and "Traceback" not in out.stdout + out.stderr


def test_agent_option_it_does_not_take_is_a_clear_error():
    from rowgym.agents import make_agent

    env = rowgym.make("rowgym/ToolAPI-Retail-v0")
    with pytest.raises(rowgym.RowgymError, match="does not take option.*temperature.*it takes: noise, seed"):
        make_agent("expert", env, temperature=0.7)
    with pytest.raises(rowgym.RowgymError, match="not a rowgym Agent class"):
        make_agent("os:system", env)
