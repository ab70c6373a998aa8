"""Versioned environment ids, ``make``, and plugins found through entry points.

>>> import rowgym
>>> env = rowgym.make("rowgym/ToolAPI-Airline-v0")
>>> type(env).__name__
'AirlineEnv'
>>> rowgym.make("rowgym/ToolAPI-Airlin-v0")
Traceback (most recent call last):
...
rowgym.errors.UnknownEnvError: no environment 'rowgym/ToolAPI-Airlin-v0'; did you mean 'rowgym/ToolAPI-Airline-v0'? ...

Ids look like Gymnasium's: ``namespace/Name-vN``. Every id is also registered with
Gymnasium, so ``gymnasium.make("rowgym/ToolAPI-Retail-v0")`` works too.

A third-party package adds environments by declaring an entry point in the group
``rowgym.envs`` that names a function taking no arguments and calling
:func:`register` (see ``examples/plugin``). A plugin that fails to import is
reported by name with its error (``rowgym envs list``) and does not break the rest.
"""

from __future__ import annotations

import difflib
import importlib
import re
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

from rowgym.errors import PluginError, RegistryError, UnknownEnvError

ENTRY_POINT_GROUP = "rowgym.envs"
_ID_RE = re.compile(r"^(?:(?P<ns>[\w.-]+)/)?(?P<name>[\w.:-]+?)(?:-v(?P<version>\d+))?$")


@dataclass(frozen=True)
class EnvSpec:
    """How to build one environment id.

    ``entry_point`` and ``expert`` are ``"module:attr"`` strings (listing environments
    then imports nothing heavy) or, as in Gymnasium, the class or callable itself;
    ``expert`` names the scripted expert agent class for this environment, if it has one.
    """

    id: str
    entry_point: str | Callable[..., Any]
    kwargs: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    expert: str | Callable[..., Any] | None = None
    source: str = "rowgym"
    tags: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return _parse(self.id)[1]

    @property
    def version(self) -> int:
        return _parse(self.id)[2] or 0

    def load(self) -> Any:
        """The env class (or factory) this id builds."""
        return load_object(self.entry_point)


@dataclass(frozen=True)
class PluginFailure:
    """A plugin entry point that could not be loaded."""

    name: str
    value: str
    error: str
    traceback: str


_registry: dict[str, EnvSpec] = {}
_plugin_failures: list[PluginFailure] = []
_plugins_seen: set[str] = set()
_plugins_loaded = False


def _parse(env_id: str) -> tuple[str | None, str, int | None]:
    m = _ID_RE.match(env_id)
    if not m:
        raise RegistryError(f"malformed environment id {env_id!r}; expected 'namespace/Name-vN'")
    return m["ns"], m["name"], int(m["version"]) if m["version"] is not None else None


def load_object(ref: str | Callable[..., Any]) -> Any:
    """Import ``"package.module:attr"`` (a class or callable is returned as it is)."""
    if callable(ref):
        return ref
    if not isinstance(ref, str) or ":" not in ref:
        raise RegistryError(f"expected 'package.module:attr', a class or a callable, got {ref!r}")
    module, _, attr = ref.partition(":")
    obj = importlib.import_module(module)
    for part in attr.split(".") if attr else []:
        obj = getattr(obj, part)
    return obj


def register(id: str, entry_point: str | Callable[..., Any], *, kwargs: dict[str, Any] | None = None,
             description: str = "", expert: str | Callable[..., Any] | None = None, tags: tuple[str, ...] = (),
             source: str = "rowgym", replace: bool = False) -> EnvSpec:
    """Register an environment id with rowgym and with Gymnasium.

    Args:
        id: ``namespace/Name-vN``.
        entry_point: ``"module:Class"``, or the env class or a factory callable itself.
        kwargs: Default constructor keyword arguments.
        description: One line shown by ``rowgym envs list``.
        expert: The scripted expert agent (``"module:Class"`` or the class); it is built as
            ``Expert(**options)`` with the options a user passes (``--noise``, ``seed``...).
        tags: Free-form labels.
        source: Who registered it (set to ``plugin:NAME`` for plugins).
        replace: Overwrite an existing registration.
    """
    for what, ref in (("entry_point", entry_point), ("expert", expert)):
        if ref is not None and not callable(ref) and not (isinstance(ref, str) and ":" in ref):
            raise RegistryError(f"{id}: {what} must be 'package.module:attr', a class or a callable, got {ref!r}")
    _, _, version = _parse(id)
    if version is None:
        raise RegistryError(f"environment id {id!r} needs a version suffix like '-v0'")
    if id in _registry and not replace:
        raise RegistryError(f"environment {id!r} is already registered by {_registry[id].source}")
    spec = EnvSpec(id, entry_point, dict(kwargs or {}), description, expert, source, tuple(tags))
    _registry[id] = spec
    _register_with_gymnasium(spec)
    return spec


