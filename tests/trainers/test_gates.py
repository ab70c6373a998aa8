"""The data gates reject injected bad rows, each with its reason, and `rowgym dataset sft` reports them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rowgym.rows import Split, ToolCall
from rowgym.store import TrajectoryStore
from rowgym.trainers.gates import GateConfig, build_sft_dataset
from rowgym.trainers.gates.manifests import MANIFESTS

ENV = "rowgym/ToolAPI-Retail-v0"
ACTION_KINDS = {"cancel", "return", "exchange", "modify_item", "order_address"}


def _collect(out: Path, n: int) -> Path:
    subprocess.run([sys.executable, "-m", "rowgym.cli", "collect", ENV, "--agent", "expert", "--episodes", str(n),
                    "--out", str(out), "--no-progress"], check=True, capture_output=True)
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("gates")
    return _collect(root / "retail", 60), root


def _kind(ep) -> str:
    import rowgym
    env = rowgym.make(ep.env_id)
    try:
        return env.unwrapped.make_task(ep.seed).kind
    finally:
        env.close()


def _rewrite(src: Path, dst: Path, episodes) -> Path:
    """A valid, verifiable run holding ``episodes`` (the generator 'produced' them)."""
    man = TrajectoryStore(src, readonly=True).manifest.model_copy(update={"run_id": "injected", "shards": [],
                                                                          "n_episodes": 0, "status": "running"})
    store = TrajectoryStore(dst)
    store.start(man, resume=False)
    for ep in episodes:  # ids as the engine names them in a run called "injected" (the guard checks them)
        ids = {"run_id": "injected", "episode_id": f"injected:{ep.seed}:{ep.sample_index}",
               "group_id": f"injected:{ep.seed}"}
        steps = [s.model_copy(update=ids) for s in ep.steps]
        store.append(ep.model_copy(update={**ids, "steps": steps}))
    store.close(complete=True)
    return dst


@pytest.fixture(scope="module")
def injected(runs):
    run, root = runs
    eps = list(TrajectoryStore(run, readonly=True).episodes())
    base, extra = eps[:30], eps[30:]
    kinds = {e.episode_id: _kind(e) for e in eps}
    in_base = {k: sum(kinds[e.episode_id] == k for e in base) for k in set(kinds.values())}
    over = max(ACTION_KINDS, key=lambda k: in_base.get(k, 0) + sum(kinds[e.episode_id] == k for e in extra))
    cap = max(n for k, n in in_base.items() if k != over)  # no other kind reaches it
    assert in_base.get(over, 0) + sum(kinds[e.episode_id] == over for e in extra) > cap
    bad: dict[str, str] = {}
    out = list(base)
    # 1. a malformed tool call, answered as if it had worked
    a = base[0]
    i = next(i for i, s in enumerate(a.steps) if s.action.tool_call and s.action.tool_call.name != "finish")
    steps = list(a.steps)
    broken = ToolCall(name=steps[i].action.tool_call.name, arguments='{"order_id": ')
    steps[i] = steps[i].model_copy(update={"action": steps[i].action.model_copy(update={"tool_call": broken})})
    out[0] = a.model_copy(update={"steps": steps})
    bad["malformed"] = a.episode_id
    # 2. a stored reward that the verifier contradicts: only the final call of an action task is kept
    c = next(e for e in base[1:] if kinds[e.episode_id] in ACTION_KINDS)
    last = c.steps[-1].model_copy(update={"observation": c.steps[0].observation, "turn": 0})
    out[out.index(c)] = c.model_copy(update={"steps": [last]})
    bad["reward"] = c.episode_id
    # (a reworded held-out instruction in a train episode's prompt never reaches the gates: the held-out
    # guard refuses the whole run, see test_reworded_heldout_prompt_is_refused_before_the_gates)
    # 3. an over-represented task kind: every extra episode of one kind
    over_ids = [_injected_id(e) for e in extra if kinds[e.episode_id] == over]
    out += [e for e in extra if kinds[e.episode_id] == over]
    # 4. an exact duplicate (a second copy as another sample of the same seed)
    e = base[-1]
    dup = e.model_copy(update={"sample_index": e.sample_index + 1})
    out.append(dup)
    bad["dup"] = _injected_id(dup)
    bad = {k: _injected_id(next(x for x in out if x.episode_id == v)) if k != "dup" else v for k, v in bad.items()}
    return _rewrite(run, root / "injected", out), bad, (over, cap), over_ids, len(out)


def _injected_id(ep) -> str:
    return f"injected:{ep.seed}:{ep.sample_index}"


def test_reworded_heldout_prompt_is_refused_before_the_gates(runs, tmp_path):
    """A lightly reworded held-out instruction in a train episode's first observation: the content is not
    its seed's, so the held-out guard refuses the run (the leakage gate would only drop the row)."""
    import rowgym
    from rowgym.trainers.datasets import TamperedDataError

    run, _ = runs
    eps = list(TrajectoryStore(run, readonly=True).episodes())[:3]
    env = rowgym.make(ENV)
    try:
        ho = env.unwrapped.splits.seeds(Split.HELDOUT, 5)[3]
        instr = env.unwrapped.instruction(env.unwrapped.make_task(ho))
    finally:
        env.close()
    reworded = "Hi there! " + instr.replace("I want to", "I would like to").replace("I'd like to", "I want to")
    d = eps[0]
    first = d.steps[0].model_copy(update={"observation": reworded + d.steps[0].observation[len(d.instruction):]})
    eps[0] = d.model_copy(update={"instruction": reworded, "steps": [first, *d.steps[1:]]})
    leaky = _rewrite(run, tmp_path / "leaky", eps)
    with pytest.raises(TamperedDataError, match="first observation"):
        build_sft_dataset([leaky], tmp_path / "ds")


