"""The ``rowgym`` command line (typer + rich).

    rowgym envs list
    rowgym check rowgym/ToolAPI-Retail-v0
    rowgym collect rowgym/ToolAPI-Retail-v0 --agent expert --split train --episodes 200 --out runs/retail
    rowgym show runs/retail --episode 0
    rowgym verify runs/retail
    rowgym export runs/retail --format parquet --out runs/retail/steps.parquet

Heavy modules are imported inside the commands, so ``rowgym --help`` stays fast.

Each module holds one concern and owns its Typer apps; this one puts them together.

    common.py    the console, one-line errors, option validators, the LLM agents' options
    envs.py      envs list, check
    runs.py      collect, show, export, verify
    bench.py     bench
    datasets.py  dataset sft/grpo/rsft/dpo/report
    serve.py     serve up/down/status, env serve
    models.py    model build-tiny/pretrain-tiny
    train.py     train sft/dpo/grpo
"""

from __future__ import annotations

import typer

from rowgym.cli import bench, envs, runs
from rowgym.cli.common import console, llm_agent_kwargs
from rowgym.cli.datasets import dataset_app
from rowgym.cli.models import model_app
from rowgym.cli.serve import env_app, serve_app
from rowgym.cli.train import train_app

__all__ = ["app", "console", "llm_agent_kwargs"]

app = typer.Typer(help="rowgym: a gym for LLM agents in which every step is a training row.",
                  no_args_is_help=True, pretty_exceptions_show_locals=False)
# Top-level commands first, then the command groups; `rowgym --help` lists them in this order.
app.add_typer(envs.commands)   # check
app.add_typer(runs.commands)   # collect, show, export, verify
app.add_typer(bench.commands)  # bench
app.add_typer(envs.envs_app, name="envs")
app.add_typer(dataset_app, name="dataset")
app.add_typer(serve_app, name="serve")
app.add_typer(model_app, name="model")
app.add_typer(env_app, name="env")
app.add_typer(train_app, name="train")
