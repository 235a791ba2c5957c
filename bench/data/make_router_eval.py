"""Writes the synthetic labelled set for ``headwater router eval`` (router_eval.jsonl).

    python bench/data/make_router_eval.py                  # rewrites router_eval.jsonl
    python bench/data/make_router_eval.py --seed 1 -o dev.jsonl   # a separate dev set

Deterministic for a seed. Questions are enterprise-style (HR and travel policy lookups,
IT how-tos, code, arithmetic, reasoning, comparisons, summaries, drafting, chit-chat)
filled from templates. Each template has a latent difficulty; each item a latent
"grounded" (whether the caller's permitted documents hold the answer), of which the
retrieval signals are noisy evidence.

Label rule of thumb, in order:
1. A template of a hard task (writing or debugging code, multi-step arithmetic,
   multi-step reasoning, comparison across sources, long drafting) needs large.
2. A question that needs the caller's documents, asked when they do not hold the
   answer (not grounded), needs large: a small model invents policy, a large one more
   often says what it cannot know or reasons from partial sources.
3. A summary over more than 2,500 context tokens needs large.
4. A follow-up at the fifth user turn or later, about anything but a plain lookup,
   needs large (it leans on the conversation).
5. Everything else needs small. Then 8% of labels are flipped: annotators disagree,
   and some easy asks trip a small model.

Retrieval signals: grounded items have 2-8 hits with a best cosine around 0.74 (sd
0.09); ungrounded ones have no hits 35% of the time, else 1-5 hits around 0.45 (sd
0.10), so the score distributions overlap. Retrieval is off for part of the items.
"""

from __future__ import annotations

import argparse
import json
import random
from dataclasses import dataclass
from pathlib import Path

SLOTS: dict[str, tuple[str, ...]] = {
    "role": ("new hire", "contractor", "part-time employee", "manager", "intern", "engineer"),
    "policy": (
        "remote work",
        "parental leave",
        "bereavement leave",
        "travel",
        "expense",
        "bring-your-own-device",
        "overtime",
        "sabbatical",
        "on-call compensation",
        "code of conduct",
    ),
    "city": ("Berlin", "London", "New York", "Singapore", "Toronto", "Lisbon"),
    "event": (
        "open enrollment",
        "performance review",
        "Q3 budget",
        "annual bonus",
        "expense submission",
        "training credit",
    ),
    "benefit": ("physiotherapy", "dental cleaning", "gym membership", "therapy", "eyeglasses"),
    "approval": ("overtime", "software purchase", "conference travel", "headcount"),
    "doc": ("statement of work", "NDA", "offer letter", "quarterly business review"),
    "task": (
        "request a new laptop",
        "reset my Okta MFA",
        "book a meeting room",
        "submit a travel expense in Concur",
        "add a dependent to my health plan",
        "get access to the finance share drive",
        "change my direct deposit account",
        "report a phishing email",
        "enroll in the 401(k) plan",
        "order business cards",
        "set up the VPN on a personal phone",
    ),
    "lang": ("Python", "JavaScript", "Go", "Java"),
    "construct": ("list comprehension", "for loop", "switch statement", "try/except block"),
    "gitcmd": ("rebase -i", "stash pop", "cherry-pick", "reset --soft HEAD~1"),
    "spec": (
        "parses the payroll CSV export and flags duplicate employee ids",
        "retries an HTTP call with exponential backoff and jitter",
        "merges overlapping date ranges of leave requests",
        "validates IBANs and returns a clear error for each failure",
    ),
    "error": ("KeyError", "a TypeError", "a deadlock", "an out-of-memory error"),
    "service": ("billing", "search", "badge-reader", "payroll sync"),
    "pct": ("3", "7.5", "12", "15", "20"),
    "amount": ("1,200", "18,000", "45,000", "250,000"),
    "n": ("3", "4", "6", "12"),
    "fact": (
        "attrition in the support team rose to 18% last quarter",
        "our largest customer asked for EU data residency",
        "the hiring freeze ends in March",
        "two of five on-call engineers leave in June",
    ),
    "decision": (
        "move the team to a four-day week",
        "open a Frankfurt region",
        "backfill the open roles with contractors",
        "delay the ERP migration by a quarter",
    ),
    "team": ("platform", "payments", "data", "identity"),
    "plan": ("PPO", "HDHP", "HMO"),
    "tool": ("Snowflake", "BigQuery", "Databricks", "Jira", "Workday"),
    "initiative": (
        "a mentoring programme for new managers",
        "moving the Lisbon office to a hybrid schedule",
        "a shared on-call rotation across product teams",
    ),
}


