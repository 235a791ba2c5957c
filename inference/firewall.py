"""The prompt firewall: finds PII and secrets in text going to and coming from a model.

Detection runs presidio-analyzer's recognizers (cards with a Luhn check, IBANs, phones
through libphonenumber, emails, national ids) and our own pattern recognizers for ids
presidio lacks and for API keys and secrets, on a blank spaCy pipeline: no trained
model, no download, no network. A compiled prefilter decides which recognizers a text
can trigger at all, so clean text never reaches presidio.

Streams are redacted by :class:`StreamRedactor`, which releases text as soon as no
entity can straddle the release point and holds back only the open tail (the word
being written, an open run of number groups, a ``password =`` awaiting its value, an
unfinished PEM block). What it releases, concatenated, is exactly
``apply(text, "redact").text``.

This module is the public face: the detectors live in ``inference.pii_recognizers``,
the stream redactor in ``inference.pii_stream`` and the shared types in
``inference.pii_types``; the names callers use are re-exported here.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from opentelemetry import trace

from core.metrics import FIREWALL_ACTIONS
from inference.pii_recognizers import (
    DEFAULT_PHONE_REGIONS,
    _build_analyzer,
    _triggered_entities,
)
from inference.pii_stream import StreamRedactor
from inference.pii_types import (
    Action,
    Direction,
    Finding,
    Policy,
    Verdict,
    _action,
    _redact,
    _resolve,
)

__all__ = [
    "DEFAULT_PHONE_REGIONS",
    "Action",
    "Direction",
    "Finding",
    "PiiFirewall",
    "Policy",
    "StreamRedactor",
    "Verdict",
    "record",
]


# --- the firewall ---------------------------------------------------------------------


class PiiFirewall:
    """Detects PII and secrets, and applies a tenant's policy: redact, block or allow.

    Build one per process (building takes ~0.2 s); it is safe to share between requests.
    """

    def __init__(
        self,
        *,
        score_threshold: float = 0.5,
        phone_regions: Sequence[str] = DEFAULT_PHONE_REGIONS,
    ) -> None:
        self._threshold = score_threshold
        self._analyzer = _build_analyzer(phone_regions)
        # Warm up: compile every pattern and load the bundled suffix list now, not on
        # the first request.
        self.detect("mail a.b@example.com, call +1 415 555 2671, password: warmup1")

    def detect(self, text: str) -> list[Finding]:
        """The findings in ``text`` at or above the threshold, non-overlapping, in order."""
        return _resolve(self._analyze(text))

    def apply(self, text: str, policy: Policy) -> Verdict:
        """Apply ``policy``: redact replaces each finding by a ``[ENTITY]`` placeholder;
        block and allow leave the text as it is (the caller refuses or passes it)."""
        findings = tuple(self.detect(text))
        action = _action(policy, bool(findings))
        if action == "redacted":
            text = _redact(text, findings)
        return Verdict(text=text, findings=findings, action=action)

    def stream(self, policy: Policy) -> StreamRedactor:
        """A redactor for one streamed text (a model's answer, delta by delta)."""
        return StreamRedactor(self, policy)

    def _analyze(self, text: str) -> list[Finding]:
        """Every finding presidio reports for the entities ``text`` can trigger (these
        may overlap); no presidio call at all when it triggers none."""
        entities = _triggered_entities(text)
        if not entities:
            return []
        results = self._analyzer.analyze(
            text, language="en", entities=entities, score_threshold=self._threshold
        )
        return [Finding(r.entity_type, r.start, r.end, r.score) for r in results]


# --- telemetry ------------------------------------------------------------------------


def record(
    direction: Direction,
    verdict_or_findings: Verdict | Sequence[Finding],
    policy: Policy,
    action: Action | None = None,
) -> None:
    """Count the findings acted on (``headwater_firewall_actions_total``) and describe
    them on the current span: counts per entity type, the policy and the action; never
    the matched text. ``action`` defaults to the verdict's, or the policy's when PII
    was found."""
    if isinstance(verdict_or_findings, Verdict):
        findings: Sequence[Finding] = verdict_or_findings.findings
        action = action or verdict_or_findings.action
    else:
        findings = verdict_or_findings
        action = action or _action(policy, bool(findings))
    counts = Counter(f.entity for f in findings)
    for entity, count in sorted(counts.items()):
        FIREWALL_ACTIONS.labels(direction=direction, entity=entity, action=action).inc(count)
    attributes: dict[str, str | int | list[str]] = {
        "headwater.guardrail.direction": direction,
        "headwater.guardrail.policy": policy,
        "headwater.guardrail.action": action,
        "headwater.guardrail.findings": len(findings),
        "headwater.guardrail.entities": sorted(counts),
    }
    for entity, count in counts.items():
        attributes[f"headwater.guardrail.entity.{entity.lower()}"] = count
    trace.get_current_span().set_attributes(attributes)
