"""leakage@1: no quarantined task, and no prompt or answer that nearly duplicates quarantined text.

Three checks per candidate:

* ``quarantined_task``: its task content hash (re-derived from env id + seed) is quarantined;
* ``prompt_near_duplicate``: its first user message (the env's fixed prefix and suffix around
  an instruction stripped) has word-3-gram Jaccard >= ``prompt_threshold`` with a quarantined
  prompt *and* contains every rare word of it (names, ids, values: words in under 20% of that
  source's quarantined texts);
* ``answer_near_duplicate``: the same for its assistant calls against quarantined gold calls,
  at ``answer_threshold``;
* ``message_leak``: *each* message on its own (the system message, the first user message unless it
  is the env's own rendering of the row's seed, every later user, tool and assistant message, an
  assistant message's text and tool calls together) *contains* a quarantined prompt (at least
  ``prompt_threshold`` of its word 3-grams) or gold answer (``answer_threshold``), with every rare word
  of it; and the assistant turns taken together contain a quarantined prompt (a task cut into pieces,
  a turn each). Containment, not Jaccard: the rest of a long conversation, or padding
  around the copied text, does not dilute it. A held-out task and its solution written into a
  later turn (a second user message, a "bad call" of free text the env answers with a fixed error,
  a tool reply) is found this way. Quarantined texts of fewer than 4 word 3-grams are left to the
  whole-prompt / whole-answer checks (a short call is contained in too many honest turns).

Templated families make train and held-out tasks textually close by design ("Put the lights
out in the kitchen." vs "... in the bedroom."), and the rare-word rule tells those apart from
a rewording of one held-out task. A prompt that is exactly the env's own first observation of
a verified train seed is the env's rendering of a train task: its split is guaranteed by the
content hash, and a text match with a quarantined sibling is counted in the report
(``template_siblings``), not rejected. Every other prompt is checked in full, and a match with an
eval file is always a rejection.
"""

from __future__ import annotations

from typing import Any

from rowgym.trainers.gates.base import Candidate, Gate, GateContext, Rejection
from rowgym.trainers.gates.minhash import ContainmentIndex, NearDupIndex, normalize
from rowgym.trainers.gates.quarantine import Quarantine


def message_text(m: dict[str, Any]) -> str:
    """A message's text and its tool calls (``name arguments``), one a line."""
    parts = [str(m.get("content") or "")]
    for call in m.get("tool_calls") or []:
        fn = (call.get("function") or {}) if isinstance(call, dict) else {}
        parts.append(f"{fn.get('name', '')} {fn.get('arguments', '')}")
    return "\n".join(parts)


