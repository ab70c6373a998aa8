"""Token-in, token-out multi-turn prompts: past turns are never re-tokenised from text.

>>> conv = TokenConversation(tokenizer, system="You are...", tools=env.tools, first_user=obs)  # doctest: +SKIP
>>> ids = conv.prompt_ids                     # turn 0 prompt, rendered by the chat template once
>>> conv.add_completion(completion_ids, logprobs, finished=True)        # doctest: +SKIP
>>> conv.add_observation("tool result text")  # appends only the new tokens   # doctest: +SKIP

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

from dataclasses import dataclass, field
from typing import Any

from rowgym.rows import TokenRecord

_MARK = "\u2063ROWGYM_TURN_END\u2063"


def observation_segment(tokenizer: Any, observation: str, role: str = "tool") -> tuple[str, str]:
    """The template text that follows an assistant turn: (closing of that turn, tool message + next header).

    Rendered with a marker as the assistant's content; returns the text between the marker
    and the end, split at the end-of-turn token so a completion that already ended with it
    does not get a second one.
    """
    msgs = [{"role": "user", "content": "u"}, {"role": "assistant", "content": _MARK},
            {"role": role, "content": observation}]
    text = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    tail = text[text.rindex(_MARK) + len(_MARK):]
    eot = tokenizer.eos_token or ""
    if eot and tail.startswith(eot):
        return eot, tail[len(eot):]
    return "", tail


@dataclass
class TokenConversation:
    """The growing token sequence of one episode for one policy."""

    tokenizer: Any
    system: str
    tools: list[dict] | None
    first_user: str
    obs_role: str = "tool"
    prompt_ids: list[int] = field(default_factory=list)
    mask: list[int] = field(default_factory=list)
    """One entry per id in ``prompt_ids``: 1 where the policy produced the id."""

    def __post_init__(self) -> None:
        msgs = [{"role": "system", "content": self.system}, {"role": "user", "content": self.first_user}]
        ids = self.tokenizer.apply_chat_template(msgs, tools=self.tools or None, tokenize=True,
                                                 add_generation_prompt=True)
        if hasattr(ids, "keys"):  # some tokenizers return a BatchEncoding
            ids = ids["input_ids"]
        self.prompt_ids = list(ids)
        self.mask = [0] * len(self.prompt_ids)
        self.eos_id = self.tokenizer.convert_tokens_to_ids(self.tokenizer.eos_token)

    def record(self, completion_ids: list[int], logprobs: list[float], finish_reason: str | None) -> TokenRecord:
        """The token record of the turn that just produced ``completion_ids`` from ``prompt_ids``."""
        return TokenRecord(prompt_ids=list(self.prompt_ids), completion_ids=list(completion_ids),
                           logprobs=[float(x) for x in logprobs], mask=self.mask + [1] * len(completion_ids),
                           finish_reason=finish_reason)

    def add_completion(self, completion_ids: list[int]) -> None:
        self.prompt_ids += completion_ids
        self.mask += [1] * len(completion_ids)

    def add_observation(self, observation: str) -> None:
        """Append the closing of the assistant turn (if the policy did not sample it) and the observation."""
        close, rest = observation_segment(self.tokenizer, observation, self.obs_role)
        if close and (not self.prompt_ids or self.prompt_ids[-1] != self.eos_id):
            close_ids = self.tokenizer.encode(close, add_special_tokens=False)
            self.prompt_ids += close_ids
            self.mask += [0] * len(close_ids)
        new = self.tokenizer.encode(rest, add_special_tokens=False)
        self.prompt_ids += new
        self.mask += [0] * len(new)
