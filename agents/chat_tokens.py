"""Token-in, token-out multi-turn prompts: past turns are never re-tokenised from text.

>>> conv = TokenConversation(tokenizer, system="You are...", tools=env.tools, first_user=obs)  # doctest: +SKIP
>>> ids = conv.prompt_ids          # turn 0 prompt, rendered by the chat template once  # doctest: +SKIP
>>> record = conv.record(completion_ids, logprobs, "stop")   # the turn's TokenRecord  # doctest: +SKIP
>>> conv.add_completion(completion_ids)                                               # doctest: +SKIP
>>> conv.add_observation("tool result text")  # appends only the new tokens           # doctest: +SKIP

The first prompt is the chat template applied to (system + tools, first user message).
After that, each turn's prompt is the previous prompt + the ids the policy sampled + the
ids of *only the new segment*: the end of the assistant turn, the tool response and the
next assistant header. The segment's text comes from the same chat template (rendered
around a marker, so templates that rewrite earlier assistant turns, such as Qwen3's
``<think>`` handling, cannot change ids already sampled), and only that segment is
tokenised. Hence the ids a trainer sees are exactly the ids the policy sampled.

The mask marks which ids the policy produced (1) versus template and observation ids (0);
it is what GRPO's ``env_mask`` needs to keep observations out of the loss.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from rowgym.rows import TokenRecord, unvalidated

_MARK = "\u2063ROWGYM_TURN_END\u2063"
_SLOT = "\u2063ROWGYM_SLOT\u2063"
_RECORD_SET = frozenset({"prompt_ids", "completion_ids", "logprobs", "mask", "finish_reason"})


def observation_segment(tokenizer: Any, observation: str, role: str = "tool") -> tuple[str, str]:
    """The template text that follows an assistant turn: (closing of that turn, tool message + next header).

    Rendered with a marker as the assistant's content; returns the text between the marker
    and the end, split at the end-of-turn token so a completion that already ended with it
    does not get a second one. The template is rendered once per (tokenizer, role) around a
    slot for the observation, and the observation is substituted into the cached pieces
    (checked once against a full render; templates that transform the content fall back to
    rendering every time).
    """
    pieces = _template_pieces(tokenizer).observation(role)
    if pieces is None:
        return _render_observation_segment(tokenizer, observation, role)
    close, before, after = pieces
    return close, before + observation + after


def _render_observation_segment(tokenizer: Any, observation: str, role: str) -> tuple[str, str]:
    msgs = [{"role": "user", "content": "u"}, {"role": "assistant", "content": _MARK},
            {"role": role, "content": observation}]
    text = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    tail = text[text.rindex(_MARK) + len(_MARK):]
    eot = tokenizer.eos_token or ""
    if eot and tail.startswith(eot):
        return eot, tail[len(eot):]
    return "", tail


def _as_ids(ids: Any) -> list[int]:
    if hasattr(ids, "keys"):  # some tokenizers return a BatchEncoding
        ids = ids["input_ids"]
    return list(ids)


def _render_first_prompt(tokenizer: Any, system: str, tools: list[dict] | None, first_user: str) -> list[int]:
    msgs = [{"role": "system", "content": system}, {"role": "user", "content": first_user}]
    return _as_ids(tokenizer.apply_chat_template(msgs, tools=tools or None, tokenize=True,
                                                 add_generation_prompt=True))


class _TemplatePieces:
    """Per-tokenizer cache of rendered template pieces (rendering and tokenising the system
    prompt + tool schemas costs ~0.1 s on a small CPU; episodes share them)."""

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        self._obs: dict[str, tuple[str, str, str] | None] = {}
        self._first: dict[tuple[str, str], tuple[list[int], str, str] | None] = {}
        self._encoded: dict[str, tuple[int, ...]] = {}
        self._rust = getattr(tokenizer, "backend_tokenizer", None)

    def observation(self, role: str) -> tuple[str, str, str] | None:
        if role not in self._obs:
            close, rest = _render_observation_segment(self.tokenizer, _SLOT, role)
            pieces = None
            if rest.count(_SLOT) == 1:
                before, after = rest.split(_SLOT)
                probe = "  probe {\"a\": 1}\n\n"
                if _render_observation_segment(self.tokenizer, probe, role) == (close, before + probe + after):
                    pieces = (close, before, after)
            self._obs[role] = pieces
        return self._obs[role]

    def first_prompt(self, system: str, tools: list[dict] | None, first_user: str,
                     tools_json: str | None = None) -> list[int]:
        """Ids of the first prompt: the cached system+tools prefix ids, then the user turn's ids.

        The split is at the special token that opens the user turn; a tokenizer never merges
        across a special token, so the two encodings concatenate to the full one. ``tools_json``:
        ``tools`` already dumped with sorted keys (the episode context's), the cache key without
        dumping them again (~150 us per episode for 14 tool schemas).
        """
        if tools_json is None:
            tools_json = json.dumps(tools, sort_keys=True)
        key = (system, tools_json if tools else "")
        if key not in self._first:
            self._first[key] = self._split_first(system, tools)
        cached = self._first[key]
        if cached is None:
            return _render_first_prompt(self.tokenizer, system, tools, first_user)
        prefix_ids, before, after = cached
        return prefix_ids + self.encode(before + first_user + after)

    def _split_first(self, system: str, tools: list[dict] | None) -> tuple[list[int], str, str] | None:
        tok = self.tokenizer
        msgs = [{"role": "system", "content": system}, {"role": "user", "content": _SLOT}]
        text = tok.apply_chat_template(msgs, tools=tools or None, tokenize=False, add_generation_prompt=True)
        if text.count(_SLOT) != 1:
            return None
        head, after = text.split(_SLOT)
        # cut before the last special/added token (e.g. "<|im_start|>" of the user turn)
        cut = max((head.rfind(t) for t in tok.get_added_vocab() if len(t) > 1), default=-1)
        if cut <= 0:
            return None
        prefix, before = head[:cut], head[cut:]
        prefix_ids = self.encode(prefix)
        probe = "probe user  \n {\"x\": 1}"
        if prefix_ids + self.encode(before + probe + after) != _render_first_prompt(tok, system, tools, probe):
            return None
        return prefix_ids, before, after

    def encode(self, text: str) -> list[int]:
        """Ids of ``text`` without added BOS/EOS (the Rust tokenizer directly when there is one)."""
        hit = self._encoded.get(text)
        if hit is not None:
            return list(hit)
        if self._rust is not None:
            ids = self._rust.encode(text, add_special_tokens=False).ids
        else:
            ids = _as_ids(self.tokenizer.encode(text, add_special_tokens=False))
        if len(text) <= 512:  # short, often repeated segments ("Error: ...", template closings)
            if len(self._encoded) >= 4096:
                self._encoded.clear()
            self._encoded[text] = tuple(ids)
        return list(ids)


_PIECES: dict[int, _TemplatePieces] = {}


def _template_pieces(tokenizer: Any) -> _TemplatePieces:
    p = _PIECES.get(id(tokenizer))
    if p is None or p.tokenizer is not tokenizer:
        p = _PIECES[id(tokenizer)] = _TemplatePieces(tokenizer)
    return p


@dataclass
class TokenConversation:
    """The growing token sequence of one episode for one policy."""

    tokenizer: Any
    system: str
    tools: list[dict] | None
    first_user: str
    obs_role: str = "tool"
    tools_json: str | None = None
    """``tools`` dumped with sorted keys, if the caller has it (the episode context does)."""
    prompt_ids: list[int] = field(default_factory=list)
    mask: list[int] = field(default_factory=list)
    """One entry per id in ``prompt_ids``: 1 where the policy produced the id."""

    def __post_init__(self) -> None:
        self._pieces = _template_pieces(self.tokenizer)
        self.prompt_ids = self._pieces.first_prompt(self.system, self.tools, self.first_user, self.tools_json)
        self.mask = [0] * len(self.prompt_ids)
        self.eos_id = self.tokenizer.convert_tokens_to_ids(self.tokenizer.eos_token)

    def record(self, completion_ids: list[int], logprobs: list[float], finish_reason: str | None) -> TokenRecord:
        """The token record of the turn that just produced ``completion_ids`` from ``prompt_ids``."""
        # built without re-validating: every field is a fresh list of ints/floats made here
        return unvalidated(TokenRecord, _RECORD_SET, prompt_ids=self.prompt_ids[:], completion_ids=list(completion_ids),
                           logprobs=[float(x) for x in logprobs], mask=self.mask + [1] * len(completion_ids),
                           finish_reason=finish_reason, policy_version=None)

    def add_completion(self, completion_ids: list[int]) -> None:
        self.prompt_ids += completion_ids
        self.mask += [1] * len(completion_ids)

    def add_observation(self, observation: str) -> None:
        """Append the closing of the assistant turn (if the policy did not sample it) and the observation."""
        close, rest = observation_segment(self.tokenizer, observation, self.obs_role)
        if close and (not self.prompt_ids or self.prompt_ids[-1] != self.eos_id):
            close_ids = self._pieces.encode(close)
            self.prompt_ids += close_ids
            self.mask += [0] * len(close_ids)
        new = self._pieces.encode(rest)
        self.prompt_ids += new
        self.mask += [0] * len(new)