class LeakageGate(Gate):
    name = "leakage"
    version = "1"

    def __init__(self, quarantine: Quarantine, *, prompt_threshold: float = 0.5, answer_threshold: float = 0.8):
        self.q = quarantine
        self.prompt_threshold, self.answer_threshold = prompt_threshold, answer_threshold
        self._hashes = quarantine.hashes
        # 64 bands of 2 rows: candidates down to a Jaccard of ~0.2; every hit is confirmed exactly
        self._prompts = NearDupIndex(prompt_threshold, num_perm=128, bands=64)
        self._answers = NearDupIndex(answer_threshold, num_perm=128, bands=64)
        self._keys: dict[tuple[str, str], frozenset[str]] = {}
        self._entries: dict[str, Any] = {}
        texts: dict[str, list[tuple[str, str]]] = {"prompt": [], "answer": []}
        for entries in quarantine.by_source().values():
            for side, index in (("prompt", self._prompts), ("answer", self._answers)):
                for e, words in zip(entries, quarantine.key_words(entries, side), strict=True):
                    k = f"{e.source}|{e.split}|{e.seed}"
                    self._entries[k] = e
                    self._keys[(side, k)] = words
                    index.add(k, getattr(e, side))
                    texts[side].append((k, getattr(e, side)))
        # per message: is a quarantined text contained in it (whatever surrounds it)
        self._contained = {"prompt": ContainmentIndex(prompt_threshold).build(texts["prompt"]),
                           "answer": ContainmentIndex(answer_threshold).build(texts["answer"])}
        self.template_siblings = 0

    def params(self) -> dict[str, Any]:
        return {"prompt_threshold": self.prompt_threshold, "answer_threshold": self.answer_threshold,
                "rare_word_max_df": 0.2, "n_quarantined": len(self.q.entries), **self._prompts.params()}

    def check(self, cands: list[Candidate], ctx: GateContext) -> list[Rejection]:
        out = []
        for c in cands:
            problem = self._problem(c, ctx)
            if problem is not None:
                out.append(self.reject(c, *problem))
        return out

    def _hit(self, side: str, index: NearDupIndex, text: str) -> tuple[str, float] | None:
        words = set(normalize(text).split())
        for k, sim in index.query(text):
            if self._keys[(side, k)] <= words:
                return k, sim
        return None

    def _problem(self, c: Candidate, ctx: GateContext, *, whole_answer: bool = True) -> tuple[str, str] | None:
        th = None
        if c.env_id and c.seed is not None:
            try:
                th = ctx.env(c.env_id).unwrapped.task_hash(c.seed)
            except Exception:
                th = None
        for h in {th, c.row.get("task_hash")} - {None}:
            if h in self._hashes:
                e = next(e for e in self.q.entries if e.task_hash == h)
                return "quarantined_task", f"task hash {h} is {e.source} {e.split} seed {e.seed}"
        prompt = self._strip(c, ctx)
        hit = self._hit("prompt", self._prompts, prompt)
        if hit is not None:
            e = self._entries[hit[0]]
            if e.source == c.env_id and self._env_rendered(c, ctx):
                self.template_siblings += 1
            else:
                return "prompt_near_duplicate", (f"prompt ~ {e.source} {e.split} seed {e.seed} (Jaccard {hit[1]:.2f}): "
                                                 f"{e.prompt[:160]!r}")
        hit = self._hit("answer", self._answers, c.answer) if whole_answer else None
        if hit is not None:
            e = self._entries[hit[0]]
            return "answer_near_duplicate", (f"answer ~ {e.source} {e.split} seed {e.seed} (Jaccard {hit[1]:.2f}): "
                                             f"{e.answer[:160]!r}")
        return self.message_problem(c, ctx)

    def message_problem(self, c: Candidate, ctx: GateContext) -> tuple[str, str] | None:
        """``message_leak`` when one message on its own (the system message included) contains a quarantined prompt
        or gold answer, or the assistant's turns taken together (a quarantined task cut into pieces, one a turn)
        contain a quarantined prompt."""
        first = True
        for i, m in enumerate(c.messages):
            role = m.get("role")
            found = self._contains(message_text(m))
            if found is not None:
                e, side, share = found
                if not (first and role == "user" and e.source == c.env_id and self._env_rendered(c, ctx)):
                    return "message_leak", (f"message {i} ({role}) contains {share:.0%} of the {side} of {e.source} "
                                            f"{e.split} seed {e.seed}: {getattr(e, side)[:160]!r}")
                # else the env's own rendering of this train seed: a template sibling (see above)
            if role == "user":
                first = False
        # a task's prompt only: a short gold answer (Home's "set_lock front locked, finish") can equal an honest
        # train episode's calls, which taken together would match it
        turns = [message_text(m) for m in c.messages if m.get("role") == "assistant"]
        found = self._contains(" ".join(turns), sides=("prompt",)) if len(turns) > 1 else None
        if found is not None:
            e, side, share = found
            return "message_leak", (f"the {len(turns)} assistant turns together contain {share:.0%} of the {side} of "
                                    f"{e.source} {e.split} seed {e.seed}: {getattr(e, side)[:160]!r}")
        return None

    def _contains(self, text: str, sides: tuple[str, ...] = ("prompt", "answer")) -> tuple[Any, str, float] | None:
        """The first quarantined entry ``text`` contains (most of its phrases and all its rare words), or None."""
        for side in sides:
            words: set[str] | None = None
            for k, share in self._contained[side].query(text):
                words = set(normalize(text).split()) if words is None else words
                if self._keys[(side, k)] <= words:
                    return self._entries[k], side, share
        return None

    @staticmethod
    def _env_rendered(c: Candidate, ctx: GateContext) -> bool:
        if not c.env_id or c.seed is None:
            return False
        try:
            return c.prompt == ctx.first_observation(c.env_id, c.seed)
        except Exception:
            return False

    @staticmethod
    def _strip(c: Candidate, ctx: GateContext) -> str:
        """The prompt without the env's fixed text around the instruction (measured on the row's own seed)."""
        text = c.prompt
        if not c.env_id or c.seed is None:
            return text
        try:
            obs = ctx.first_observation(c.env_id, c.seed)
            instr = ctx.env(c.env_id).unwrapped.instruction(ctx.task(c.env_id, c.seed))
        except Exception:
            return text
        if not instr or instr not in obs:
            return text
        pre, _, post = obs.partition(instr)
        if pre and text.startswith(pre):
            text = text[len(pre):]
        if post and text.endswith(post):
            text = text[: -len(post)]
        return text
