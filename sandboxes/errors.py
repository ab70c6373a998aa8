"""The sandbox package's exceptions (one root, :class:`SandboxError`, under ``RowgymError``).

>>> from rowgym.sandboxes.errors import SandboxError, SandboxQuotaError
>>> issubclass(SandboxQuotaError, SandboxError)
True
"""

from __future__ import annotations

from rowgym.errors import RowgymError


class SandboxError(RowgymError):
    """Base class of sandbox errors (setup and programming errors, not command failures)."""

    failure_kind = "sandbox"  # how the rollout engine attributes an episode this error ends


class SandboxUnavailable(SandboxError):
    """No sandbox backend can run here (daemon down, image or rootfs missing)."""


class SandboxClosed(SandboxError):
    """The sandbox was used after close()."""


class SandboxPathError(SandboxError):
    """A path escapes the work dir, passes through a symlink, or is not allowed for that operation."""


class SandboxQuotaError(SandboxError):
    """The work dir is full (its size or file-count quota); the message names the quota."""
