"""Repo-patch environments: fix a bug in a repository; hidden tests decide (see docs/repopatch.md).

Modules: ``task`` (data model, diffs, test-file guard), ``env`` (tools, episode), ``grading``
(fresh-sandbox grader), ``splits``, ``families`` (registered envs), ``corpus`` (built-in
repos), ``synth`` (mutation synthesizer), ``swebench`` (SWE-bench-format loader),
``verify`` (gold/empty check over every task).
"""
