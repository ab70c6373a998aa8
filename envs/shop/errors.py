"""Errors of the shop (configuration and infrastructure, never an agent's action)."""

from rowgym.errors import RowgymError


class ShopError(RowgymError):
    """Base class of shop errors."""


class ShopServerError(ShopError):
    """The shop server could not be started, reached or stopped."""


class GraderAuthError(ShopError):
    """The shop refused the grader secret (the server was started with another one)."""
