"""One canonical form of a request path, so that a blocklist cannot be dodged by spelling.

>>> canonical_path("/%73ession/start")
'/session/start'
>>> canonical_path("/%255Fgrader//x/./../session")
'/_grader/session'
>>> canonical_path("\\\\_GRADER\\\\session")
'/_grader/session'
>>> is_internal("/%5Fgrader/session/abc"), is_internal("/search?q=_grader")
(True, False)
>>> canonical_path("http://127.0.0.1:8765/_grader/x")
'/_grader/x'


Both the environment's ``goto`` guard and the server's own middleware decide with
:func:`is_internal`, so they agree on what counts as an internal route. The canonical
form is what any lenient server or browser could make of the path: percent-decoded
until nothing changes (double and triple encodings included), backslashes read as
slashes (Chromium does that for http URLs), ``//`` collapsed, ``.`` and ``..``
segments resolved (never above the root), and lower-cased (a case-insensitive
deployment must not reopen the hole; the shop's own routes are all lower-case).
"""

from __future__ import annotations

import posixpath
import re
from urllib.parse import unquote

#: Path prefixes that only the harness (the environment process, holding the grader secret) may use:
#: the grader API and the session plumbing. Matched against :func:`canonical_path`.
INTERNAL_PREFIXES = ("/_grader", "/session", "/new-session")
#: A path whose decoding has not settled after this many rounds is refused as internal.
MAX_DECODE_ROUNDS = 8


_ABSOLUTE = re.compile(r"^/*[a-zA-Z][a-zA-Z0-9+.-]*:/+[^/]*")


class Undecidable(ValueError):
    """The path keeps changing under decoding: treat it as hostile."""


def canonical_path(path: str, *, lower: bool = True) -> str:
    """The canonical form of ``path`` (query and fragment are cut off first).

    ``lower=False`` keeps the case (for opening the path; the comparison form is lower-case).

    Raises:
        Undecidable: percent-decoding does not settle within ``MAX_DECODE_ROUNDS``.
    """
    path = path.split("?", 1)[0].split("#", 1)[0]
    for _ in range(MAX_DECODE_ROUNDS):
        decoded = unquote(path, errors="replace")
        if decoded == path:
            break
        path = decoded
    else:
        raise Undecidable(f"path still changes after {MAX_DECODE_ROUNDS} rounds of percent-decoding")
    path = path.replace("\\", "/").replace("\x00", "")
    absolute = _ABSOLUTE.match(path)  # an absolute-form request target: judge its path
    if absolute:
        path = path[absolute.end():]
    path = "".join(ch for ch in path if ch >= " " and ch != "\x7f")  # browsers drop tabs/newlines in URLs
    norm = posixpath.normpath("/" + path.lstrip("/"))
    if norm.startswith("//"):  # posixpath keeps a leading '//' (POSIX allows it); a URL path does not
        norm = "/" + norm.lstrip("/")
    return norm.lower() if lower else norm


def is_internal(path: str) -> bool:
    """Whether ``path`` (in any spelling) reaches a harness-only route; undecidable paths count as internal."""
    try:
        canon = canonical_path(path)
    except Undecidable:
        return True
    return canon.startswith(INTERNAL_PREFIXES)
