"""`rowgym dataset ...`: training datasets built from runs, through the gates (held-out rows are refused)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rowgym.cli.common import AllowUnverifiedOpt, _fail, _os_error, console

dataset_app = typer.Typer(help="Build training datasets from runs (held-out rows are refused).", no_args_is_help=True)


GateOpts = dict(
    near_dup=typer.Option("--near-dup", help="distribution gate: Jaccard of near-duplicate rows"),
    max_kind_share=typer.Option("--max-kind-share", help="distribution gate: most of the dataset one task kind may hold"),
    max_per_kind=typer.Option("--max-per-kind", help="distribution gate: absolute cap per task kind"),
    eval_file=typer.Option("--eval-file", help="leakage gate: an eval file whose records join the quarantine "
                           "(repeatable)"),
    quarantine_seeds=typer.Option("--quarantine-seeds", help="leakage gate: dev and held-out seeds per env", min=1),
)


def _gate_config(near_dup: float, max_kind_share: float, max_per_kind: int | None, eval_file: list[Path] | None,
                 quarantine_seeds: int):
    from rowgym.trainers.gates import GateConfig

    for f in eval_file or []:
        if not f.is_file():
            _fail(f"--eval-file {f} is not a file")
    return GateConfig(near_dup_threshold=near_dup, max_kind_share=max_kind_share, max_per_kind=max_per_kind,
                      eval_files=[str(f) for f in eval_file or []], quarantine_seeds=quarantine_seeds)


def _dataset_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        _fail(f"--out {out} exists and is not a directory")


def _build_dataset(build):  # noqa: ANN001, ANN202
    """Run a dataset builder (returns ``(path, report, ...)``) with one-line errors; print its gates."""
    from rowgym.errors import RowgymError

    try:
        result = build()
    except RowgymError as e:
        _fail(str(e))
    except OSError as e:
        _fail(f"cannot write the dataset: {_os_error(e)}")
    _print_gates(result[1], result[0])
    return result


def _print_gates(report, path: Path) -> None:
    for line in report.summary_lines():
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    for note in report.notes:
        console.print(f"  note: {note}", markup=False, highlight=False, soft_wrap=True)
    console.print(f"effective sample rate {report.effective_sample_rate:.3f} ({report.n_kept}/{report.n_generated}); "
                  f"manifests: source.json processing.json consumption.json isolation.json in {path}",
                  markup=False, highlight=False, soft_wrap=True)


@dataset_app.command("sft")
def dataset_sft(runs: Annotated[list[Path], typer.Argument(help="Run directories")],
                out: Annotated[Path, typer.Option(help="Output dataset directory")],
                min_reward: Annotated[float, typer.Option(help="Keep episodes with final reward >= this")] = 1.0,
                dev: Annotated[bool, typer.Option("--dev", help="Also use dev-split episodes")] = False,
                drop_bad_calls: Annotated[bool, typer.Option("--drop-bad-calls", help="Drop bad calls and repairs")] = False,
                allow_unverified: AllowUnverifiedOpt = False,
                near_dup: Annotated[float, GateOpts["near_dup"]] = 0.9,
                max_kind_share: Annotated[float, GateOpts["max_kind_share"]] = 0.5,
                max_per_kind: Annotated[int | None, GateOpts["max_per_kind"]] = None,
                eval_file: Annotated[list[Path] | None, GateOpts["eval_file"]] = None,
                quarantine_seeds: Annotated[int, GateOpts["quarantine_seeds"]] = 200) -> None:
    """Tool-use SFT conversations (messages + tools) from successful train-split episodes, through the
    format, semantic, leakage and distribution gates; writes the data and its four manifests."""
    from rowgym.trainers.gates import build_sft_dataset

    _dataset_out(out)
    splits = ("train", "dev") if dev else ("train",)
    cfg = _gate_config(near_dup, max_kind_share, max_per_kind, eval_file, quarantine_seeds)
    path, report, rows = _build_dataset(lambda: build_sft_dataset(
        [str(r) for r in runs], out, min_reward=min_reward, splits=splits, keep_bad_calls=not drop_bad_calls,
        allow_unverified=allow_unverified, cfg=cfg))
    console.print(f"wrote {len(rows)} conversations from {len({r['task_hash'] for r in rows})} tasks to {path}")


@dataset_app.command("grpo")
def dataset_grpo(env_id: Annotated[str, typer.Argument(help="Environment id")],
                 out: Annotated[Path, typer.Option(help="Output dataset directory")],
                 n: Annotated[int, typer.Option(help="Number of seeds", min=1)] = 64,
                 split: Annotated[str, typer.Option(help="train or dev")] = "train",
                 start: Annotated[int, typer.Option(help="Skip this many seeds of the split", min=0)] = 0,
                 near_dup: Annotated[float, GateOpts["near_dup"]] = 0.9,
                 max_kind_share: Annotated[float, GateOpts["max_kind_share"]] = 0.5,
                 max_per_kind: Annotated[int | None, GateOpts["max_per_kind"]] = None,
                 eval_file: Annotated[list[Path] | None, GateOpts["eval_file"]] = None,
                 quarantine_seeds: Annotated[int, GateOpts["quarantine_seeds"]] = 200) -> None:
    """GRPO prompts (seed, env id, split, first-turn messages) for the rollout function, through the gates."""
    from rowgym.trainers.gates import build_grpo_dataset

    _dataset_out(out)
    cfg = _gate_config(near_dup, max_kind_share, max_per_kind, eval_file, quarantine_seeds)
    path, report, rows = _build_dataset(lambda: build_grpo_dataset(env_id, out, split=split, n=n, start=start, cfg=cfg))
    console.print(f"wrote {len(rows)} prompts to {path}")


@dataset_app.command("rsft")
def dataset_rsft(runs: Annotated[list[Path], typer.Argument(help="Grouped run directories (collect --group-size k)")],
                 out: Annotated[Path, typer.Option(help="Output dataset directory")],
                 min_reward: Annotated[float, typer.Option(help="An accepted sample also needs this final reward")] = 0.0,
                 hard_negatives: Annotated[int, typer.Option(help="Rejected samples kept per row", min=0)] = 2,
                 max_per_task: Annotated[int | None, typer.Option(help="Accepted samples kept per group", min=1)] = None,
                 dev: Annotated[bool, typer.Option("--dev", help="Also use dev-split episodes")] = False,
                 drop_bad_calls: Annotated[bool, typer.Option("--drop-bad-calls", help="Drop bad calls and repairs")] = False,
                 allow_unverified: AllowUnverifiedOpt = False,
                 near_dup: Annotated[float, GateOpts["near_dup"]] = 0.9,
                 max_kind_share: Annotated[float, GateOpts["max_kind_share"]] = 0.5,
                 max_per_kind: Annotated[int | None, GateOpts["max_per_kind"]] = None,
                 eval_file: Annotated[list[Path] | None, GateOpts["eval_file"]] = None,
                 quarantine_seeds: Annotated[int, GateOpts["quarantine_seeds"]] = 200) -> None:
    """Rejection-sampling SFT data: per group (k samples of one seed) the samples the verifier passed, with
    the group's record (candidates, accepted, rejection reasons, hard negatives), through the gates. The
    dataset feeds `rowgym train sft`."""
    from rowgym.trainers.rsft import build_rsft_dataset

    _dataset_out(out)
    splits = ("train", "dev") if dev else ("train",)
    cfg = _gate_config(near_dup, max_kind_share, max_per_kind, eval_file, quarantine_seeds)
    path, report, rows, summary = _build_dataset(lambda: build_rsft_dataset(
        [str(r) for r in runs], out, min_reward=min_reward, splits=splits, keep_bad_calls=not drop_bad_calls,
        n_hard_negatives=hard_negatives, max_per_task=max_per_task, allow_unverified=allow_unverified, cfg=cfg))
    console.print(f"wrote {len(rows)} accepted conversations from {len({r['group_id'] for r in rows})} groups to {path}",
                  highlight=False, soft_wrap=True)


@dataset_app.command("dpo")
def dataset_dpo(runs: Annotated[list[Path], typer.Argument(help="Grouped run directories (collect --group-size k)")],
                out: Annotated[Path, typer.Option(help="Output dataset directory")],
                min_margin: Annotated[float, typer.Option(help="A pair needs chosen - rejected reward > this "
                                                          "(ties are always dropped)", min=0.0)] = 0.0,
                max_pairs_per_group: Annotated[int | None, typer.Option(help="Largest-margin pairs kept per group",
                                                                        min=1)] = None,
                dev: Annotated[bool, typer.Option("--dev", help="Also use dev-split episodes")] = False,
                allow_unverified: AllowUnverifiedOpt = False,
                near_dup: Annotated[float, GateOpts["near_dup"]] = 0.9,
                max_kind_share: Annotated[float, GateOpts["max_kind_share"]] = 0.5,
                max_per_kind: Annotated[int | None, GateOpts["max_per_kind"]] = None,
                eval_file: Annotated[list[Path] | None, GateOpts["eval_file"]] = None,
                quarantine_seeds: Annotated[int, GateOpts["quarantine_seeds"]] = 200) -> None:
    """Preference pairs (prompt, chosen, rejected) from samples of one seed's group with different final
    rewards, through the gates (both sides checked). The dataset feeds `rowgym train dpo`."""
    from rowgym.trainers.dpo import build_dpo_dataset

    _dataset_out(out)
    splits = ("train", "dev") if dev else ("train",)
    cfg = _gate_config(near_dup, max_kind_share, max_per_kind, eval_file, quarantine_seeds)
    path, report, rows, summary = _build_dataset(lambda: build_dpo_dataset(
        [str(r) for r in runs], out, min_margin=min_margin, max_pairs_per_group=max_pairs_per_group,
        splits=splits, allow_unverified=allow_unverified, cfg=cfg))
    console.print(f"wrote {len(rows)} preference pairs from {len({r['group_id'] for r in rows})} groups to {path}",
                  highlight=False, soft_wrap=True)


@dataset_app.command("report")
def dataset_report(dataset: Annotated[Path, typer.Argument(help="Dataset directory (rowgym dataset sft/grpo)")],
                   out: Annotated[Path | None, typer.Option(help="HTML file (default DATASET/report.html)")] = None,
                   png: Annotated[Path | None, typer.Option(help="Also save a screenshot (Chromium) here")] = None) -> None:
    """The gates and the four manifests of a dataset as one HTML page with before/after plots."""
    from rowgym.errors import RowgymError
    from rowgym.evals.dataset_report import write_dataset_report

    try:
        html = write_dataset_report(dataset, out)
    except RowgymError as e:
        _fail(str(e))
    console.print(f"report: {html}", highlight=False, soft_wrap=True)
    if png is not None:
        from rowgym.evals.screenshot import screenshot

        console.print(f"screenshot: {screenshot(html, png, open_first=False)}", highlight=False, soft_wrap=True)
