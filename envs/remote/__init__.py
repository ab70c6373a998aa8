"""Environments served over HTTP: ``rowgym env serve ENV_ID`` and ``rowgym.make("http://host:port/ENV_ID")``.

See :mod:`rowgym.envs.remote.server` (sessions, tokens, privileged resets),
:mod:`rowgym.envs.remote.client` (the env a client gets) and
:mod:`rowgym.envs.remote.protocol` (the wire format).
"""
