"""`rowgym model ...`: local models for tests, CI and demos."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rowgym.cli.common import _fail, console

model_app = typer.Typer(help="Local models for tests, CI and demos.", no_args_is_help=True)


@model_app.command("build-tiny")
def model_build_tiny(out: Annotated[Path | None, typer.Option(help="Output dir (default ~/.cache/rowgym/models/tiny-qwen3)")] = None,
                     seed: Annotated[int, typer.Option(help="Weight-initialisation seed")] = 0,
                     force: Annotated[bool, typer.Option("--force", help="Rebuild even if cached")] = False) -> None:
    """Build the tiny random Qwen3 model + offline tokenizer + TRL's Qwen3 chat template (no downloads)."""
    try:
        from rowgym.trainers.tiny_model import build_tiny_model_cli
    except ImportError as e:
        _fail(f"building the tiny model needs the train extra (pip install 'rowgym[train]'): {e}")
    build_tiny_model_cli(str(out) if out else None, seed, force)


@model_app.command("pretrain-tiny")
def model_pretrain_tiny(out: Annotated[Path, typer.Option(help="Output dir of the pretrained model")],
                        base: Annotated[Path | None, typer.Option(help="Model dir to start from (default: build the tiny model)")] = None,
                        steps: Annotated[int, typer.Option(help="Optimizer steps (32 requests each)", min=1)] = 1000,
                        seed: Annotated[int, typer.Option(help="Seed of the corpus and of training")] = 0) -> None:
    """Give the tiny model a short generic copy pretraining (synthetic requests -> JSON tool-call arguments)."""
    try:
        from rowgym.trainers.pretrain import PretrainConfig, build_pretrained_tiny_model
    except ImportError as e:
        _fail(f"pretraining needs the train extra (pip install 'rowgym[train]'): {e}")
    if base is not None and not (base / "config.json").exists():
        _fail(f"{base} is not a model directory; build one with `rowgym model build-tiny`")
    console.print(str(build_pretrained_tiny_model(out, PretrainConfig(steps=steps, seed=seed), base=base)))