@dataclass(frozen=True)
class Template:
    category: str
    texts: tuple[str, ...]
    hard: bool  # rule 1
    grounding: bool  # needs the caller's documents (rule 2)
    retrieval_p: float  # how often retrieval runs for such a question
    weight: float  # share of the set


TEMPLATES: tuple[Template, ...] = (
    Template(
        "lookup",
        (
            "How many vacation days do {role}s get per year?",
            "What is our {policy} policy?",
            "When is the {event} deadline this year?",
            "Who approves {approval} requests?",
            "What is the per diem for {city}?",
            "Is {benefit} covered by our health plan?",
            "What's the notice period for {role}s?",
            "Where can I find the {doc} template?",
            "What are the core hours at the {city} office?",
            "How much is the home-office allowance for {role}s?",
            "What is the maximum hotel rate in {city}?",
            "Which public holidays does the {city} office observe?",
            "Do {role}s get a {benefit} stipend?",
            "Why was my {policy} claim rejected?",
            "Explain the {policy} policy in simple terms",
            "is {benefit} reimbursed for {role}s",
        ),
        hard=False,
        grounding=True,
        retrieval_p=0.95,
        weight=0.26,
    ),
    Template(
        "howto",
        (
            "How do I {task}?",
            "What are the steps to {task}?",
            "How can I {task} from home?",
            "Where do I go to {task}?",
            "Can you walk me through how to {task}?",
            "{task} - how?",
        ),
        hard=False,
        grounding=True,
        retrieval_p=0.95,
        weight=0.16,
    ),
    Template(
        "code-easy",
        (
            "What does `git {gitcmd}` do?",
            "What is the {lang} syntax for a {construct}?",
            "Which port does the internal {service} endpoint listen on?",
            "What's the naming convention for feature branches in our repos?",
        ),
        hard=False,
        grounding=False,
        retrieval_p=0.5,
        weight=0.05,
    ),
    Template(
        "code-hard",
        (
            "Write a {lang} function that {spec}.",
            "Why does this {lang} code raise {error}?\n```\nfor row in rows:\n"
            "    totals[row['dept']] += row['amount']\n```",
            "Refactor our {service} client to use async IO and add unit tests.",
            "The {service} service returns 502s under load since the last deploy; the "
            "stack trace points at the connection pool. What is the root cause and the fix?",
            "Write a SQL query that returns, for each department, the three highest-paid "
            "employees and their tenure.",
            "Our {service} job leaks memory over a few days. How would you find the leak?",
        ),
        hard=True,
        grounding=False,
        retrieval_p=0.5,
        weight=0.05,
    ),
    Template(
        "math-easy",
        (
            "What is {pct}% of {amount}?",
            "Convert {amount} EUR to USD at 1.08.",
            "What's {n} x 40 hours?",
        ),
        hard=False,
        grounding=False,
        retrieval_p=0.4,
        weight=0.04,
    ),
    Template(
        "math-hard",
        (
            "If our cloud bill of ${amount} grows {pct}% per month, what will it be after "
            "{n} months, and in which month does it pass twice today's bill?",
            "Calculate the break-even point for the new tier if fixed costs are ${amount} "
            "and each seat earns $35 margin.",
            "We have {n} support agents handling 900 tickets a day at 11 minutes each; how "
            "many more agents keep utilisation under 80%?",
            "Revenue went from $40M to $61M over {n} years: what is the compound annual "
            "growth rate, and what do we reach in two more years at that rate?",
        ),
        hard=True,
        grounding=False,
        retrieval_p=0.4,
        weight=0.03,
    ),
    Template(
        "reasoning-easy",
        (
            "Why do we need a badge to enter the {city} office?",
            "Why do expense reports need a receipt over $75?",
            "Should I cc my manager on {approval} requests?",
        ),
        hard=False,
        grounding=True,
        retrieval_p=0.9,
        weight=0.04,
    ),
    Template(
        "reasoning-hard",
        (
            "Given that {fact}, should we {decision}? Lay out the risks.",
            "What would happen to our on-call load if we merged the {team} and payments rotations?",
            "Our NPS dropped 12 points after the {tool} migration. What are the likely root "
            "causes, and what should we check first?",
            "Assess the impact of the new {policy} policy on teams in {city} and Toronto.",
            "How should we prioritise {n} open security findings if we only have one "
            "engineer this sprint? Explain the order.",
            "{fact}. what should we do?",
        ),
        hard=True,
        grounding=True,
        retrieval_p=0.9,
        weight=0.06,
    ),
    Template(
        "compare-easy",
        (
            "What's the difference between PTO and sick leave?",
            "What's the difference between the {plan} and HMO plans?",
            "Is the {city} or the London office closer to the airport?",
        ),
        hard=False,
        grounding=True,
        retrieval_p=0.95,
        weight=0.03,
    ),
    Template(
        "compare-hard",
        (
            "Compare the {plan} and HDHP health plans for a family of four with one planned "
            "surgery next year; which is cheaper overall?",
            "Compare our 2024 and 2025 {policy} policies and list every change that affects "
            "{role}s.",
            "Which is better for the data team, {tool} or Snowflake, given our budget and "
            "the security review findings?",
            "Pros and cons of moving the {city} office to a hybrid schedule versus keeping "
            "it on-site?",
        ),
        hard=True,
        grounding=True,
        retrieval_p=0.95,
        weight=0.04,
    ),
    Template(
        "summarize",
        (
            "Summarize the {doc} for me.",
            "Give me the key points of the {policy} policy.",
            "TL;DR of last week's all-hands notes?",
            "Can you recap the Q3 board update?",
            "What are the main takeaways from the {event} guidelines?",
        ),
        hard=False,
        grounding=True,
        retrieval_p=1.0,
        weight=0.06,
    ),
    Template(
        "creative-easy",
        (
            "Draft a short email to my team announcing the {event} deadline.",
            "Write a friendly Slack reminder about {event}.",
            "Suggest a title for a lunch-and-learn about {tool}.",
        ),
        hard=False,
        grounding=False,
        retrieval_p=0.5,
        weight=0.06,
    ),
    Template(
        "creative-hard",
        (
            "Write a two-page proposal for {initiative}, with goals, costs, risks and a timeline.",
            "Rewrite our {policy} policy in plain language for non-native speakers, keeping "
            "every legal requirement.",
        ),
        hard=True,
        grounding=False,
        retrieval_p=0.6,
        weight=0.02,
    ),
    Template(
        "chitchat",
        (
            "hi",
            "Hello!",
            "thanks!",
            "thank you, that helped",
            "good morning",
            "what can you do?",
            "who are you?",
            "ok great",
            "cheers",
        ),
        hard=False,
        grounding=False,
        retrieval_p=0.6,
        weight=0.07,
    ),
)
FOLLOW_UPS = (
    "And what about for {role}s?",
    "What if I'm based in {city}?",
    "Can you explain that last point in more detail?",
    "ok and who do I ask if that doesn't work?",
    "Does that change next year?",
)
PREFIXES = ("", "", "", "", "Quick question: ", "Hey, ", "Hi team - ", "pls ")
FOLLOW_UP_P = 0.2  # of the questions that need documents, asked as a follow-up
FLIP_SHARE = 0.08
LONG_SUMMARY_TOKENS = 2500


