"""Errors of the shop (configuration and infrastructure, never an agent's action)."""

from rowgym.errors import EnvError


class ShopError(EnvError):
    """Base class of shop errors (an episode they end fails with kind 'env')."""


class ShopServerError(ShopError):
    """The shop server could not be started, reached or stopped."""


class GraderAuthError(ShopError):
    """The shop refused the grader secret (the server was started with another one)."""
