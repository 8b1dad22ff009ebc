"""The text of one Cedar rule, named as an audit record names it (``pack/@id``), for a reader
who wants to see what decided a request rather than just the rule's name."""

from __future__ import annotations

import re

from facegate.governance.policy import Policies


def rule_text(policies: Policies, name: str) -> str | None:
    """The rule's annotations and body as they stand in its pack today, or None when the pack
    or the rule is gone (the record still names it)."""
    pack_name, _, rule_id = name.partition("/")
    try:
        text = policies.pack(pack_name).text
    except (KeyError, OSError):
        return None
    for statement in _statements(text):
        if re.search(r'@id\(\s*"' + re.escape(rule_id) + r'"\s*\)', statement):
            return statement.strip()
    return None


def _statements(text: str) -> list[str]:
    """Split Cedar text at the ``;`` that ends each policy: outside strings and comments."""
    statements, start, i, in_string = [], 0, 0, False
    while i < len(text):
        char = text[i]
        if in_string:
            if char == "\\":
                i += 1
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif text.startswith("//", i):
            end = text.find("\n", i)
            i = len(text) if end < 0 else end
            continue
        elif char == ";":
            statements.append(_without_comments(text[start : i + 1]))
            start = i + 1
        i += 1
    return statements


def _without_comments(statement: str) -> str:
    """Leading comment lines belong to the pack's prose, not to the rule."""
    lines = statement.strip("\n").splitlines()
    while lines and (not lines[0].strip() or lines[0].lstrip().startswith("//")):
        lines.pop(0)
    return "\n".join(lines)