def _register_with_gymnasium(spec: EnvSpec) -> None:
    import gymnasium

    # max_episode_steps stays None: rowgym envs truncate themselves, so that the final
    # verdict is computed when the step cap is reached.
    gymnasium.register(id=spec.id, entry_point=_GymEntry(spec.id), disable_env_checker=True)


class _GymEntry:
    """A picklable Gymnasium entry point that builds the env through rowgym."""

    def __init__(self, env_id: str):
        self.env_id = env_id

    def __call__(self, **kwargs: Any) -> Any:
        return make(self.env_id, **kwargs)


def load_plugins(rescan: bool = False) -> list[PluginFailure]:
    """Run every ``rowgym.envs`` entry point once; failures are recorded, not raised.

    ``rescan=True`` looks again for entry points installed since the last scan.
    """
    global _plugins_loaded
    if _plugins_loaded and not rescan:
        return list(_plugin_failures)
    _plugins_loaded = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if f"{ep.name}={ep.value}" in _plugins_seen:
            continue
        _plugins_seen.add(f"{ep.name}={ep.value}")
        before = set(_registry)
        try:
            hook = ep.load()
            if not callable(hook):
                raise PluginError(f"entry point {ep.value} must name a function that calls rowgym.register()")
            hook()
        except Exception as e:  # a broken plugin must not break rowgym or the other plugins
            for env_id in set(_registry) - before:
                _registry.pop(env_id, None)
            _plugin_failures.append(PluginFailure(ep.name, ep.value, f"{type(e).__name__}: {e}",
                                                  traceback.format_exc()))
            continue
        for env_id in set(_registry) - before:
            _registry[env_id] = EnvSpec(**{**_registry[env_id].__dict__, "source": f"plugin:{ep.name}"})
    return list(_plugin_failures)


def plugin_failures() -> list[PluginFailure]:
    load_plugins()
    return list(_plugin_failures)


def all_specs() -> list[EnvSpec]:
    """Every registered environment, built-in and plugin, sorted by id."""
    load_plugins()
    return [_registry[k] for k in sorted(_registry)]


def spec(env_id: str) -> EnvSpec:
    """The spec of ``env_id``; an id without ``-vN`` means its latest version."""
    load_plugins()
    if env_id in _registry:
        return _registry[env_id]
    ns, name, version = _parse(env_id)
    if version is None:
        prefix = f"{ns}/{name}" if ns else name
        versions = [s for s in _registry.values() if s.id.rsplit("-v", 1)[0] == prefix]
        if versions:
            return max(versions, key=lambda s: s.version)
    hint = difflib.get_close_matches(env_id, list(_registry), n=1, cutoff=0.6)
    did_you_mean = f"did you mean {hint[0]!r}? " if hint else ""
    broken = [f.name for f in _plugin_failures]
    extra = f" (plugins that failed to load: {', '.join(broken)})" if broken else ""
    raise UnknownEnvError(f"no environment {env_id!r}; {did_you_mean}run `rowgym envs list` to see them all{extra}")


REMOTE_ENV = "rowgym.envs.remote.client:RemoteEnv"
"""The client of ``rowgym env serve``, loaded by name so that the core does not import the envs layer."""


def is_remote(env_id: str) -> bool:
    """True for ids of environments served over HTTP (``http://host:port/ENV_ID``)."""
    return env_id.startswith(("http://", "https://"))


def make(env_id: str, **kwargs: Any) -> Any:
    """Build the environment registered as ``env_id`` (keyword arguments override the spec's).

    ``http://host:port/ENV_ID`` builds a client of an env served by ``rowgym env serve``
    (:class:`rowgym.envs.remote.client.RemoteEnv`), with the same Gymnasium and async API.
    """
    if is_remote(env_id):
        return load_object(REMOTE_ENV)(env_id, **kwargs)
    s = spec(env_id)
    try:
        cls = s.load()
    except Exception as e:
        raise PluginError(f"environment {s.id!r} from {s.source} failed to import {s.entry_point}: {e}") from e
    kw = {**s.kwargs, **kwargs}
    if isinstance(cls, type):
        return cls(env_id=s.id, **kw)
    env = cls(**kw)  # a factory callable (Gymnasium allows them): tell the env its id afterwards
    if hasattr(env, "env_id"):
        env.env_id = s.id
    return env


def _builtin() -> None:
    from rowgym import builtin_envs

    for entry in builtin_envs.SPECS:
        register(**entry)


_builtin()
