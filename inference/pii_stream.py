"""Stream redaction: :class:`StreamRedactor` and the hold-back rules it settles by.

The redactor releases text as soon as no entity can straddle the release point and
holds back only the open tail (the word being written, an open run of number groups, a
``password =`` awaiting its value, an unfinished PEM block). What it releases,
concatenated, is exactly ``PiiFirewall.apply(text, "redact").text``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from inference.pii_recognizers import (
    _SECRET_KEYWORDS,
    _SECRET_STEMS,
    _mentions,
    _triggered_entities,
)
from inference.pii_types import Action, Finding, Policy, _action, _redact, _resolve

if TYPE_CHECKING:
    from inference.firewall import PiiFirewall


# --- streams --------------------------------------------------------------------------

_SCAN_CHARS = 512  # how far back the open tail is looked for; a longer one holds everything
_CONTEXT_CHARS = 64  # settled text kept as left context (word boundaries, lookbehinds)

_DIGIT = re.compile(r"\d")
_PUNCT_TOKEN = re.compile(r"[^\w\s]{1,4}")
_ALPHA_TOKEN = re.compile(r"(?:[^\W\d_]{1,5}|(?i:extens(?:i(?:[oó]n?)?)?))[.,:;]?")
_GLUED_PAIR = re.compile(r"\b[A-Za-z]{2}\Z")
_OPEN_SECRET = re.compile(
    _SECRET_KEYWORDS + r"[\"']?\s{0,3}(?:[:=]\s{0,3}[\"']?[^\s\"'`,;]*)?\Z"
    r"|\bbearer(?:\s\S*)?\Z",
    re.IGNORECASE,
)
_PEM_HEADER_OPEN = re.compile(r"-----BEGIN[A-Z ]{0,40}-{0,5}\Z")
_PEM_PRIVATE = re.compile(r"-----BEGIN[A-Z ]{0,40}PRIVATE KEY(?: BLOCK)?-----")
_PEM_PRIVATE_END = re.compile(r"-----END[A-Z ]{0,40}PRIVATE KEY(?: BLOCK)?-----")


def _tokens_backwards(text: str, floor: int) -> Iterator[tuple[int, int]]:
    """(start, end) of each whitespace-separated token of ``text[floor:]``, last first."""
    end = len(text)
    while end > floor:
        while end > floor and text[end - 1].isspace():
            end -= 1
        start = end
        while start > floor and not text[start - 1].isspace():
            start -= 1
        if start < end:
            yield start, end
        end = start


def _token_kind(token: str) -> str:
    if _DIGIT.search(token):
        return "digits"
    if _PUNCT_TOKEN.fullmatch(token):
        return "punct"
    if _ALPHA_TOKEN.fullmatch(token):
        return "pair" if len(token.rstrip(".,:;")) == 2 else "alpha"
    return "other"


def _open_chain(text: str, floor: int) -> int:
    """Start of the run of number-like groups at the end of ``text`` that a later delta
    could still extend into one entity: a card, phone, IBAN or id written with spaces
    ("+44 20 7946 0958 ext 12", "GB82 WEST 1234 ...", "AB 12 34 56 C"). Short words may
    sit between groups, never two in a row; a leading word counts only as a two-letter
    country or NINO prefix. Returns ``len(text)`` when no such run is open."""
    chain: list[tuple[int, str]] = []
    previous = ""
    for start, end in _tokens_backwards(text, floor):
        kind = _token_kind(text[start:end])
        if kind in ("alpha", "pair") and previous in ("alpha", "pair"):
            break
        if kind == "other":
            # "id=AB 12 34 56 C": a NINO prefix can follow punctuation in one token.
            glued = _GLUED_PAIR.search(text, start, end)
            if glued and previous not in ("alpha", "pair"):
                chain.append((glued.start(), "pair"))
            break
        chain.append((start, kind))
        previous = kind
    else:
        if floor > 0:  # the run may go on before the scanned part: hold it all
            return 0
    if chain and chain[-1][1] == "alpha":
        chain.pop()
    kinds = {kind for _, kind in chain}
    if not chain or ("digits" not in kinds and not kinds <= {"punct", "pair"}):
        return len(text)
    return chain[-1][0]


def _open_pem(text: str) -> int:
    """Start of a PEM private key whose END line has not arrived (or of a header still
    being written); ``len(text)`` when none is open."""
    begin = text.rfind("-----BEGIN")
    hold = begin if begin >= 0 and _PEM_HEADER_OPEN.match(text, begin) else len(text)
    for header in _PEM_PRIVATE.finditer(text):
        if not _PEM_PRIVATE_END.search(text, header.end()):
            return min(hold, header.start())
    return hold


def _hold_from(text: str) -> int:
    """Where the tail of ``text`` that may continue into an entity begins; no entity of
    the whole stream can straddle this index, whatever comes next."""
    floor = max(0, len(text) - _SCAN_CHARS)
    run = len(text)  # the word being written: any word may turn into an email or key
    while run > floor and not text[run - 1].isspace():
        run -= 1
    if 0 < floor == run:  # a word longer than the scanned part: hold it all
        return 0
    near = max(floor, run - 64)
    secret = (
        _OPEN_SECRET.search(text, near) if _mentions(text, near, len(text), _SECRET_STEMS) else None
    )
    return min(
        run,
        _open_chain(text, floor),
        secret.start() if secret else len(text),
        _open_pem(text),
    )


class StreamRedactor:
    """Applies a policy to one streamed text, delta by delta.

    ``feed`` returns what is safe to send now; ``flush`` returns the rest at the end.
    With redact, what they return adds up to ``PiiFirewall.apply(text, "redact").text``
    and never holds any part of a PII value. With block, once PII is found ``blocked``
    turns true and both return "" from then on. With allow, deltas pass through at once
    and only ``findings`` is kept. ``findings`` are offsets into the whole streamed text.
    """

    def __init__(self, firewall: PiiFirewall, policy: Policy) -> None:
        self._firewall = firewall
        self._policy = policy
        self._pending = ""  # received, not yet settled
        self._context = ""  # the last settled characters
        self._offset = 0  # position of _pending[0] in the whole stream
        self.findings: list[Finding] = []
        self.blocked = False

    @property
    def action(self) -> Action:
        """What the policy did to the stream so far."""
        return _action(self._policy, bool(self.findings))

    def feed(self, delta: str) -> str:
        """Take the next delta; return the text that can be released now (redacted)."""
        if self.blocked:
            return ""
        self._pending += delta
        released = self._settle(_hold_from(self._pending), final=False)
        return delta if self._policy == "allow" else released

    def flush(self) -> str:
        """End of stream: return everything still held, redacted."""
        if self.blocked:
            return ""
        released = self._settle(len(self._pending), final=True)
        return "" if self._policy == "allow" else released

    def _settle(self, cut: int, *, final: bool) -> str:
        """Decide ``_pending[:cut]`` (detecting only if the prefilter lets it) and
        return it as the policy releases it."""
        if cut <= 0:
            return ""
        base = len(self._context)
        settled: list[Finding] = []
        window = self._context + self._pending
        if _triggered_entities(window, base, base + cut):
            raw = self._firewall._analyze(window)
            if not final:
                cut = _clear_of([f for f in raw if f.start >= base], base + cut) - base
                if cut <= 0:
                    return ""
            # Clipped to the settled part: only a finding begun in already released
            # text can stick out, and none should (the hold rules exist to prevent it).
            settled = [
                Finding(f.entity, max(f.start, base), min(f.end, base + cut), f.score)
                for f in _resolve(raw)
                if f.end > base and f.start < base + cut
            ]
        segment = self._pending[:cut]
        self.findings += [
            Finding(f.entity, f.start - base + self._offset, f.end - base + self._offset, f.score)
            for f in settled
        ]
        self._context = (self._context + segment)[-_CONTEXT_CHARS:]
        self._pending = self._pending[cut:]
        self._offset += cut
        if self._policy == "block" and settled:
            self.blocked = True
            self._pending = ""
            return ""
        return _redact(segment, settled, base) if self._policy == "redact" else segment


def _clear_of(findings: Sequence[Finding], cut: int) -> int:
    """Move ``cut`` left until no finding straddles it."""
    moved = True
    while moved:
        moved = False
        for f in findings:
            if f.start < cut < f.end:
                cut, moved = f.start, True
    return cut
