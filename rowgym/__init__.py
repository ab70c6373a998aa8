"""rowgym: a gym for LLM agents in which every step is a training row.

>>> import rowgym
>>> env = rowgym.make("rowgym/ToolAPI-Retail-v0")
>>> obs, info = env.reset(seed=1)
>>> env.close()
"""

__version__ = "0.1.0"

from rowgym.errors import RowgymError  # noqa: E402
from rowgym.registry import EnvSpec, all_specs, load_plugins, make, register, spec  # noqa: E402
from rowgym.rows import SCHEMA_VERSION, Action, Episode, Split, StepRow, ToolCall  # noqa: E402

# Plugins register their ids now, so that ``gymnasium.make("<plugin id>")`` works right after
# ``import rowgym`` (failures are recorded, shown by ``rowgym envs list``, never raised here).
load_plugins()

__all__ = ["Action", "EnvSpec", "Episode", "RowgymError", "SCHEMA_VERSION", "Split", "StepRow", "ToolCall",
           "all_specs", "make", "register", "spec"]
