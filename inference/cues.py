"""Question-type cues for the scoring router: what kind of question a text is (code,
math, compare, ... lookup) and how many multi-step cues it carries, from cheap word,
phrase and pattern tests over its first characters. Pure Python, no model calls.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

QUESTION_TYPES: tuple[str, ...] = (
    "chitchat",
    "code",
    "math",
    "compare",
    "summarize",
    "creative",
    "reasoning",
    "howto",
    "lookup",
)
# The cues read this many characters at most: a pasted log must not cost milliseconds,
# and a question's kind shows in its first lines.
_SCAN_CHARS = 1000


class _Text:
    """A question prepared once for all cues: lowercased words, and those words joined by
    single spaces with a space at both ends, so a phrase cue is a substring test that
    respects word boundaries (" how do i " cannot match inside "show do it")."""

    __slots__ = ("head", "joined", "word_set", "words")

    def __init__(self, text: str) -> None:
        self.head = text[:_SCAN_CHARS]
        self.words: list[str] = _WORD.findall(self.head.lower())
        self.word_set = frozenset(self.words)
        self.joined = f" {' '.join(self.words)} "


@dataclass(frozen=True)
class _Cues:
    """Cues of one question type: any of these words, phrases or patterns."""

    words: frozenset[str]
    phrases: tuple[str, ...]
    in_words: re.Pattern[str] | None  # searched in the joined lowercase words
    in_text: re.Pattern[str] | None  # searched in the raw text: digits and operators
    symbols: tuple[str, ...]  # substrings of the raw text

    def found(self, text: _Text) -> bool:
        return (
            not self.words.isdisjoint(text.word_set)
            or any(phrase in text.joined for phrase in self.phrases)
            or any(symbol in text.head for symbol in self.symbols)
            or (self.in_words is not None and self.in_words.search(text.joined) is not None)
            or (self.in_text is not None and self.in_text.search(text.head) is not None)
        )


def _cues(
    words: str,
    phrases: str = "",
    *,
    in_words: str = "",
    in_text: str = "",
    symbols: tuple[str, ...] = (),
) -> _Cues:
    # Few patterns, each starting with a literal or a digit: Python's re tries every
    # alternative at every position, which costs milliseconds on a pasted log.
    return _Cues(
        frozenset(words.split()),
        tuple(f" {phrase} " for phrase in phrases.split("|") if phrase),
        re.compile(in_words) if in_words else None,
        re.compile(in_text) if in_text else None,
        symbols,
    )


_WORD = re.compile(r"\w+")
# Checked in this order; the first that matches names the type, "lookup" otherwise.
# Code and arithmetic cues are the most specific, so they win over "write" or "why".
# Phrases are written as their words ("tl dr" for "tl;dr", "what s" for "what's").
_TYPE_CUES: tuple[tuple[str, _Cues], ...] = (
    (
        "code",
        # Not "class", "function", "exception" or "query": business class, the finance
        # function, an exception to a policy and "a query about" are HR questions.
        _cues(
            "python java javascript typescript golang rust sql regex bash powershell script "
            "stacktrace traceback compiler debug debugging refactor endpoint json yaml "
            "dockerfile kubernetes git segfault syntax deadlock crash crashes crashing",
            "def|stack trace|unit test|unit tests|null pointer|memory leak|leaks memory"
            "|out of memory",
            in_words=r" write an? (\w+ )?(function|script|query|class|program) | 5\d\ds ",
            symbols=("`", "()", "=>"),  # code spans, calls, arrows
        ),
    ),
    (
        "math",
        _cues(
            "calculate compute convert percent percentage average median probability ratio "
            "breakeven roi annualized annualised compound",
            "sum of|interest rate|growth rate|break even|how many more",
            in_text=r"\d\s*(?:[-+*/x×^]\s*\d|%\s*(?:of|per|a|an|each|every)\b)",
        ),
    ),
    (
        "compare",
        _cues(
            "compare comparison versus vs differ tradeoff tradeoffs",
            "difference between|pros and cons|trade off|trade offs|which is better"
            "|better than|which one should",
        ),
    ),
    (
        "summarize",
        _cues(
            "summarize summarise summary tldr recap condense",
            "tl dr|key points|overview of|main takeaways|in a nutshell",
        ),
    ),
    (
        "creative",
        _cues(
            "write draft compose poem story slogan tagline rewrite rephrase brainstorm "
            "announcement invitation toast",
            "ideas for|suggest a title|suggest a name|suggest titles|suggest names",
        ),
    ),
    (
        "reasoning",
        _cues(
            "why explain implication implications impact analyze analyse evaluate assess "
            "recommend strategy justify prioritize prioritise",
            "what would happen|what if|should we|should i|root cause|given that|how come",
        ),
    ),
    (
        "howto",
        _cues(
            "configure install setup submit reset enroll enrol",
            "how do i|how can i|how should i|how do we|how can we|how to|steps to|steps for"
            "|step to|where do i|where can i|set up|apply for|sign up|get access",
        ),
    ),
)
_GREETINGS: tuple[str, ...] = tuple(
    f" {greeting} "
    for greeting in (
        *("hi", "hello", "hey", "thanks", "thank you", "thx", "cheers", "bye", "ok", "okay"),
        *("good morning", "good afternoon", "good evening", "great", "cool", "nice"),
        *("how are you", "who are you", "what can you do"),
    )
)
# "Thanks, that helped" is chit-chat; "Hey, what is the travel policy?" is not.
_CHITCHAT_REST_WORDS = 2
# A brief factual ask ("what does X do?", "who approves Y?") leans small, whatever its kind.
_SIMPLE_OPENERS: tuple[str, ...] = tuple(
    f" {opener} "
    for opener in (
        *("what is", "what s", "what are", "what does", "who", "when", "where", "which"),
        *("is there", "do we", "does"),
    )
)
_SIMPLE_ASK_MAX_WORDS = 14
_MULTI_STEP_PHRASES = (" and then ", " step by step ", " for each ", " as well as ", " and also ")
_TWO_QUESTIONS = re.compile(r"\?[^?]+\?")
_ENUMERATION = re.compile(r"(^|\n)\s*(\d+[.)]|[-*•])\s+\S.*\n\s*(\d+[.)]|[-*•])\s+\S")
_CONDITIONS = (" if ", " assuming ", " given ", " unless ")
_MODALS = (" would ", " will ", " should ", " could ")


def question_type(text: str) -> str:
    """The kind of question, from cheap word and pattern cues: one of ``QUESTION_TYPES``."""
    return _question_type(_Text(text))


def _question_type(text: _Text) -> str:
    for greeting in _GREETINGS:
        if text.joined.startswith(greeting):
            if len(text.words) - greeting.count(" ") + 1 <= _CHITCHAT_REST_WORDS:
                return "chitchat"
            break
    for kind, cues in _TYPE_CUES:
        if cues.found(text):
            return kind
    if text.joined.endswith(" how ") and text.head.rstrip().endswith("?"):
        return "howto"  # "order business cards - how?"
    return "lookup"


def multi_step_cues(text: str) -> int:
    """How many distinct multi-part or multi-step cues the text carries."""
    return _multi_step_cues(_Text(text))


def _multi_step_cues(text: _Text) -> int:
    first = text.joined.find(" first ")
    condition = min((at for at in map(text.joined.find, _CONDITIONS) if at >= 0), default=-1)
    return sum(
        (
            _TWO_QUESTIONS.search(text.head) is not None,
            any(phrase in text.joined for phrase in _MULTI_STEP_PHRASES),
            first >= 0 and text.joined.find(" then ", first) > 0,
            "\n" in text.head and _ENUMERATION.search(text.head) is not None,
            condition >= 0 and any(text.joined.find(m, condition) > 0 for m in _MODALS),
            text.head.count(", ") >= 2,  # a list of requirements: goals, costs, risks
        )
    )


def _is_simple_ask(text: _Text) -> bool:
    if len(text.words) > _SIMPLE_ASK_MAX_WORDS:
        return False
    opening = f" {' '.join(text.words[:5])} "
    return any(opener in opening for opener in _SIMPLE_OPENERS)
