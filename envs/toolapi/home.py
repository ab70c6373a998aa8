"""Smart home: lights, thermostats and door locks; a small tool-API task family for training demos.

>>> import rowgym
>>> env = rowgym.make("rowgym/ToolAPI-Home-v0")
>>> obs, info = env.reset(seed=0)
>>> sorted(t["function"]["name"] for t in env.tools)
['finish', 'set_light', 'set_lock', 'set_thermostat']
>>> for call in env.task.gold:                      # the gold plan solves the task
...     obs, reward, terminated, truncated, info = env.step(call)
>>> terminated, info["verdict"].reward
(True, 1.0)
>>> env.close()

Each seed gives one instruction of one or two actions ("Turn on the kitchen lights and
lock the front door."), a house whose devices start in a state the instruction has to
change, and a gold plan of one or two tool calls plus ``finish``. The verifier compares
the final device states with the states the gold plan produces, and requires ``finish``.

Why it exists: the retail and airline prompts carry 13-14 tool schemas (about 2,400
tokens); a tiny random-init model cannot learn them in the minutes a CPU demo has. Here
the prompt is a few hundred tokens and every argument value is a word of the instruction.

Splits are by task content, not by seed: a task's content is the set of state changes
it asks for (its phrasing and the starting state of other devices are not part of it),
and its split is a hash of that content. So two seeds with the same goal are always in
the same split, and held-out tasks are combinations of actions that training never sees
(each single action does occur in training, inside other combinations).
"""

from __future__ import annotations

import json
import random
from typing import Any

from pydantic import Field

from rowgym.env import RowEnv
from rowgym.envs.toolapi.base import (
    FinishArgs,
    ToolAPITask,
    call,
    take_gold_step,
)
from rowgym.rewards.local import TOOLAPI_LOCAL, FirstSuccessCap, distinct_calls
from rowgym.rows import Check, ToolCall, Verdict
from rowgym.splits import HashSplits
from rowgym.tools import ToolArgs, ToolError, tool

ROOMS = ("kitchen", "bedroom", "bathroom", "office", "hallway", "garage", "study", "nursery")
DOORS = ("front", "back", "side", "garage")
TEMPS = tuple(range(16, 29))
FAMILY = "toolapi-home"


# ------------------------------------------------------------------------------- tasks
def _atom(rng: random.Random) -> tuple[str, dict[str, Any]]:
    """One state change: (tool name, arguments)."""
    kind = rng.choices(("light", "thermostat", "lock"), (0.4, 0.35, 0.25))[0]
    if kind == "light":
        return "set_light", {"room": rng.choice(ROOMS), "on": rng.random() < 0.5}
    if kind == "thermostat":
        return "set_thermostat", {"room": rng.choice(ROOMS), "celsius": rng.choice(TEMPS)}
    return "set_lock", {"door": rng.choice(DOORS), "locked": rng.random() < 0.5}


def _device(name: str, args: dict[str, Any]) -> str:
    return {"set_light": "light", "set_thermostat": "thermostat", "set_lock": "lock"}[name] + ":" + (
        args.get("room") or args["door"])


def goal_of(seed: int) -> list[tuple[str, dict[str, Any]]]:
    """The state changes seed ``seed`` asks for, in instruction order (pure function of the seed)."""
    rng = random.Random(f"{FAMILY}:goal:{seed}")
    first = _atom(rng)
    if rng.random() < 0.35:
        return [first]
    while True:  # a second change, on another device
        second = _atom(rng)
        if _device(*second) != _device(*first):
            return [first, second]


def goal_key(goal: list[tuple[str, dict[str, Any]]]) -> str:
    """Canonical content of a goal: the set of changes, order and phrasing left out."""
    return json.dumps(sorted(json.dumps([n, a], sort_keys=True) for n, a in goal))


def _goal_content(seed: int) -> str:
    return goal_key(goal_of(seed))


_PHRASES = {
    ("set_light", True): ("turn on the {room} lights", "switch the {room} light on", "put the lights on in the {room}"),
    ("set_light", False): ("turn off the {room} lights", "switch the {room} light off",
                           "put the lights out in the {room}"),
    ("set_thermostat", None): ("set the {room} thermostat to {celsius}", "make it {celsius} degrees in the {room}",
                               "heat the {room} to {celsius} degrees"),
    ("set_lock", True): ("lock the {door} door", "make sure the {door} door is locked"),
    ("set_lock", False): ("unlock the {door} door", "open the lock of the {door} door"),
}


def _phrase(rng: random.Random, name: str, args: dict[str, Any]) -> str:
    flag = None if name == "set_thermostat" else args.get("on", args.get("locked"))
    return rng.choice(_PHRASES[(name, flag)]).format(**args)


# --------------------------------------------------------------------------- the tools
class LightArgs(ToolArgs):
    room: str
    on: bool


class ThermostatArgs(ToolArgs):
    room: str
    celsius: int = Field(ge=16, le=28)


class LockArgs(ToolArgs):
    door: str
    locked: bool


