"""Read Playwright's AI-mode accessibility snapshot: element references, roles, names, links.

>>> snap = '''- main [ref=e9]:
...   - searchbox "Search products" [ref=e14]
...   - link "Cotton T-shirt" [ref=e26] [cursor=pointer]:
...     - /url: /product/P00109'''
>>> [(n.role, n.name, n.ref, n.url) for n in parse(snap)]
[('main', '', 'e9', None), ('searchbox', 'Search products', 'e14', None), ('link', 'Cotton T-shirt', 'e26', '/product/P00109')]
>>> refs(snap)
['e9', 'e14', 'e26']
>>> print(compact(snap, max_chars=10_000).splitlines()[2])
  - link "Cotton T-shirt" [ref=e26]:

``page.aria_snapshot(mode="ai")`` (Playwright >= 1.53) returns YAML-like lines such as
``- button "Go" [ref=e5] [cursor=pointer]``; ``page.locator("aria-ref=e5")`` resolves a
reference back to the element. The environment keeps the references of the latest
snapshot so that an unknown or stale one is a bad call at once (instead of a locator
that waits for its timeout), and the scripted expert finds what to act on here, from
the same text the agent sees.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_REF = re.compile(r"\[ref=([^\]\s]+)\]")
_LINE = re.compile(r'^(?P<indent>\s*)- (?P<role>[^\s":\[]+)(?: "(?P<name>(?:[^"\\]|\\.)*)")?(?P<rest>.*)$')
_NOISE = re.compile(r" \[cursor=pointer\]")


@dataclass(frozen=True)
class Node:
    """One element line of a snapshot.

    Attributes:
        depth: Indentation level (0 for top-level lines).
        role: ARIA role (``link``, ``button``, ``radio``, ``group``, ``text`` ...).
        name: Accessible name ("" if none).
        ref: Element reference (``e14``, ``f2e33``), or None for lines without one.
        text: Inline text after the colon (e.g. a status message or an input's value).
        url: For links, the ``/url`` child's value.
        checked: Whether the line carries ``[checked]``.
        parents: Refs of the enclosing elements, innermost last.
    """

    depth: int
    role: str
    name: str
    ref: str | None
    text: str
    url: str | None
    checked: bool
    parents: tuple[str, ...]


def _unquote(s: str) -> str:
    s = s.strip()
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "'\"":
        inner = s[1:-1]
        return inner.replace("''", "'") if s[0] == "'" else inner.replace('\\"', '"')
    return s


def parse(snapshot: str) -> list[Node]:
    """The element lines of ``snapshot`` in document order (``/url`` lines fold into their link)."""
    nodes: list[Node] = []
    stack: list[tuple[int, str | None]] = []  # (depth, ref) of open ancestors
    for raw in snapshot.splitlines():
        stripped = raw.lstrip()
        indent = (len(raw) - len(stripped)) // 2
        if stripped.startswith("- '") and stripped.endswith("'"):  # YAML-quoted line
            stripped = "- " + stripped[3:-1].replace("''", "'")
        if stripped.startswith("- /url:") and nodes:
            last = nodes[-1]
            nodes[-1] = Node(last.depth, last.role, last.name, last.ref, last.text,
                             _unquote(stripped[len("- /url:"):]), last.checked, last.parents)
            continue
        m = _LINE.match(stripped)
        if not m:
            continue
        rest = m["rest"]
        ref_m = _REF.search(rest)
        text = ""
        if ":" in rest:
            after = rest.split("]:", 1)[1] if "]:" in rest else rest.split(":", 1)[1]
            text = _unquote(after)
        role = m["role"].rstrip(":")
        if role == "text" and not text:
            text = _unquote(stripped[len("- text:"):])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        parents = tuple(r for _, r in stack if r)
        name = (m["name"] or "").replace('\\"', '"')
        node = Node(indent, role, name, ref_m.group(1) if ref_m else None, text, None,
                    "[checked]" in rest, parents)
        nodes.append(node)
        stack.append((indent, node.ref))
    return nodes


def refs(snapshot: str) -> list[str]:
    """Every element reference in ``snapshot``, in order."""
    return _REF.findall(snapshot)


def compact(snapshot: str, max_chars: int) -> str:
    """Drop noise (``[cursor=pointer]``) and cut to ``max_chars`` at a line boundary, saying so."""
    text = _NOISE.sub("", snapshot)
    if len(text) <= max_chars:
        return text
    lines = text.splitlines()
    kept, size = [], 0
    for line in lines:
        if size + len(line) + 1 > max_chars:
            break
        kept.append(line)
        size += len(line) + 1
    return "\n".join(kept + [f"... ({len(lines) - len(kept)} more lines cut)"])
