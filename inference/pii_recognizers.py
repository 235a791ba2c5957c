"""The firewall's detectors: the compiled prefilter that decides which entity types a
text can contain at all, and the presidio analyzer it gates (presidio's recognizers,
our own pattern recognizers for ids presidio lacks and for API keys and secrets, and
their checksum helpers) on a blank spaCy pipeline: no trained model, no download, no
network.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import spacy
import tldextract
from presidio_analyzer import (
    AnalyzerEngine,
    EntityRecognizer,
    Pattern,
    PatternRecognizer,
    RecognizerRegistry,
    RecognizerResult,
)
from presidio_analyzer.context_aware_enhancers import ContextAwareEnhancer
from presidio_analyzer.nlp_engine import NlpArtifacts, SpacyNlpEngine
from presidio_analyzer.predefined_recognizers import (
    CreditCardRecognizer,
    EmailRecognizer,
    EsNifRecognizer,
    IbanRecognizer,
    InAadhaarRecognizer,
    ItFiscalCodeRecognizer,
    PhoneRecognizer,
    UkNinoRecognizer,
    UsSsnRecognizer,
)

# libphonenumber regions tried for national-format numbers (international "+" numbers
# are found in any of them). Presidio's default list less CA, which the US pass covers
# (one numbering plan); each region costs ~0.1 ms per candidate number.
DEFAULT_PHONE_REGIONS = ("US", "GB", "DE", "FR", "IL", "IN", "BR")

_NUMERIC_ENTITIES = (
    "CREDIT_CARD",
    "IBAN_CODE",
    "PHONE_NUMBER",
    "US_SSN",
    "UK_NINO",
    "ES_NIF",
    "IT_FISCAL_CODE",
    "IN_AADHAAR",
    "FR_NIR",
    "BE_NRN",
)
# Keys of a `key = value` secret assignment; the value is the finding.
_SECRET_KEYWORDS = (
    r"(?:pass(?:word|wd|phrase)|pwd|secret|(?:api|access|secret|private)[_-]?key"
    r"|(?:auth|access|refresh|api|bearer|session|id)[_-]?token|credentials?)"
)
_CASE_SENSITIVE = re.DOTALL | re.MULTILINE

# Prefilter: each trigger is a cheap regex that every match of its entities contains
# (digits: five digits with at most four other characters between each, as in any card,
# IBAN, phone or id), or that precedes it by at most `reach` characters (the lookbehinds
# of `password: <value>` and `Bearer <token>`). A text that triggers nothing skips
# presidio entirely.
# The slow case-insensitive keyword regexes run only where a lowercase stem occurs.
_SECRET_STEMS = ("pass", "pwd", "secret", "key", "token", "credential", "bearer")
_TRIGGERS: tuple[tuple[re.Pattern[str], tuple[str, ...], int, tuple[str, ...]], ...] = (
    (re.compile(r"\d(?:[^\d\n]{0,4}\d){4}"), _NUMERIC_ENTITIES, 0, ()),
    (re.compile("@"), ("EMAIL_ADDRESS",), 0, ()),
    (
        re.compile(r"sk-|[sr]k_(?:live|test)_|A[BKS]IA|ACCA|gh[opsur]_|github_pat_|xox|AIza|hw_"),
        ("API_KEY",),
        0,
        (),
    ),
    (re.compile(r"eyJ|(?i:bearer)\s"), ("ACCESS_TOKEN",), 8, ()),
    (re.compile("-----BEGIN"), ("PRIVATE_KEY",), 0, ()),
    (
        re.compile(_SECRET_KEYWORDS + r"[\"']?\s{0,3}[:=]", re.IGNORECASE),
        ("SECRET",),
        32,
        _SECRET_STEMS,
    ),
)


# --- recognizers ----------------------------------------------------------------------


class _OfflineEmailRecognizer(EmailRecognizer):
    """Presidio's email recognizer, checking domains against tldextract's bundled list.

    The stock one calls ``tldextract.extract``, which fetches the public suffix list over
    the network on first use; this one never does.
    """

    def __init__(self) -> None:
        super().__init__()
        self._suffixes = tldextract.TLDExtract(cache_dir=None, suffix_list_urls=())

    def validate_result(self, pattern_text: str) -> bool:
        return self._suffixes(pattern_text).fqdn != ""


class _PhoneRecognizer(PhoneRecognizer):
    """Presidio's libphonenumber recognizer; a number valid for a region scores 0.6.

    (Presidio gives 0.4 and relies on context words, which a blank pipeline has none of.)
    """

    SCORE = 0.6


class _NoContextEnhancer(ContextAwareEnhancer):
    """Keeps recognizer scores as they are: a finding depends on its own text only.

    That locality is what lets a stream be redacted piecewise exactly as a whole text.
    """

    def __init__(self) -> None:
        super().__init__(
            context_similarity_factor=0,
            min_score_with_context_similarity=0,
            context_prefix_count=0,
            context_suffix_count=0,
        )

    def enhance_using_context(
        self,
        text: str,
        raw_results: list[RecognizerResult],
        nlp_artifacts: NlpArtifacts,
        recognizers: list[EntityRecognizer],
        context: list[str] | None = None,
    ) -> list[RecognizerResult]:
        del text, nlp_artifacts, recognizers, context  # the signature is presidio's
        return raw_results


class _ChecksumRecognizer(PatternRecognizer):
    """A pattern whose matches count only when their digits pass a checksum."""

    def __init__(self, entity: str, regex: str, check: Callable[[str], bool]) -> None:
        super().__init__(
            supported_entity=entity,
            patterns=[Pattern(entity.lower(), regex, 0.5)],
            global_regex_flags=_CASE_SENSITIVE,
        )
        self._check = check

    def validate_result(self, pattern_text: str) -> bool:
        return self._check(pattern_text)


def _fr_nir_valid(text: str) -> bool:
    """French NIR: the last two digits are 97 - (the first 13 mod 97); Corsica 2A/2B."""
    digits = re.sub(r"\s", "", text).upper().replace("2A", "19").replace("2B", "18")
    return 97 - int(digits[:13]) % 97 == int(digits[13:])


def _be_nrn_valid(text: str) -> bool:
    """Belgian national number: 97 - (first nine mod 97), with 2 prefixed after 2000."""
    digits = re.sub(r"\D", "", text)
    body, check = int(digits[:9]), int(digits[9:])
    return check in (97 - body % 97, 97 - (2_000_000_000 + body) % 97)


def _secret_recognizers() -> list[EntityRecognizer]:
    api_keys = [
        # OpenAI (legacy and project keys); a digit is required so "sk-learn-..." passes.
        r"\bsk-(?:proj-|svcacct-|admin-)?(?=[A-Za-z0-9_-]*\d)[A-Za-z0-9_-]{32,}",
        r"\b(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}\b",  # AWS access key id
        r"\b(?:gh[opsur]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})\b",  # GitHub
        r"\bxox[abposr]-[A-Za-z0-9-]{10,}",  # Slack
        r"\bAIza[0-9A-Za-z_-]{35}(?![0-9A-Za-z_-])",  # Google
        r"\b[sr]k_(?:live|test)_[0-9A-Za-z]{16,}\b",  # Stripe
        r"\bhw_[A-Za-z0-9_-]{32,}",  # Headwater's own keys (acl.keys)
    ]
    tokens = [
        r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*",  # JWT
        r"(?<=\b(?i:bearer)\s)[A-Za-z0-9._~+/-]{16,}=*",  # Authorization: Bearer ...
    ]
    pem = (
        r"-----BEGIN[A-Z ]{0,40}PRIVATE KEY(?: BLOCK)?-----[\s\S]*?"
        r"(?:-----END[A-Z ]{0,40}PRIVATE KEY(?: BLOCK)?-----|\Z)"
    )
    assignment = (
        rf"(?<={_SECRET_KEYWORDS}[\"']?\s{{0,3}}[:=]\s{{0,3}}[\"']?)"
        r"(?!(?:true|false|null|none)\b)[^\s\"'`,;]{4,}"
    )

    def recognizer(entity: str, regexes: list[str], score: float, flags: int) -> EntityRecognizer:
        patterns = [Pattern(f"{entity.lower()}_{i}", rx, score) for i, rx in enumerate(regexes)]
        return PatternRecognizer(
            supported_entity=entity, patterns=patterns, global_regex_flags=flags
        )

    return [
        recognizer("API_KEY", api_keys, 0.9, _CASE_SENSITIVE),
        recognizer("ACCESS_TOKEN", tokens, 0.8, _CASE_SENSITIVE),
        recognizer("PRIVATE_KEY", [pem], 1.0, _CASE_SENSITIVE),
        recognizer("SECRET", [assignment], 0.7, _CASE_SENSITIVE | re.IGNORECASE),
    ]


def _recognizers(phone_regions: Sequence[str]) -> list[EntityRecognizer]:
    # Every recognizer is registered for "en": ids from other countries turn up in
    # English text too (presidio files the Spanish and Italian ones under es/it).
    return [
        _OfflineEmailRecognizer(),
        _PhoneRecognizer(supported_regions=tuple(phone_regions)),
        CreditCardRecognizer(),
        IbanRecognizer(),
        UsSsnRecognizer(),
        UkNinoRecognizer(),
        EsNifRecognizer(supported_language="en"),
        ItFiscalCodeRecognizer(supported_language="en"),
        InAadhaarRecognizer(),
        _ChecksumRecognizer(
            "FR_NIR",
            r"\b[12] ?\d{2} ?(?:0[1-9]|1[0-2]|[2-9]\d) ?(?:\d{2}|2[AB]) ?\d{3} ?\d{3} ?\d{2}\b",
            _fr_nir_valid,
        ),
        _ChecksumRecognizer("BE_NRN", r"\b\d{2}\.?\d{2}\.?\d{2}-\d{3}\.?\d{2}\b", _be_nrn_valid),
        *_secret_recognizers(),
    ]


def _build_analyzer(phone_regions: Sequence[str]) -> AnalyzerEngine:
    """An analyzer over a blank spaCy 'en' pipeline, built without ever calling
    ``SpacyNlpEngine.load`` (which would download a trained model)."""
    nlp_engine = SpacyNlpEngine(models=[{"lang_code": "en", "model_name": "blank:en"}])
    # Set where load() would spacy.load() (and download) a model; presidio types the
    # attribute as None until then.
    nlp_engine.nlp = {"en": spacy.blank("en")}  # type: ignore[assignment]
    registry = RecognizerRegistry(supported_languages=["en"])
    for recognizer in _recognizers(phone_regions):
        registry.add_recognizer(recognizer)
    return AnalyzerEngine(
        registry=registry,
        nlp_engine=nlp_engine,
        supported_languages=["en"],
        context_aware_enhancer=_NoContextEnhancer(),
    )


# --- the prefilter --------------------------------------------------------------------


def _triggered_entities(text: str, start: int = 0, end: int | None = None) -> list[str]:
    """The entity types that ``text[start:end]`` could contain, by the prefilter (which
    looks a little before ``start`` for the keys of lookbehind entities)."""
    end = len(text) if end is None else end
    found: list[str] = []
    for trigger, entities, reach, stems in _TRIGGERS:
        begin = max(0, start - reach)
        if stems and not _mentions(text, begin, end, stems):
            continue
        if trigger.search(text, begin, end):
            found += entities
    return found


def _mentions(text: str, start: int, end: int, stems: Sequence[str]) -> bool:
    """Whether ``text[start:end]``, lowercased, contains any of ``stems``."""
    segment = text[start:end].lower()
    return any(stem in segment for stem in stems)
