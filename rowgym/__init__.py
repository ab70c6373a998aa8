"""rowgym: a gym for LLM agents in which every step is a training row.

>>> import rowgym
>>> env = rowgym.make("rowgym/ToolAPI-Retail-v0")
>>> obs, info = env.reset(seed=1)
>>> env.close()
"""

__version__ = "0.1.0"

from rowgym.errors import RowgymError  # noqa: E402

# Plugins register their ids now, so that ``gymnasium.make("<plugin id>")`` works right after
# ``import rowgym`` (failures are recorded, shown by ``rowgym envs list``, never raised here).
from rowgym.registry import (  # noqa: E402
           EnvSpec,
           all_specs,
           load_plugins,  # noqa: E402
           make,
           register,
           spec,
)
from rowgym.rows import SCHEMA_VERSION, Action, Episode, Split, StepRow, ToolCall  # noqa: E402

load_plugins()

__all__ = ["Action", "EnvSpec", "Episode", "RowgymError", "SCHEMA_VERSION", "Split", "StepRow", "ToolCall",
           "all_specs", "make", "register", "spec"]
