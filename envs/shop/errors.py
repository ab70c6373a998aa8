"""Errors of the shop (configuration and infrastructure, never an agent's action)."""

from rowgym.errors import RowgymError


class ShopError(RowgymError):
    """Base class of shop errors."""


class ShopServerError(ShopError):
    """The shop server could not be started, reached or stopped (an episode fails with kind 'env')."""

    failure_kind = "env"


class GraderAuthError(ShopError):
    """The shop refused the grader secret (the server was started with another one)."""

    failure_kind = "env"
