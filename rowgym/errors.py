"""One root exception for rowgym, with grouped subclasses.

Inside an episode a failing *action* is an observation, never an exception (see
``rowgym.env``). These exceptions are for programming and configuration errors:
unknown environment ids, broken plugins, a store that does not match the run,
held-out data reaching a trainer. Each message says what to do next.

Episode failures are :class:`EpisodeError` subclasses, one per ``kind`` (policy, env,
sandbox, grader, timeout)::

    RowgymError
    ├── RegistryError (UnknownEnvError, PluginError)   ├── StoreError
    ├── SplitError (HeldOutLeakError)                  ├── ToolDefinitionError
    ├── MissingDependencyError                         └── EpisodeError
                                                           ├── EnvError
                                                           ├── AgentError (PolicyServerError)   kind policy
                                                           ├── SandboxError                     kind sandbox
                                                           ├── GraderError                      kind grader
                                                           └── EpisodeTimeout                   kind timeout

>>> issubclass(PolicyServerError, EpisodeError), PolicyServerError.kind
(True, 'policy')
"""

from typing import ClassVar, Literal

FailureKind = Literal["policy", "env", "sandbox", "grader", "timeout"]


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


class TamperedDataError(HeldOutLeakError):
    """Stored rows disagree with what their env says about their seed (edited split, seed, env or task)."""


class StoreError(RowgymError):
    """The trajectory store is unreadable or does not match the requested run."""


class ToolDefinitionError(RowgymError):
    """An environment defines a tool incorrectly (a bug in the env, not the agent)."""


# ----------------------------------------------------------------- episode failures
# An episode that cannot finish ends with a Failure whose kind says which part failed. The
# rollout engine attributes an exception by its class (isinstance), never by attributes.


class EpisodeError(RowgymError):
    """Ends an episode for a reason outside the agent's actions; ``kind`` names the part that failed."""

    kind: ClassVar[FailureKind] = "env"


class EnvError(EpisodeError):
    """The environment's own machinery failed (a backend, a server, a browser)."""

    kind = "env"


class AgentError(EpisodeError):
    """An agent could not produce an action (for example, its policy server is down)."""

    kind = "policy"


class PolicyServerError(AgentError):
    """The policy server could not be started, reached or used."""


class SandboxError(EpisodeError):
    """A sandbox could not be started or used (setup and infrastructure, not a command's failure)."""

    kind = "sandbox"


class GraderError(EpisodeError):
    """The verifier could not grade an episode (bad task data, a crashed grader, a broken test run)."""

    kind = "grader"


class EpisodeTimeout(EpisodeError):
    """A turn, an env call or the whole episode exceeded its time limit."""

    kind = "timeout"


class MissingDependencyError(RowgymError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""
