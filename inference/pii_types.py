"""The firewall's vocabulary: policies, actions, directions, findings and verdicts, and
the operations on findings that the firewall and the stream redactor share (resolving
overlaps, redacting spans, naming the action a policy took).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Policy = Literal["redact", "block", "allow"]
Action = Literal["none", "redacted", "blocked", "allowed"]
Direction = Literal["input", "output"]


@dataclass(frozen=True)
class Finding:
    """One detected entity: its type, its character span in the text, and a confidence."""

    entity: str
    start: int
    end: int
    score: float


@dataclass(frozen=True)
class Verdict:
    """The firewall's decision on one text: the text to use, what was found, what was done."""

    text: str
    findings: tuple[Finding, ...]
    action: Action


def _resolve(findings: Sequence[Finding]) -> list[Finding]:
    """Non-overlapping findings in text order: higher score, then longer span, wins."""
    chosen: list[Finding] = []
    for f in sorted(findings, key=lambda f: (-f.score, f.start - f.end, f.start, f.entity)):
        if all(f.end <= c.start or f.start >= c.end for c in chosen):
            chosen.append(f)
    return sorted(chosen, key=lambda f: f.start)


def _redact(text: str, findings: Sequence[Finding], offset: int = 0) -> str:
    """``text`` with each finding (offsets shifted by ``offset``) replaced by ``[ENTITY]``."""
    parts: list[str] = []
    position = 0
    for f in findings:
        parts += [text[position : f.start - offset], f"[{f.entity}]"]
        position = f.end - offset
    parts.append(text[position:])
    return "".join(parts)


_ACTIONS: dict[Policy, Action] = {"redact": "redacted", "block": "blocked", "allow": "allowed"}


def _action(policy: Policy, found: bool) -> Action:
    return _ACTIONS[policy] if found else "none"
