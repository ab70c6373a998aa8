"""The registered repo-patch environments: built-in corpus, synthesized tasks, SWE-bench-format files.

>>> import rowgym
>>> env = rowgym.make("rowgym/RepoPatch-Corpus-v0")
>>> len(env.task_list) >= 30, env.splits.split_of(0) is not None
(True, True)
>>> env.close()
"""

from __future__ import annotations

import os
from typing import Any

from rowgym.envs.repopatch.env import RepoPatchEnv
from rowgym.envs.repopatch.task import RepoPatchTask


class CorpusEnv(RepoPatchEnv):
    """Bugs injected into the small repositories of ``envs/repopatch/corpus``."""

    family = "repopatch-corpus"

    def load_tasks(self) -> list[RepoPatchTask]:
        from rowgym.envs.repopatch.corpus import corpus_tasks

        return corpus_tasks()


class SynthEnv(RepoPatchEnv):
    """SWE-smith-style tasks: validated AST mutations of real PyPI libraries (built and cached on first use).

    Args:
        n_tasks: Tasks to build/load (default ``$ROWGYM_SYNTH_TASKS`` or all candidates).
        workers: Parallel sandboxes when building.
    """

    family = "repopatch-synth"

    def __init__(self, *, n_tasks: int | None = None, workers: int | None = None, **kw: Any) -> None:
        env_n = os.environ.get("ROWGYM_SYNTH_TASKS")
        self.n_tasks = n_tasks if n_tasks is not None else (int(env_n) if env_n else None)
        self.workers = workers
        super().__init__(**kw)

    def load_tasks(self) -> list[RepoPatchTask]:
        from rowgym.envs.repopatch.synth.build import load_or_build

        return load_or_build(n_tasks=self.n_tasks, workers=self.workers, backend=self.backend)


class SWEBenchEnv(RepoPatchEnv):
    """SWE-bench-format instances against local git repositories.

    Args:
        instances_path: A JSON / JSONL file of instances (default: a tiny built-in example).
        repos_root: Where ``repo`` names resolve to local git repos (default: the file's directory).
    """

    family = "repopatch-swebench"

    def __init__(self, *, instances_path: str | None = None, repos_root: str | None = None, **kw: Any) -> None:
        self.instances_path = instances_path
        self.repos_root = repos_root
        super().__init__(**kw)

    def load_tasks(self) -> list[RepoPatchTask]:
        from rowgym.envs.repopatch.swebench import example_instances, load_instances

        path = self.instances_path or str(example_instances())
        return load_instances(path, repos_root=self.repos_root)
