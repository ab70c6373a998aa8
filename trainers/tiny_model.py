"""Build a tiny random-init Qwen3 model with an offline-trained tokenizer.

No model can be downloaded here, yet tests, CI and the demo need a real model to
serve with vLLM and to train with TRL. This module builds one from nothing in a few
seconds: a random Qwen3-architecture network, a byte-level BPE tokenizer trained on
a corpus generated in-process (JSON, tool calls, English words, digits), and TRL's
bundled Qwen3 chat template, so that TRL recognises the template and vLLM's
``hermes`` tool-call parser finds ``<tool_call>`` tokens.

>>> from rowgym.trainers.tiny_model import build_tiny_model
>>> path = build_tiny_model("/tmp/tiny-qwen3", seed=0)   # doctest: +SKIP
>>> from transformers import AutoModelForCausalLM
>>> model = AutoModelForCausalLM.from_pretrained(path)   # doctest: +SKIP

The same ``seed`` gives byte-identical weight and tokenizer files. The tokenizer
does not depend on the seed (one vocabulary for every tiny model, so token ids are
comparable across seeds); the seed only sets the weights.

torch, transformers, tokenizers and trl are imported lazily: the rest of rowgym
must import without the ``train`` extra.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
from dataclasses import dataclass
from pathlib import Path

# Bump when the build changes in a way the params below do not capture; cached
# models with another version are rebuilt. 4: the env corpus takes train-split seeds only
# (3 read seeds 0..N-1 of every split, so dev and held-out task text shaped the vocabulary).
BUILDER_VERSION = 4
BUILD_INFO_FILE = "rowgym_build.json"
ARCHITECTURES = ("qwen3", "llama")
"""The networks :class:`TinyModelConfig` can build (``architecture``)."""

# Special tokens in vocabulary order (ids 0..8), as in Qwen3's tokenizer. The first
# three are "special" (skipped when decoding with skip_special_tokens=True); the
# rest are ordinary added tokens, as in Qwen3, so that vLLM's hermes tool parser
# still sees "<tool_call>" in the decoded text.
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
ADDED_TOKENS = ("<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>", "<think>", "</think>")

# Qwen2/3's pre-tokenizer split, with one change: a word never carries the character
# before it. Qwen splits digits one by one so that numbers tokenise the same wherever
# they appear; here letters get the same treatment at word level, so "kitchen" is the
# same token in "turn on the kitchen lights" and in {"room": "kitchen"} (Qwen would make
# the first " kitchen", another id). A tiny model copies an identical id far more easily
# than it learns a mapping per word (measured in trainers/pretrain.py's docstring).
_QWEN_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)


@dataclass(frozen=True)
class TinyModelConfig:
    """Build parameters of the tiny model; their hash keys the on-disk cache.

    Attributes:
        seed: Seed of the weight initialisation.
        vocab_size: Target BPE vocabulary size, special tokens included.
        hidden_size: Width of the residual stream.
        intermediate_size: Width of the MLP.
        num_hidden_layers: Number of decoder layers.
        num_attention_heads: Query heads.
        num_key_value_heads: Key/value heads (grouped-query attention).
        head_dim: Per-head width; vLLM's CPU attention backend needs 64.
        architecture: ``qwen3`` (the default) or ``llama``: the same network without Qwen3's
            normalisation of each head's queries and keys. Measured on repeated random token
            sequences (2 layers, batch 64): the Llama network forms an induction head (copies the
            token that followed the current one last time) within 300 steps, loss 7.4 -> 0.1 nats,
            while the Qwen3 network was still at 4.7 after 1,500 (docs/learn.md). A task that copies
            ids named by a key needs that head.
        max_position_embeddings: Longest context the model accepts.
        corpus_lines: Size of the generated tokenizer corpus.
        env_corpus_seeds: Train-split seeds per built-in tool-API env whose text joins the
            tokenizer corpus (in-domain words become single tokens, which a tiny model can
            copy). Never dev or held-out seeds: see :func:`tokenizer_corpus`.
    """

    seed: int = 0
    vocab_size: int = 1536
    hidden_size: int = 128
    intermediate_size: int = 256
    num_hidden_layers: int = 2
    num_attention_heads: int = 2
    num_key_value_heads: int = 1
    head_dim: int = 64
    architecture: str = "qwen3"
    max_position_embeddings: int = 4096
    corpus_lines: int = 4000
    env_corpus_seeds: int = 300

    def params_hash(self, chat_template: str) -> str:
        """Hash of everything that determines the built files."""
        blob = json.dumps(
            {"builder": BUILDER_VERSION, "params": dataclasses.asdict(self), "template": chat_template},
            sort_keys=True,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def default_model_dir() -> Path:
    """Where the default tiny model lives: ``${ROWGYM_CACHE:-~/.cache/rowgym}/models/tiny-qwen3``."""
    cache = os.environ.get("ROWGYM_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "rowgym")
    return Path(cache) / "models" / "tiny-qwen3"


def trl_qwen3_chat_template() -> str:
    """Return TRL's bundled Qwen3 chat template text, byte for byte.

    TRL matches templates by string equality (``add_response_schema``,
    ``get_training_chat_template``), so the text is read from the installed TRL
    rather than copied into this repo, where it could drift from TRL's.
    """
    from trl.chat_template_utils import qwen3_chat_template

    return qwen3_chat_template


# --------------------------------------------------------------------------- corpus

_WORDS = (
    "the a an and or not of to in on for with from by at as is are was were be been has have had do does "
    "did will would can could should may might must this that these those it its you your we our they their "
    "he she his her i me my what which who when where why how all any some each every no yes ok please "
    "thanks hello sorry here there then than so if else because about after before again between into "
    "over under up down out off more most less few many much one two three four five six seven eight "
    "nine ten first last next new old good bad best better right wrong true false null none error "
    "user assistant system tool function call calls result results response request name names value "
    "values type types string integer number boolean object array list dict key keys id ids arguments "
    "parameters properties required description enum default items format date time price total amount "
    "quantity order orders cart product products item search query click page button link text input "
    "submit form select option filter sort buy add remove update cancel confirm book booking flight "
    "flights airline seat seats passenger passengers reservation ticket city airport from origin "
    "destination departure arrival customer account email phone address payment refund status pending "
    "shipped delivered returned balance user_id order_id product_id flight_id reservation_id get set "
    "find check list create delete edit open close read write run test tests pass fail failed passed "
    "file files path line lines code patch diff repo repository branch commit import def class return "
    "self print assert raise except try yield async await lambda python json yaml data task goal done "
    "step steps observation action reward answer question think reasoning final message content role "
    "weather temperature search_products add_to_cart checkout get_order cancel_order book_flight "
    "get_user_details list_flights update_address calculator multiply divide subtract sum count"
).split()

_TYPES = ("string", "integer", "number", "boolean")

# Text the Qwen3 template wraps around the tool list (see trl/chat_templates/qwen3.jinja).
_TOOLS_PREAMBLE = (
    "<|im_start|>system\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\nTOOLS\n</tools>\n\n"
    "For each function call, return a json object with function name and arguments within "
    "<tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": "
    "<args-json-object>}\n</tool_call><|im_end|>\n"
)


def _rand_value(rng: random.Random, kind: str) -> object:
    if kind == "integer":
        return rng.randint(0, 10 ** rng.randint(1, 6))
    if kind == "number":
        return round(rng.uniform(0, 1000), rng.randint(0, 2))
    if kind == "boolean":
        return rng.random() < 0.5
    prefix = rng.choice(("ORD-", "USR-", "FL", "P", "", "", ""))
    if prefix:
        return f"{prefix}{rng.randint(0, 99999)}"
    return " ".join(rng.choices(_WORDS, k=rng.randint(1, 4)))


def _rand_ident(rng: random.Random) -> str:
    return "_".join(rng.choices(_WORDS, k=rng.randint(1, 3))).replace("-", "_")


def _rand_tool(rng: random.Random) -> dict:
    props = {_rand_ident(rng): {"type": rng.choice(_TYPES), "description": " ".join(rng.choices(_WORDS, k=4))}
             for _ in range(rng.randint(1, 4))}
    return {
        "type": "function",
        "function": {
            "name": _rand_ident(rng),
            "description": " ".join(rng.choices(_WORDS, k=rng.randint(3, 10))).capitalize() + ".",
            "parameters": {"type": "object", "properties": props, "required": sorted(props)[:1]},
        },
    }


def _corpus_line(rng: random.Random) -> str:
    """One training text, shaped like what the chat template renders."""
    kind = rng.randrange(7)
    if kind == 6:  # the template's own tool preamble, which every tool prompt carries
        return _TOOLS_PREAMBLE.replace("TOOLS", json.dumps(_rand_tool(rng)))
    if kind == 0:  # a tool schema, as the template renders it (tojson)
        return json.dumps(_rand_tool(rng))
    if kind == 1:  # a tool call, exactly as the template and the hermes parser expect
        tool = _rand_tool(rng)["function"]
        args = {k: _rand_value(rng, v["type"]) for k, v in tool["parameters"]["properties"].items()}
        return f'<tool_call>\n{{"name": "{tool["name"]}", "arguments": {json.dumps(args)}}}\n</tool_call><|im_end|>'
    if kind == 2:  # a tool response
        obj = {_rand_ident(rng): _rand_value(rng, rng.choice(_TYPES)) for _ in range(rng.randint(1, 5))}
        return f"<|im_start|>user\n<tool_response>\n{json.dumps(obj)}\n</tool_response><|im_end|>"
    if kind == 3:  # English-ish prose with numbers
        words = rng.choices(_WORDS, k=rng.randint(5, 25))
        words.insert(rng.randrange(len(words)), str(rng.randint(0, 100000)))
        return " ".join(words).capitalize() + rng.choice((".", "?", "!", ":"))
    if kind == 4:  # a user or assistant turn with thinking
        role = rng.choice(("user", "assistant", "system"))
        body = " ".join(rng.choices(_WORDS, k=rng.randint(3, 15)))
        if role == "assistant":
            body = f"<think>\n{body}\n</think>\n\n" + " ".join(rng.choices(_WORDS, k=5))
        return f"<|im_start|>{role}\n{body}<|im_end|>\n<|endoftext|>"
    # a little code, for the repo-patching env
    name, arg = _rand_ident(rng), rng.choice(_WORDS)
    return f"def {name}({arg}):\n    return {arg} + {rng.randint(0, 99)}\n\nassert {name}({rng.randint(0, 9)}) == {rng.randint(0, 99)}\n"


def generate_corpus(n_lines: int, seed: int = 1234, env_seeds: int = 0) -> list[str]:
    """Return deterministic corpus texts (independent of the model seed).

    ``n_lines`` generic texts, plus, with ``env_seeds`` > 0, in-domain text from rowgym's
    own tool-API environments (first observations, tool schemas and gold tool calls of
    the first that many *train-split* seeds each) — what a tokenizer for this domain
    should compress well, so that words an agent must copy (room names, ids) are few
    tokens. Dev and held-out tasks never enter it: a vocabulary shaped by held-out text
    is a leak no row-level guard sees.
    """
    rng = random.Random(seed)
    return [_corpus_line(rng) for _ in range(n_lines)] + _env_corpus(env_seeds)


def tokenizer_corpus(cfg: TinyModelConfig) -> list[str]:
    """Exactly the texts :func:`train_tokenizer` trains the vocabulary on (the leak test walks these)."""
    return generate_corpus(cfg.corpus_lines, env_seeds=cfg.env_corpus_seeds)


def _env_corpus(n_seeds: int) -> list[str]:
    if n_seeds <= 0:
        return []
    import rowgym
    from rowgym.builtin_envs import SPECS
    from rowgym.rows import Split

    lines: list[str] = []
    for spec in SPECS:
        if "toolapi" not in spec.get("tags", ()):
            continue
        env = rowgym.make(spec["id"])
        try:
            lines.append(json.dumps(env.tools))
            for seed in env.unwrapped.splits.seeds(Split.TRAIN, n_seeds):
                obs, info = env.reset(seed=seed)
                if info["split"] != Split.TRAIN.value:  # the env disagrees with its own split list: never guess
                    raise RuntimeError(f"{spec['id']} seed {seed} is listed as train but reset says {info['split']}")
                lines.append(obs)
                lines += [f'<tool_call>\n{{"name": "{c.name}", "arguments": {c.arguments}}}\n</tool_call><|im_end|>'
                          for c in env.task.gold]
        finally:
            env.close()
    return lines


# ------------------------------------------------------------------------ tokenizer

def train_tokenizer(cfg: TinyModelConfig, chat_template: str):
    """Train the byte-level BPE tokenizer and wrap it for transformers.

    Returns:
        A ``PreTrainedTokenizerFast`` with eos ``<|im_end|>``, pad ``<|endoftext|>``
        and the given chat template.
    """
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(_QWEN_SPLIT), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=cfg.vocab_size,
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS + ADDED_TOKENS),  # reserves ids 0..8
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte encodable
        show_progress=False,
    )
    tok.train_from_iterator(tokenizer_corpus(cfg), trainer=trainer)
    # Re-register with the right flags; the ids reserved above are kept.
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in ADDED_TOKENS])

    hf_tok = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        model_max_length=cfg.max_position_embeddings,
        clean_up_tokenization_spaces=False,
    )
    hf_tok.chat_template = chat_template
    return hf_tok


# ---------------------------------------------------------------------------- model

def _make_model(cfg: TinyModelConfig, tokenizer):
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, Qwen3Config, Qwen3ForCausalLM

    networks = {"qwen3": (Qwen3Config, Qwen3ForCausalLM), "llama": (LlamaConfig, LlamaForCausalLM)}
    if cfg.architecture not in networks:
        raise ValueError(f"architecture must be one of {sorted(networks)}; got {cfg.architecture!r}")
    config_cls, model_cls = networks[cfg.architecture]
    eos_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    pad_id = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    config = config_cls(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_hidden_layers,
        num_attention_heads=cfg.num_attention_heads,
        num_key_value_heads=cfg.num_key_value_heads,
        head_dim=cfg.head_dim,
        max_position_embeddings=cfg.max_position_embeddings,
        tie_word_embeddings=True,
        bos_token_id=pad_id,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
        dtype="float32",
    )
    # Seed torch's global CPU generator: weight init uses it. Restore it after, so
    # building a model inside a test does not change the caller's random stream.
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(cfg.seed)
        model = model_cls(config).to(torch.float32)
    finally:
        torch.random.set_rng_state(state)
    model.generation_config = GenerationConfig(
        eos_token_id=[eos_id, pad_id], pad_token_id=pad_id, bos_token_id=pad_id
    )
    return model


def _fix_tokenizer_config(out: Path) -> None:
    """Make the saved tokenizer loadable by the older transformers in the vLLM venv.

    transformers 5 writes ``"tokenizer_class": "TokenizersBackend"``, a name older
    releases do not know; ``PreTrainedTokenizerFast`` loads ``tokenizer.json`` in both.
    """
    path = out / "tokenizer_config.json"
    cfg = json.loads(path.read_text())
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def build_tiny_model(
    out_dir: str | os.PathLike | None = None,
    seed: int = 0,
    *,
    force: bool = False,
    config: TinyModelConfig | None = None,
) -> Path:
    """Build (or reuse) the tiny model and save it with ``save_pretrained``.

    Args:
        out_dir: Target directory; defaults to :func:`default_model_dir`.
        seed: Seed of the weight initialisation (ignored when ``config`` is given).
        force: Rebuild even if ``out_dir`` holds a model with the same build hash.
        config: Full build parameters; overrides ``seed``.

    Returns:
        The model directory (model, tokenizer, chat template, generation config and
        ``rowgym_build.json`` with the build parameters and their hash).
    """
    cfg = config or TinyModelConfig(seed=seed)
    out = Path(out_dir) if out_dir is not None else default_model_dir()
    template = trl_qwen3_chat_template()
    want = cfg.params_hash(template)
    info_path = out / BUILD_INFO_FILE
    if not force and info_path.exists():
        try:
            if json.loads(info_path.read_text()).get("params_hash") == want:
                return out
        except (OSError, ValueError):
            pass  # unreadable info: rebuild

    tokenizer = train_tokenizer(cfg, template)
    model = _make_model(cfg, tokenizer)

    from rowgym.trainers.cache_keys import atomic_dir

    with atomic_dir(out, mode=0o755) as tmp:  # 0755: the server may run as another user
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        _fix_tokenizer_config(tmp)
        info = {"params_hash": want, "builder_version": BUILDER_VERSION, "params": dataclasses.asdict(cfg)}
        (tmp / BUILD_INFO_FILE).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    return out


def build_tiny_model_cli(out: str | None = None, seed: int = 0, force: bool = False) -> Path:
    """Entry point for ``rowgym model build-tiny --out DIR --seed N [--force]``; prints the path."""
    path = build_tiny_model(out, seed, force=force)
    print(path)
    return path


if __name__ == "__main__":  # python -m rowgym.trainers.tiny_model [DIR] [SEED]
    import sys

    build_tiny_model_cli(sys.argv[1] if len(sys.argv) > 1 else None, int(sys.argv[2]) if len(sys.argv) > 2 else 0)