def _by_reason(report) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for ex in report.examples:
        out.setdefault(ex["reason"], set()).add(ex["key"])
    return out


def test_clean_run_passes_every_gate(runs, tmp_path):
    run, _ = runs
    subset = _rewrite(run, tmp_path / "clean", list(TrajectoryStore(run, readonly=True).episodes())[:30])
    _, report, rows = build_sft_dataset([subset], tmp_path / "ds")
    assert report.n_generated == 30 and report.n_kept == 30, report.summary_lines()
    assert report.effective_sample_rate == 1.0


def test_gates_reject_each_injected_row_with_its_reason(injected, tmp_path):
    run, bad, (over, cap), over_ids, n = injected
    path, report, rows = build_sft_dataset([run], tmp_path / "ds", cfg=GateConfig(max_per_kind=cap))
    counts = {(g["id"], r): c for g in report.gates for r, c in g["reasons"].items()}
    why = _by_reason(report)
    kept = {r["episode_id"] for r in rows}
    assert bad["malformed"] in why["malformed_tool_call"] and counts[("format@1", "malformed_tool_call")] == 1
    assert bad["reward"] in why["verdict_contradicted"] and counts[("semantic@1", "verdict_contradicted")] == 1
    assert bad["dup"] in why["exact_duplicate"] and counts[("distribution@1", "exact_duplicate")] == 1
    capped = [ex for ex in report.examples if ex["reason"] == "task_kind_cap"]
    assert counts[("distribution@1", "task_kind_cap")] >= 1 and all(f":{over}:" in ex["detail"] for ex in capped)
    assert sum(r["episode_id"] in over_ids for r in rows) < len(over_ids)
    assert not kept & set(bad.values())
    assert report.n_generated == n and report.n_kept == len(rows) < n
    # the rejection report on disk says the same, with the effective sample rate
    proc = json.loads((path / "processing.json").read_text())
    assert proc["report"]["effective_sample_rate"] == round(len(rows) / n, 4)
    assert {g["id"] for g in proc["gates"]} == {"format@1", "semantic@1", "leakage@1", "distribution@1"}
    iso = json.loads((path / "isolation.json").read_text())
    assert iso["dataset_overlap"] == [] and "rowgym/ToolAPI-Retail-v0" in iso["sources"]
    # and the HTML page shows each reason
    from rowgym.evals.dataset_report import write_dataset_report
    html = write_dataset_report(path).read_text()
    for reason in ("malformed_tool_call", "verdict_contradicted", "exact_duplicate", "task_kind_cap"):
        assert reason in html


def test_cli_dataset_sft_prints_rate_and_writes_four_manifests(injected, tmp_path):
    run, *_ = injected
    out = tmp_path / "cli-ds"
    res = subprocess.run([sys.executable, "-m", "rowgym.cli", "dataset", "sft", str(run), "--out", str(out)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr + res.stdout
    assert "effective sample rate" in res.stdout and "malformed_tool_call 1" in res.stdout
    for name in MANIFESTS:
        assert (out / name).is_file(), name
    src = json.loads((out / "source.json").read_text())
    assert src["runs"][0]["env_id"] == ENV and src["runs"][0]["seed_set_hash"]


def test_eval_file_joins_the_quarantine(runs, tmp_path):
    run, _ = runs
    ep = next(iter(TrajectoryStore(run, readonly=True).episodes()))
    ev = tmp_path / "eval.jsonl"
    ev.write_text(json.dumps({"question": "Please: " + ep.instruction, "answer": "ok"}) + "\n")
    subset = _rewrite(run, tmp_path / "one", [ep])
    _, report, rows = build_sft_dataset([subset], tmp_path / "ds", cfg=GateConfig(eval_files=[str(ev)]))
    assert rows == [] and _by_reason(report)["prompt_near_duplicate"] == {_injected_id(ep)}
