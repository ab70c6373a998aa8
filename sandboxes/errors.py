"""The sandbox package's exceptions, under :class:`rowgym.errors.SandboxError` (an episode failure of kind sandbox).

>>> from rowgym.sandboxes.errors import SandboxError, SandboxQuotaError
>>> issubclass(SandboxQuotaError, SandboxError)
True
"""

from __future__ import annotations

from rowgym.errors import SandboxError

__all__ = ["SandboxClosed", "SandboxCopyDepth", "SandboxCopyLimit", "SandboxError", "SandboxPathError", "SandboxQuotaError",
           "SandboxUnavailable"]


class SandboxUnavailable(SandboxError):
    """No sandbox backend can run here (daemon down, image or rootfs missing)."""


class SandboxClosed(SandboxError):
    """The sandbox was used after close()."""


class SandboxPathError(SandboxError):
    """A path escapes the work dir, passes through a symlink, or is not allowed for that operation."""


class SandboxQuotaError(SandboxError):
    """The work dir is full (its size or file-count quota); the message names the quota."""


class SandboxCopyLimit(SandboxQuotaError):
    """``copy_out`` found more bytes than its limit: what the sandbox's processes wrote, not a fault of the
    machine (sparse files and hard links can hold more bytes than the work dir's disk quota)."""


class SandboxCopyDepth(SandboxCopyLimit):
    """``copy_out`` found dirs nested deeper than its limit (:data:`rowgym.sandboxes.hostfs.MAX_DEPTH`):
    what the sandbox's processes made, not a fault of the machine."""
