"""Rollouts: play episodes (``episode.py``) and run many of them into a store (``engine.py``)."""