class HomeEnv(RowEnv[ToolAPITask]):
    """Smart-home control over an in-memory device table; graded by final device states."""

    family = FAMILY
    version = "0"
    verifier = "home_state_match"
    verifier_version = "1"
    # split by a hash of the goal's content, so equal goals always share a split
    splits = HashSplits(FAMILY, key=_goal_content)
    default_max_turns = 8
    local_rubric = TOOLAPI_LOCAL  # valid_call@2: first successes only, capped at the gold plan's size
    system_prompt = "You control a smart home. Make the changes the user asks for, then call finish."

    def __init__(self, **kw: Any):
        super().__init__(**kw)
        self.state: dict[str, Any] = {}
        self.finished = False
        self._gold_left: list[ToolCall] = []
        self._firsts = FirstSuccessCap(0)

    # ------------------------------------------------------------------ task hooks
    def make_task(self, seed: int) -> ToolAPITask:
        goal = goal_of(seed)
        rng = random.Random(f"{FAMILY}:task:{seed}")
        text = " and ".join(_phrase(rng, n, a) for n, a in goal)
        initial: dict[str, Any] = {}
        for room in ROOMS:
            initial[f"light:{room}"] = rng.random() < 0.5
            initial[f"thermostat:{room}"] = rng.choice(TEMPS)
        for door in DOORS:
            initial[f"lock:{door}"] = rng.random() < 0.5
        for name, args in goal:  # every requested change is a real change
            dev = _device(name, args)
            want = args.get("on", args.get("celsius", args.get("locked")))
            if initial[dev] == want:
                initial[dev] = (not want) if isinstance(want, bool) else rng.choice([t for t in TEMPS if t != want])
        return ToolAPITask(domain="home", kind="+".join(n for n, _ in goal), seed=seed,
                           instruction=text[0].upper() + text[1:] + ".",
                           gold=[call(n, **a) for n, a in goal] + [call("finish", answer="")],
                           facts={"initial": initial})

    def task_content(self, task: ToolAPITask) -> Any:
        return {"domain": "home", "goal": goal_key(goal_of(task.seed))}

    async def setup(self, task: ToolAPITask) -> str:
        self.state = dict(task.facts["initial"])
        self.finished = False
        self._gold_left = list(task.gold)
        self._firsts = FirstSuccessCap(len(distinct_calls(task.gold)))
        return f"{task.instruction} When done, call finish."

    async def grade(self) -> Verdict:
        assert self.task is not None
        expected = _apply(self.task.facts["initial"], self.task.gold)
        wrong = sorted(k for k in expected if self.state.get(k) != expected[k])
        checks = [Check(name="devices_match", passed=not wrong, detail=f"wrong: {wrong}" if wrong else ""),
                  Check(name="finished", passed=self.finished, detail="" if self.finished else "finish never called")]
        return self.verdict(checks)

    # ---------------------------------------------------------------------- tools
    def _progress(self, name: str, args: ToolArgs) -> None:
        """Every tool's last step on success: ``first_success`` (valid_call@2) and subgoal progress."""
        self._firsts.report_call(self, name, args)
        if take_gold_step(self._gold_left, name, json.loads(call(name, **args.model_dump()).arguments)):
            self.signal("subgoal", 1.0 / max(1, len(self.task.gold)))

    @staticmethod
    def _known(value: str, allowed: tuple[str, ...], what: str) -> str:
        v = value.strip().lower()
        if v not in allowed:
            raise ToolError(f"unknown {what} {value!r}; {what}s: {', '.join(allowed)}")
        return v

    @tool
    async def set_light(self, args: LightArgs) -> str:
        """Turn the light of a room on or off."""
        room = self._known(args.room, ROOMS, "room")
        self.state[f"light:{room}"] = args.on
        self._progress("set_light", args)
        return f"The {room} light is {'on' if args.on else 'off'}."

    @tool
    async def set_thermostat(self, args: ThermostatArgs) -> str:
        """Set the thermostat of a room, in degrees Celsius."""
        room = self._known(args.room, ROOMS, "room")
        self.state[f"thermostat:{room}"] = args.celsius
        self._progress("set_thermostat", args)
        return f"The {room} thermostat is set to {args.celsius}."

    @tool
    async def set_lock(self, args: LockArgs) -> str:
        """Lock or unlock a door."""
        door = self._known(args.door, DOORS, "door")
        self.state[f"lock:{door}"] = args.locked
        self._progress("set_lock", args)
        return f"The {door} door is {'locked' if args.locked else 'unlocked'}."

    @tool(terminal=True)
    async def finish(self, args: FinishArgs) -> str:
        """End the conversation."""
        self.finished = True
        self._progress("finish", args)
        return "Conversation ended."


def _apply(initial: dict[str, Any], gold: list[ToolCall]) -> dict[str, Any]:
    """The device states after the gold plan."""
    state = dict(initial)
    for c in gold:
        a = c.args()
        if c.name == "set_light":
            state[f"light:{a['room']}"] = a["on"]
        elif c.name == "set_thermostat":
            state[f"thermostat:{a['room']}"] = a["celsius"]
        elif c.name == "set_lock":
            state[f"lock:{a['door']}"] = a["locked"]
    return state
