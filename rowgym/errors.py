"""One root exception for rowgym, with grouped subclasses.

Inside an episode a failing *action* is an observation, never an exception (see
``rowgym.env``). These exceptions are for programming and configuration errors:
unknown environment ids, broken plugins, a store that does not match the run,
held-out data reaching a trainer. Each message says what to do next.
"""


class RowgymError(Exception):
    """Base class of every error rowgym raises on purpose."""


class RegistryError(RowgymError):
    """An environment id cannot be registered or made."""


class UnknownEnvError(RegistryError):
    """No environment is registered under that id."""


class PluginError(RegistryError):
    """A third-party plugin failed to load."""


class SplitError(RowgymError):
    """A seed or split request is invalid."""


class HeldOutLeakError(SplitError):
    """Held-out rows reached something that must never train on them."""


class StoreError(RowgymError):
    """The trajectory store is unreadable or does not match the requested run."""


class ToolDefinitionError(RowgymError):
    """An environment defines a tool incorrectly (a bug in the env, not the agent)."""


class AgentError(RowgymError):
    """An agent could not produce an action (for example, its policy server is down)."""


class PolicyServerError(AgentError):
    """The policy server could not be started, reached or used (an episode fails with kind 'policy')."""

    failure_kind = "policy"


class GraderError(RowgymError):
    """An environment's verifier crashed while grading an episode (the episode fails with kind 'grader')."""

    failure_kind = "grader"


class MissingDependencyError(RowgymError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""
