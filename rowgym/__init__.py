"""rowgym: a gym for LLM agents in which every step is a training row.

>>> import rowgym
>>> env = rowgym.make("rowgym/ToolAPI-Retail-v0")
>>> obs, info = env.reset(seed=1)
>>> env.close()
"""

__version__ = "0.1.0"

from rowgym.errors import RowgymError  # noqa: E402
from rowgym.registry import EnvSpec, all_specs, make, register, spec  # noqa: E402
from rowgym.rows import SCHEMA_VERSION, Action, Episode, Split, StepRow, ToolCall  # noqa: E402

__all__ = ["Action", "EnvSpec", "Episode", "RowgymError", "SCHEMA_VERSION", "Split", "StepRow", "ToolCall",
           "all_specs", "make", "register", "spec"]
