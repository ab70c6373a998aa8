"""The row schema: every step an agent takes is one training row.

>>> from rowgym.rows import ToolCall, StepRow
>>> call = ToolCall(name="get_order", arguments='{"order_id": "W1"}')
>>> call.args()
{'order_id': 'W1'}

Three levels, all pydantic models with ``extra="forbid"`` and JSON round-trip:

* :class:`StepRow` — one ``state / action / observation / reward`` row. It carries
  every identifier it needs (run, episode, group, env, seed, split), so a single row
  can be trained on or audited alone.
* :class:`Episode` — the rows of one episode plus the final verdict: final reward,
  verifier, checks run, failure reason, policy and reward-function versions.
* :class:`RunManifest` — what produced a run of episodes and the hash of each shard.

Tool-call arguments are stored as a JSON *string*: Arrow (Parquet, ``datasets``)
mangles dicts whose keys differ from row to row, and a string keeps the exact text
the policy produced.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1
M = TypeVar("M", bound=BaseModel)


class Split(StrEnum):
    """The three disjoint seed sets of every environment."""

    TRAIN = "train"
    DEV = "dev"
    HELDOUT = "heldout"


class Model(BaseModel):
    """Base of every boundary model: unknown fields are an error, not silently kept."""

    model_config = ConfigDict(extra="forbid")


_new, _setattr = object.__new__, object.__setattr__
_FIELD_ORDER: dict[type, tuple[str, ...]] = {}


def unvalidated(cls: type[M], fields_set: frozenset[str], /, **values: Any) -> M:
    """``cls(**values)`` without validation, for values rowgym's own code just made with the field types.

    What ``model_construct`` does, less its per-field default handling (a quarter of its cost;
    it showed in the per-turn cost of the rollout engine). Every field must be given, in
    declaration order; ``fields_set`` is what validation would record as explicitly set.

    >>> unvalidated(Timings, frozenset({"policy_s"}), policy_s=0.5, env_s=0.0) == Timings(policy_s=0.5)
    True
    """
    order = _FIELD_ORDER.get(cls)
    if order is None:
        order = _FIELD_ORDER[cls] = tuple(cls.__pydantic_fields__)
    if tuple(values) != order:  # the store writes a model's fields in the order it holds them
        raise TypeError(f"unvalidated({cls.__name__}) needs every field, in declaration order, got {list(values)}")
    return from_fields(cls, fields_set, values)


def from_fields(cls: type[M], fields_set: frozenset[str], values: dict[str, Any], /) -> M:
    """:func:`unvalidated` less its check of the field order, for a hot path whose dict display a test
    pins to the declaration order (``values`` becomes the model's ``__dict__`` as it is).

    >>> from_fields(Timings, frozenset({"policy_s"}), {"policy_s": 0.5, "env_s": 0.0}) == Timings(policy_s=0.5)
    True
    """
    m = _new(cls)
    _setattr(m, "__dict__", values)
    _setattr(m, "__pydantic_fields_set__", set(fields_set))
    _setattr(m, "__pydantic_extra__", None)
    _setattr(m, "__pydantic_private__", None)
    return m


class ToolCall(Model):
    """A parsed tool call: a name and its arguments as a JSON string. Immutable (see :class:`Action`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    arguments: str = "{}"
    id: str | None = None

    def args(self) -> Any:
        """The arguments decoded from JSON (raises ``ValueError`` on bad JSON)."""
        return json.loads(self.arguments)


class Action(Model):
    """What an agent does in one step: a tool call, or text that should contain one.

    ``text`` is the raw output of the policy (for LLM agents, the decoded completion);
    ``tool_call`` is the call the agent already parsed, if any. The environment
    parses ``text`` itself when ``tool_call`` is missing, so malformed output becomes
    a ``bad_call`` observation inside the environment, in one place.

    Immutable, like its :class:`ToolCall`: a row keeps the very action the agent returned, and the
    row's stored line may be written as soon as the row is made, so nothing may change it afterwards
    (build a new one, or ``model_copy(update=...)``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    text: str = ""
    tool_call: ToolCall | None = None

    @classmethod
    def call(cls, name: str, /, **arguments: Any) -> Action:
        """Build a well-formed tool-call action.

        >>> Action.call("finish", answer="42").tool_call.arguments
        '{"answer": "42"}'
        """
        return cls(tool_call=ToolCall(name=name, arguments=json.dumps(arguments, sort_keys=True)))


ErrorKind = Literal["no_tool_call", "bad_json", "unknown_tool", "invalid_arguments", "tool_error", "tool_crash"]


class PolicyVersion(Model):
    """Which weights sampled a turn: the trainer's optimizer step and a hash of the weights."""

    step: int = Field(description="Optimizer steps applied to the weights (0: the starting model).")
    weights_hash: str = Field(description="Short content hash of the weights that sampled.")


class TokenRecord(Model):
    """Exact token ids of one LLM turn, as the policy server received and returned them.

    ``prompt_ids`` is the full prompt of this turn; ``completion_ids`` what the policy
    sampled, with one ``logprob`` each. ``mask`` covers ``prompt_ids + completion_ids``
    and is 1 exactly for tokens the policy produced in this or an earlier turn of the
    episode (observation and template tokens are 0, never trained on).
    """

    prompt_ids: list[int]
    completion_ids: list[int]
    logprobs: list[float]
    mask: list[int]
    finish_reason: str | None = None
    policy_version: PolicyVersion | None = None
    """Set when a trainer updates the policy while it samples (see ``rowgym.trainers.rl``)."""


class Timings(Model):
    """Wall-clock seconds spent in the policy and in the environment for one step."""

    policy_s: float = 0.0
    env_s: float = 0.0


class StepRow(Model):
    """One step: the observation the agent saw, its action, what came back, the reward."""

    schema_version: int = SCHEMA_VERSION
    run_id: str
    episode_id: str
    group_id: str
    env_id: str
    env_version: str
    seed: int
    split: Split
    turn: int
    observation: str = Field(description="The state as the agent saw it before acting.")
    action: Action
    next_observation: str
    reward: float = Field(description="Local (per-step) reward, the weighted sum of the breakdown.")
    reward_breakdown: dict[str, float] = Field(default_factory=dict, description='Keyed "name@version".')
    bad_call: bool = False
    error_kind: ErrorKind | None = None
    repaired: bool = Field(False, description="A valid call that fixes the bad call just before it.")
    terminated: bool = False
    truncated: bool = False
    timings: Timings = Field(default_factory=Timings)
    tokens: TokenRecord | None = None


class Check(Model):
    """One test or check run by a verifier, with its outcome."""

    name: str
    passed: bool
    detail: str = ""


FailureKind = Literal["policy", "env", "sandbox", "grader", "timeout", "agent"]


class Failure(Model):
    """Why an episode did not finish normally, attributed to the part that failed."""

    kind: FailureKind
    reason: str


class Verdict(Model):
    """The verifier's final judgement of an episode."""

    reward: float
    success: bool
    verifier: str
    verifier_version: str
    breakdown: dict[str, float] = Field(default_factory=dict)
    checks: list[Check] = Field(default_factory=list)
    flags: list[str] = Field(default_factory=list, description="e.g. 'edited_tests' (reward-hacking guard).")


class PolicyInfo(Model):
    """Which policy produced the actions."""

    agent: str
    model: str | None = None
    revision: str | None = None
    sampling: dict[str, float | int | str | None] = Field(default_factory=dict)
    privileged: bool = Field(False, description="A scripted agent that read the task (never a policy's rows).")


class Episode(Model):
    """All rows of one episode and its final verdict."""

    schema_version: int = SCHEMA_VERSION
    run_id: str
    episode_id: str
    group_id: str
    sample_index: int = 0
    env_id: str
    env_version: str
    seed: int
    split: Split
    task_hash: str
    instruction: str = ""
    policy: PolicyInfo
    steps: list[StepRow] = Field(default_factory=list)
    verdict: Verdict | None = None
    failure: Failure | None = None
    reward_versions: dict[str, str] = Field(default_factory=dict)
    tools: str = Field("[]", description="The env's tool schemas as a JSON string.")
    started_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    duration_s: float = 0.0

    @property
    def final_reward(self) -> float:
        return self.verdict.reward if self.verdict else 0.0

    @property
    def success(self) -> bool:
        return bool(self.verdict and self.verdict.success and self.failure is None)

    @property
    def local_return(self) -> float:
        return sum(s.reward for s in self.steps)

    @property
    def n_bad_calls(self) -> int:
        return sum(s.bad_call for s in self.steps)


class ShardInfo(Model):
    """A sealed shard of a run and the content hash of its bytes."""

    name: str
    sha256: str
    n_episodes: int


class RunSource(Model):
    """The environment and seeds a run draws from."""

    env_id: str
    env_version: str
    split: Split
    seeds: list[int]
    seed_set_hash: str
    group_size: int = 1


class RunIdentity(Model):
    """Everything that changes what a run samples; a resume must match it exactly.

    The number of episodes is not part of it: seeds are drawn in a fixed order from
    ``split`` starting at ``seed_offset``, so a longer run's seeds extend a shorter one's
    (the store checks that prefix rule separately).
    """

    env_id: str
    env_version: str
    env_kwargs: dict[str, Any] = Field(default_factory=dict)
    split: Split
    seed_offset: int = 0
    group_size: int = 1
    agent: str
    agent_options: dict[str, Any] = Field(default_factory=dict,
                                          description="Every option of the agent, defaults included.")
    policy_model: str | None = None
    policy_revision: str | None = None
    reward_versions: dict[str, str] = Field(default_factory=dict)

    def hash(self) -> str:
        """A short content hash of the identity (canonical JSON)."""
        payload = json.dumps(self.model_dump(mode="json"), sort_keys=True, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def diff(self, new: RunIdentity) -> list[str]:
        """The fields that differ, as ``"name old -> new"`` (agent options by their bare name).

        >>> a = RunIdentity(env_id="e", env_version="0", split="train", agent="expert",
        ...                 agent_options={"noise": 0.0})
        >>> a.diff(a.model_copy(update={"agent_options": {"noise": 0.9}}))
        ['noise 0.0 -> 0.9']
        """
        out: list[str] = []
        old_d, new_d = self.model_dump(mode="json"), new.model_dump(mode="json")
        for name, old_v in old_d.items():
            new_v = new_d[name]
            if isinstance(old_v, dict) and isinstance(new_v, dict):
                prefix = "" if name == "agent_options" else f"{name}."
                for k in sorted(set(old_v) | set(new_v)):
                    a, b = old_v.get(k, _UNSET), new_v.get(k, _UNSET)
                    if a != b:
                        out.append(f"{prefix}{k} {_show(a)} -> {_show(b)}")
            elif old_v != new_v:
                out.append(f"{name} {_show(old_v)} -> {_show(new_v)}")
        return out


_UNSET = object()


def _show(v: Any) -> str:
    return "(unset)" if v is _UNSET else json.dumps(v, default=str)


class RunManifest(Model):
    """Provenance of one run: source, agent/policy, versions, shards."""

    schema_version: int = SCHEMA_VERSION
    run_id: str
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    updated_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    rowgym_version: str
    source: RunSource
    policy: PolicyInfo
    reward_versions: dict[str, str] = Field(default_factory=dict)
    processing: list[str] = Field(default_factory=list, description="Steps applied to the data, in order.")
    shards: list[ShardInfo] = Field(default_factory=list)
    status: Literal["running", "complete"] = "running"
    n_episodes: int = 0
    identity: RunIdentity | None = Field(None, description="What was sampled; None in runs written before it existed.")
    identity_hash: str | None = None
