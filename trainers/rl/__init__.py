"""Multi-turn RL on rowgym's data path: engine -> run store -> trainer -> weights -> policy.

Modules: :mod:`.config` (the options), :mod:`.batching` (episodes from the store ->
token tensors with per-token advantages), :mod:`.loss` (the GRPO loss with truncated
importance sampling), :mod:`.sync` (weights to the sampling policy: in-process copy or a
vLLM server reload), :mod:`.record` (checkpoints and the consumption record) and
:mod:`.loop` (the asynchronous loop that ties them together; see docs/training.md).
"""
