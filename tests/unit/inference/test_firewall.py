"""The prompt firewall, with real presidio recognizers (no mocks, no network)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import REGISTRY

from inference.firewall import Finding, PiiFirewall, StreamRedactor, Verdict, record

# One real value per entity type, as it would appear in a prompt or an answer.
SAMPLES: dict[str, list[str]] = {
    "EMAIL_ADDRESS": ["john.doe@example.com", "a.b-c+d@sub.example.co.uk"],
    "PHONE_NUMBER": [
        "+1 415-555-2671",
        "(415) 555-2671",
        "+44 20 7946 0958",
        "020 7946 0958 ext. 12",
    ],
    "CREDIT_CARD": ["4111 1111 1111 1111", "5500-0000-0000-0004", "378282246310005"],
    "IBAN_CODE": ["GB82 WEST 1234 5698 7654 32", "DE89370400440532013000"],
    "US_SSN": ["536-22-8726"],
    "UK_NINO": ["AB 12 34 56 C"],
    "FR_NIR": ["1 85 05 78 006 084 91"],
    "BE_NRN": ["85.07.30-033.28"],
    "ES_NIF": ["12345678Z"],
    "IT_FISCAL_CODE": ["RSSMRA85T10A562S"],
    "IN_AADHAAR": ["2345 6789 0124"],
    "API_KEY": [
        "sk-proj-abc123DEF456ghi789JKL012mno345PQR",
        "AKIAIOSFODNN7EXAMPLE",
        "ghp_" + "a1" * 18,
        "github_pat_11ABCDEFG0123456789_abcdefghijklmnop",
        "xoxb-1234567890-abcdefghij",
        "AIza" + "Sy0" * 11 + "ab",
        "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
        "hw_" + "Zx9-" * 10 + "abc",
    ],
    "ACCESS_TOKEN": [
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlF",
    ],
    "PRIVATE_KEY": [
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo\n"
        "q83hfGyKtQ==\n-----END RSA PRIVATE KEY-----",
    ],
}
# Secrets whose key stays and whose value is the finding.
ASSIGNMENTS = [
    ("password: hunter22", "hunter22"),
    ('DB_PASSWORD="s3cr3t!x"', "s3cr3t!x"),
    ('{"api_key": "zzz999yyy"}', "zzz999yyy"),
    ("Authorization: Bearer abcdefghijklmnop1234", "abcdefghijklmnop1234"),
]
PROSE = (
    "Please summarise the quarterly planning notes for the platform team, focusing on the "
    "migration timeline, the open risks around capacity, and which decisions still need an "
    "owner before Friday."
)
CASES = [(entity, value) for entity, values in SAMPLES.items() for value in values]


@pytest.fixture(scope="module")
def firewall() -> PiiFirewall:
    return PiiFirewall()


def _stream(redactor: StreamRedactor, deltas: list[str]) -> tuple[list[str], str]:
    """Feed ``deltas``; return the text released after each one, and everything."""
    released = [redactor.feed(delta) for delta in deltas]
    return released, "".join(released) + redactor.flush()


def _split(text: str, cuts: list[int]) -> list[str]:
    bounds = [0, *sorted(set(cuts)), len(text)]
    return [text[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


# --- detection ---------------------------------------------------------------------------


@pytest.mark.parametrize(("entity", "value"), CASES)
def test_each_entity_is_detected_and_redacted(
    firewall: PiiFirewall, entity: str, value: str
) -> None:
    text = f"Note for the team: {value} (see above)."
    start = text.index(value)

    (finding,) = firewall.detect(text)
    assert (finding.entity, finding.start, finding.end) == (entity, start, start + len(value))
    assert 0.5 <= finding.score <= 1
    verdict = firewall.apply(text, "redact")
    assert verdict.text == f"Note for the team: [{entity}] (see above)."
    assert verdict.action == "redacted"


@pytest.mark.parametrize(("text", "value"), ASSIGNMENTS)
def test_secret_assignments_redact_the_value_and_keep_the_key(
    firewall: PiiFirewall, text: str, value: str
) -> None:
    verdict = firewall.apply(text, "redact")

    assert value not in verdict.text
    assert [text[f.start : f.end] for f in verdict.findings] == [value]
    assert verdict.findings[0].entity in ("SECRET", "ACCESS_TOKEN")


@pytest.mark.parametrize(
    "text",
    [
        "card 4111 1111 1111 1112 fails the Luhn check",
        "and so does 5500-0000-0000-0005",
        "IBAN GB82 WEST 1234 5698 7654 33 has a bad check digit",
        "sk-learn-compatible-estimators-and-more is a phrase, not a key",
        "the password is never written here; max_tokens=4096",
        "SSN 123-45-6789 is the published sample number",
        PROSE,
        "In 2024 we shipped 3 releases and cut p95 latency from 180 ms to 95 ms.",
    ],
)
def test_lookalikes_are_not_flagged(firewall: PiiFirewall, text: str) -> None:
    assert firewall.detect(text) == []
    assert firewall.apply(text, "redact") == Verdict(text, (), "none")


def test_findings_are_sorted_and_do_not_overlap(firewall: PiiFirewall) -> None:
    text = " ; ".join(value for _, value in CASES)

    findings = firewall.detect(text)

    assert len(findings) == len(CASES)
    assert all(a.end <= b.start for a, b in zip(findings, findings[1:], strict=False))
    assert [f.entity for f in findings] == [entity for entity, _ in CASES]


def test_findings_below_the_threshold_are_dropped() -> None:
    strict = PiiFirewall(score_threshold=0.8)
    text = "mail john.doe@example.com, call +1 415-555-2671, ssn 536-22-8726"

    assert [f.entity for f in strict.detect(text)] == ["EMAIL_ADDRESS"]


def test_block_and_allow_leave_the_text_and_report_the_findings(firewall: PiiFirewall) -> None:
    text = "mail john.doe@example.com please"

    blocked = firewall.apply(text, "block")
    allowed = firewall.apply(text, "allow")

    assert (blocked.text, blocked.action) == (text, "blocked")
    assert (allowed.text, allowed.action) == (text, "allowed")
    assert blocked.findings == allowed.findings == (Finding("EMAIL_ADDRESS", 5, 25, 1.0),)
    assert firewall.apply(PROSE, "block").action == "none"


def test_clean_text_never_reaches_presidio(
    firewall: PiiFirewall, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    analyze = firewall._analyzer.analyze

    def spy(text: str, **kwargs: Any) -> Any:
        calls.append(text)
        return analyze(text, **kwargs)

    monkeypatch.setattr(firewall._analyzer, "analyze", spy)
    firewall.detect(PROSE)
    redactor = firewall.stream("redact")
    _stream(redactor, [word + " " for word in PROSE.split()])
    assert calls == []

    firewall.detect("mail john.doe@example.com")
    assert len(calls) == 1


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[object]]:
    """Fail (and record) any attempt to resolve a name or open a connection."""
    attempts: list[object] = []

    def refuse(*args: object, **kwargs: object) -> None:
        attempts.append(args)
        raise OSError("network access in a unit test")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    yield attempts


def test_building_and_detecting_never_touch_the_network(no_network: list[object]) -> None:
    firewall = PiiFirewall()
    text = "mail ops@corp.example.org, x@y.museum and not@localhost"

    found = [text[f.start : f.end] for f in firewall.detect(text)]

    assert found == ["ops@corp.example.org", "x@y.museum"]
    assert no_network == []


# --- streams ------------------------------------------------------------------------------


def _assert_streams_like_apply(firewall: PiiFirewall, text: str, deltas: list[str]) -> None:
    expected = firewall.apply(text, "redact")
    redactor = firewall.stream("redact")
    sent = ""
    for delta in deltas:
        sent += redactor.feed(delta)
        # Never ahead of the whole-text redaction: nothing of a PII value goes out early.
        assert expected.text.startswith(sent), (text, deltas, sent)
    sent += redactor.flush()
    assert sent == expected.text
    assert tuple(redactor.findings) == expected.findings
    assert redactor.action == expected.action


@pytest.mark.parametrize(("entity", "value"), CASES)
def test_stream_redacts_pii_split_at_every_character(
    firewall: PiiFirewall, entity: str, value: str
) -> None:
    text = f"Sure - reach them via {value}, or ask again."
    expected = firewall.apply(text, "redact").text
    assert f"[{entity}]" in expected

    _assert_streams_like_apply(firewall, text, list(text))
    _assert_streams_like_apply(firewall, text, [text])
    middle = text.index(value) + len(value) // 2
    _assert_streams_like_apply(firewall, text, [text[:middle], text[middle:]])


@pytest.mark.parametrize(("text", "value"), ASSIGNMENTS)
def test_stream_redacts_secret_assignments_split_at_every_character(
    firewall: PiiFirewall, text: str, value: str
) -> None:
    _assert_streams_like_apply(firewall, f"config: {text} done", list(f"config: {text} done"))


_PIECES = [value for _, value in CASES] + [text for text, _ in ASSIGNMENTS]
_WORDS = [
    *["the", "report", "is", "due", "on", "Friday", "and", "we", "need", "3", "more"],
    *["reviews", "at", "a", "x", "C", "GB", "AB"],
    *["2024", "42", "12", "-", "(", ")", "+", "ext", "password", "Bearer", "key:", "token"],
    *["email", "é", "—", "sk-", "eyJ", "-----BEGIN", "@", ".", "=", "id=AB", "tel:+44"],
    "4111 1111 1111 1112",
]
_SEPARATORS = [" ", " ", ", ", ". ", "\n", " - ", ": ", "; ", "", "  ", "\t", "/", "x"]


@st.composite
def _texts_with_pii(draw: st.DrawFn) -> tuple[str, list[int]]:
    words = st.tuples(st.sampled_from(_WORDS), st.sampled_from(_SEPARATORS))
    pii = st.tuples(st.sampled_from(_PIECES), st.sampled_from(_SEPARATORS))
    before = draw(st.lists(words | pii, max_size=6))
    after = draw(st.lists(words | pii, max_size=6))
    text = "".join(a + b for a, b in [*before, draw(pii), *after])
    cuts = draw(st.lists(st.integers(1, len(text) - 1), max_size=20))
    return text, cuts


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(case=_texts_with_pii())
def test_stream_matches_apply_wherever_the_deltas_split(
    firewall: PiiFirewall, case: tuple[str, list[int]]
) -> None:
    text, cuts = case
    _assert_streams_like_apply(firewall, text, _split(text, cuts))


def test_stream_holds_back_only_the_word_being_written(firewall: PiiFirewall) -> None:
    redactor = firewall.stream("redact")

    released, _ = _stream(redactor, ["Please summ", "arise the quarterly", " planning notes "])

    assert released == ["Please ", "summarise the ", "quarterly planning notes "]


def test_stream_of_prose_lags_at_most_a_two_letter_word(firewall: PiiFirewall) -> None:
    redactor = firewall.stream("redact")
    fed = sent = ""
    for word in PROSE.split():
        fed += word + " "
        sent += redactor.feed(word + " ")
        # Only a two-letter word waits for the next one (it could start "AB 12 34 56 C").
        assert fed[len(sent) :] in ("", word + " ")
        assert fed[len(sent) :] == "" or len(word) == 2
    assert sent + redactor.flush() == PROSE + " "


def test_stream_holds_an_open_number_until_it_closes(firewall: PiiFirewall) -> None:
    redactor = firewall.stream("redact")

    released = [
        redactor.feed(delta) for delta in ["call +44 20 ", "7946 ", "0958 ", "today, thanks"]
    ]

    assert released == ["call ", "", "", "[PHONE_NUMBER] today, "]
    assert redactor.flush() == "thanks"


def test_stream_block_stops_at_the_first_pii(firewall: PiiFirewall) -> None:
    redactor = firewall.stream("block")

    released, rest = _stream(
        redactor, ["Hello there, ", "mail john.doe@", "example.com now ", "more"]
    )

    assert released == ["Hello there, ", "mail ", "", ""]
    assert rest == "Hello there, mail "
    assert redactor.blocked
    assert redactor.action == "blocked"
    assert redactor.feed("even more text ") == ""
    assert [f.entity for f in redactor.findings] == ["EMAIL_ADDRESS"]


def test_stream_allow_passes_deltas_at_once_and_reports(firewall: PiiFirewall) -> None:
    text = "mail john.doe@example.com or call +1 415-555-2671 today"
    deltas = _split(text, [3, 11, 20, 40])
    redactor = firewall.stream("allow")

    released, everything = _stream(redactor, deltas)

    assert released == deltas
    assert everything == text
    assert tuple(redactor.findings) == firewall.apply(text, "allow").findings
    assert redactor.action == "allowed"


def test_stream_without_pii_releases_everything(firewall: PiiFirewall) -> None:
    redactor = firewall.stream("redact")

    _, everything = _stream(redactor, _split(PROSE, [5, 17, 60, 61, 140]))

    assert everything == PROSE
    assert redactor.findings == []
    assert redactor.action == "none"


# --- telemetry ---------------------------------------------------------------------------


def _count(direction: str, entity: str, action: str) -> float:
    labels = {"direction": direction, "entity": entity, "action": action}
    return REGISTRY.get_sample_value("headwater_firewall_actions_total", labels) or 0.0


def test_record_counts_and_traces_without_the_pii(
    firewall: PiiFirewall, spans: InMemorySpanExporter
) -> None:
    text = "mail john.doe@example.com or jane@example.org, card 4111 1111 1111 1111"
    verdict = firewall.apply(text, "redact")
    emails_before = _count("input", "EMAIL_ADDRESS", "redacted")
    cards_before = _count("input", "CREDIT_CARD", "redacted")

    with trace.get_tracer("test").start_as_current_span("guardrail input"):
        record("input", verdict, "redact")

    assert _count("input", "EMAIL_ADDRESS", "redacted") == emails_before + 2
    assert _count("input", "CREDIT_CARD", "redacted") == cards_before + 1
    (span,) = spans.get_finished_spans()
    attributes = dict(span.attributes or {})
    assert attributes == {
        "headwater.guardrail.direction": "input",
        "headwater.guardrail.policy": "redact",
        "headwater.guardrail.action": "redacted",
        "headwater.guardrail.findings": 3,
        "headwater.guardrail.entities": ("CREDIT_CARD", "EMAIL_ADDRESS"),
        "headwater.guardrail.entity.credit_card": 1,
        "headwater.guardrail.entity.email_address": 2,
    }
    exported = repr(span.to_json())
    for finding in verdict.findings:
        assert text[finding.start : finding.end] not in exported


def test_record_takes_a_stream_s_findings(
    firewall: PiiFirewall, spans: InMemorySpanExporter
) -> None:
    redactor = firewall.stream("block")
    _stream(redactor, ["call +1 415-555-2671 now"])
    before = _count("output", "PHONE_NUMBER", "blocked")

    with trace.get_tracer("test").start_as_current_span("guardrail output"):
        record("output", redactor.findings, "block")

    assert _count("output", "PHONE_NUMBER", "blocked") == before + 1
    (span,) = spans.get_finished_spans()
    assert (span.attributes or {})["headwater.guardrail.action"] == "blocked"
    assert "415-555-2671" not in repr(span.to_json())


def test_record_of_clean_text_counts_nothing(spans: InMemorySpanExporter) -> None:
    with trace.get_tracer("test").start_as_current_span("guardrail input"):
        record("input", Verdict(PROSE, (), "none"), "redact")

    (span,) = spans.get_finished_spans()
    assert (span.attributes or {})["headwater.guardrail.findings"] == 0
    assert (span.attributes or {})["headwater.guardrail.action"] == "none"
