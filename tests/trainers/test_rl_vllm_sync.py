"""After an optimizer step the vLLM server samples with the trainer's weights (reload without a restart)."""

import json
import urllib.request

import pytest

pytest.importorskip("trl")

pytestmark = [pytest.mark.vllm, pytest.mark.train]
T = 0.7


def _sample(base_url, prompt, seed):
    body = {"model": "rowgym-policy", "prompt": prompt, "max_tokens": 12, "temperature": T, "logprobs": 0,
            "seed": seed, "return_token_ids": True, "skip_special_tokens": False, "ignore_eos": True}
    req = urllib.request.Request(base_url.rstrip("/") + "/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        ch = json.loads(r.read())["choices"][0]
    return list(ch["token_ids"]), list(ch["logprobs"]["token_logprobs"])


def _trainer_logprobs(model, prompt, ids):
    import torch

    from rowgym.trainers.rl.loss import token_logprobs

    seq = torch.tensor([prompt + ids])
    with torch.no_grad():
        lp = token_logprobs(model, seq, torch.ones_like(seq), T)[0]
    return lp[len(prompt) - 1:].tolist()


def check_weights_follow_trainer(base_url, model_dir, tmp_path):
    """The must-show check; returns (max error after, max change) for the report."""
    import asyncio

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rowgym.agents.serving import reload_weights
    from rowgym.agents.token_policy import PolicyVersions
    from rowgym.rows import PolicyVersion
    from rowgym.trainers.rl.record import Checkpoints, save_weights
    from rowgym.trainers.rl.sync import VLLMSync, weights_hash

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    prompt = tok.apply_chat_template([{"role": "user", "content": "turn on the kitchen light"}],
                                     add_generation_prompt=True, tokenize=True, return_dict=False)
    prompt = list(prompt["input_ids"] if isinstance(prompt, dict) else prompt)
    ids0, server0 = _sample(base_url, prompt, seed=3)
    assert max(abs(a - b) for a, b in zip(server0, _trainer_logprobs(model, prompt, ids0), strict=True)) < 2e-3

    # one real optimizer step of the trainer (push up the logprob of a fixed continuation)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-2)
    seq = torch.tensor([prompt + ids0])
    from rowgym.trainers.rl.loss import token_logprobs

    (-token_logprobs(model, seq, torch.ones_like(seq), T)[0, len(prompt) - 1:].sum()).backward()
    opt.step()
    ck = Checkpoints(tmp_path / "ck").save(1, model, opt, {"weights_hash": weights_hash(model)})
    versions = PolicyVersions(PolicyVersion(step=0, weights_hash="base"))
    try:
        asyncio.run(VLLMSync(versions, base_url).push(PolicyVersion(step=1, weights_hash=weights_hash(model)),
                                                      ck / "model"))
        assert versions.current.step == 1
        ids1, server1 = _sample(base_url, prompt, seed=3)
        err = max(abs(a - b) for a, b in zip(server1, _trainer_logprobs(model, prompt, ids1), strict=True))
        assert err < 2e-3
        old = _trainer_logprobs(AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32), prompt, ids1)
        change = max(abs(a - b) for a, b in zip(server1, old, strict=True))
        assert change > 5e-2  # the server no longer samples with the old weights
        print(f"after the update: max |server - trainer| = {err:.2e}; max change vs the old weights = {change:.3f}")
    finally:  # the session server goes back to the tiny model's own weights for the other tests
        save_weights(AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32), tmp_path / "base")
        reload_weights(base_url, tmp_path / "base")
    ids2, server2 = _sample(base_url, prompt, seed=3)
    assert ids2 == ids0 and max(abs(a - b) for a, b in zip(server2, server0, strict=True)) < 1e-4
    return err, change


def test_reloaded_server_logprobs_equal_trainer_logprobs(vllm_server, tiny_model_dir, tmp_path):
    check_weights_follow_trainer(vllm_server.base_url, tiny_model_dir, tmp_path)