def _fill(text: str, rng: random.Random) -> str:
    for name, values in SLOTS.items():
        while "{" + name + "}" in text:
            text = text.replace("{" + name + "}", rng.choice(values), 1)
    return text


def _signals(rng: random.Random, *, grounded: bool, retrieval: bool) -> dict[str, object]:
    if not retrieval:
        return {"hits": 0, "top_score": None, "context_tokens": 0, "retrieval": False}
    if grounded:
        hits = rng.randint(2, 8)
        top = rng.gauss(0.74, 0.09)
    elif rng.random() < 0.35:
        return {"hits": 0, "top_score": None, "context_tokens": 0, "retrieval": True}
    else:
        hits = rng.randint(1, 5)
        top = rng.gauss(0.45, 0.10)
    context = sum(rng.randint(120, 420) for _ in range(hits))
    top = round(min(0.97, max(0.05, top)), 3)
    return {"hits": hits, "top_score": top, "context_tokens": context, "retrieval": True}


def _item(rng: random.Random) -> dict[str, object]:
    template = rng.choices(TEMPLATES, weights=[t.weight for t in TEMPLATES])[0]
    question = _fill(rng.choice(template.texts), rng)
    if template.category != "chitchat":
        question = rng.choice(PREFIXES) + question
    follow_up = template.grounding and rng.random() < FOLLOW_UP_P
    retrieval = rng.random() < template.retrieval_p
    # Retrieval searches with the last user message: a terse follow-up finds less.
    grounded_p = (0.5 if follow_up else 0.8) if template.grounding else 0.3
    grounded = retrieval and rng.random() < grounded_p
    signals = _signals(rng, grounded=grounded, retrieval=retrieval)
    if template.category == "summarize" and signals["hits"]:
        signals["context_tokens"] = rng.randint(400, 5000)
    large = template.hard or (template.grounding and not grounded)
    context_tokens = signals["context_tokens"]
    assert isinstance(context_tokens, int)
    if template.category == "summarize" and context_tokens > LONG_SUMMARY_TOKENS:
        large = True
    turns = 1
    item: dict[str, object] = {"question": question}
    if follow_up:
        turns = rng.randint(2, 7)
        item = {"messages": _conversation(rng, question, turns)}
        if turns >= 5 and template.category not in ("lookup", "chitchat"):
            large = True
    if rng.random() < FLIP_SHARE:
        large = not large
    return {
        **item,
        "needs": "large" if large else "small",
        **signals,
        "turns": turns,
        "category": template.category,
    }


def _conversation(rng: random.Random, question: str, turns: int) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": "You answer questions about Acme's policies."}]
    earlier = [_fill(rng.choice(TEMPLATES[0].texts), rng) for _ in range(turns - 1)]
    for n, asked in enumerate([question, *earlier[1:]]):
        messages.append({"role": "user", "content": asked})
        messages.append(
            {"role": "assistant", "content": f"Here is what the sources say ({n + 1}). " * 6}
        )
    messages.append({"role": "user", "content": _fill(rng.choice(FOLLOW_UPS), rng)})
    return messages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--items", type=int, default=260)
    parser.add_argument(
        "-o", "--output", type=Path, default=Path(__file__).with_name("router_eval.jsonl")
    )
    args = parser.parse_args()
    rng = random.Random(args.seed)
    seen: set[str] = set()
    lines: list[str] = []
    while len(lines) < args.items:
        line = json.dumps(_item(rng), ensure_ascii=False)
        text = json.loads(line).get("question") or line
        if text in seen:
            continue
        seen.add(text)
        lines.append(line)
    args.output.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {len(lines)} items to {args.output}")


if __name__ == "__main__":
    main()
