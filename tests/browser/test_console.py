"""The operator's console in a real browser over the real app: sign in, ask with streaming
and citations, the ACL holding in the page, keys created and revoked, a dead letter
replayed, the usage chart, the audit trail, role checks that hold at the API, and markup
in titles, reasons and user ids shown as text."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select

from core.kafka import KafkaProducer
from tests.browser.conftest import (
    ADMIN_KEY,
    BILLING_KEY,
    CONNECTOR_KEY,
    DRIFT_KEY,
    ENG_KEY,
    HR_KEY,
    XSS_KEY,
    XSS_USER,
    Console,
    eventually,
    open_page,
    ready,
    sign_in,
    wait_for,
)

pytestmark = pytest.mark.browser

SALARY_DOC = "wiki:salary-bands-2026"
SALARY_TITLE = "Salary bands 2026"
QUESTION = "What are the salary bands for engineers in 2026?"
XSS_DOC = "wiki:holidays-2026"
XSS_TITLE = (
    "<script>window.__xss='title'</script>"
    "<img src=x onerror=\"window.__xss='title-img'\">Holiday calendar 2026"
)
XSS_RECORD_KEY = "<script>window.__xss='dlq'</script>"
DLQ_DOC = "wiki:<b>bold</b>"


def _publish(console: Console, doc_id: str, title: str, text: str, acl: dict[str, Any]) -> None:
    body = {
        "doc_id": doc_id,
        "version": 1,
        "title": title,
        "text": text,
        "acl": acl,
        "source": "wiki",
        "uri": f"https://wiki.acme.example/{doc_id.split(':')[1]}",
    }
    response = console.api("POST", "/v1/documents", CONNECTOR_KEY, json=body)
    assert response.status_code == 202, response.text


def _found(console: Console, key: str, query: str, doc_id: str) -> bool:
    response = console.api("POST", "/v1/search", key, json={"query": query, "top_k": 8})
    return response.status_code == 200 and any(
        hit["doc_id"] == doc_id for hit in response.json()["data"]
    )


@pytest.fixture(scope="module")
def seeded(console: Console) -> None:
    """Two documents through the HTTP connector API (one for hr, one public with markup
    in its title) and one event dead-lettered for a key that is markup."""
    _publish(
        console,
        SALARY_DOC,
        SALARY_TITLE,
        "Engineering salary bands for 2026: band E1 pays 52,000 to 61,000 euros, band E2 "
        "61,000 to 74,000 euros, band E3 74,000 to 92,000 euros.",
        {"groups": ["hr"]},
    )
    _publish(
        console,
        XSS_DOC,
        XSS_TITLE,
        "Holiday calendar 2026: the office is closed on 1 January, 1 May and 25 December.",
        {"public": True},
    )
    event = {
        "schema": "headwater.document/1",
        "op": "upsert",
        "tenant": "acme",
        "doc_id": DLQ_DOC,
        "version": 1,
        "acl": {"public": True},
        "text": "never indexed: its record key is wrong",
    }
    producer = KafkaProducer(console.settings.kafka_bootstrap)
    try:
        producer.send(
            console.settings.documents_topic,
            key=XSS_RECORD_KEY.encode(),
            value=json.dumps(event).encode(),
        )
    finally:
        producer.close()
    eventually(lambda: _found(console, HR_KEY, "salary bands", SALARY_DOC), "hr finds salary")
    eventually(lambda: _found(console, ENG_KEY, "holiday calendar", XSS_DOC), "holidays indexed")
    eventually(lambda: bool(_letters(console)), "the bad event reaches the DLQ")


def _letters(console: Console) -> list[dict[str, Any]]:
    response = console.api("GET", "/v1/admin/dlq", ADMIN_KEY)
    assert response.status_code == 200, response.text
    return list(response.json()["data"])


def _ask(browser: WebDriver, question: str) -> None:
    box = browser.find_element(By.ID, "question")
    box.clear()
    box.send_keys(question)
    budget = browser.find_element(By.ID, "max-tokens")
    budget.clear()
    budget.send_keys("24")  # a short answer: the CPU model's time is the test's
    browser.find_element(By.ID, "ask").click()
    wait_for(
        browser,
        lambda b: (
            b.find_element(By.TAG_NAME, "body").get_attribute("data-answered") in ("true", "error")
        ),
        timeout_s=120,
    )
    assert browser.find_element(By.TAG_NAME, "body").get_attribute("data-answered") == "true", (
        browser.find_element(By.ID, "error").text
    )


def _citations(browser: WebDriver) -> list[str]:
    return [item.text for item in browser.find_elements(By.CSS_SELECTOR, "#citations li")]


def _no_injection(browser: WebDriver) -> None:
    assert browser.execute_script("return window.__xss === undefined")
    assert not browser.find_elements(By.CSS_SELECTOR, "main img, header img, main script")


def _shot(browser: WebDriver, folder: Path, name: str) -> None:
    """The whole page: the window is stretched to its height for the picture."""
    size = browser.get_window_size()
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(size["width"], max(size["height"], int(height) + 140))
    try:
        browser.save_screenshot(str(folder / f"{name}.png"))
    finally:
        browser.set_window_size(size["width"], size["height"])


def test_sign_in_and_ask_streams_an_answer_with_a_citation(
    browser: WebDriver, console: Console, seeded: None, screenshots: Path
) -> None:
    sign_in(browser, console, HR_KEY)
    assert "hannah@acme.com" in browser.find_element(By.ID, "whoami").text
    _ask(browser, QUESTION)
    assert any(SALARY_TITLE in text for text in _citations(browser))
    assert browser.find_element(By.ID, "answer").text
    assert browser.find_element(By.ID, "route").text.startswith("small")
    assert browser.find_element(By.ID, "route-why").text not in ("", "…")
    assert "prompt" in browser.find_element(By.ID, "tokens").text
    assert "total" in browser.find_element(By.ID, "latency").text
    _shot(browser, screenshots, "playground")


def test_a_user_outside_the_acl_sees_no_citation(
    browser: WebDriver, console: Console, seeded: None
) -> None:
    sign_in(browser, console, ENG_KEY)
    _ask(browser, QUESTION)
    assert not any(SALARY_TITLE in text for text in _citations(browser))
    assert "52,000" not in browser.find_element(By.ID, "answer").text


def test_an_admin_creates_a_key_shown_once_and_revokes_it(
    browser: WebDriver, console: Console, screenshots: Path
) -> None:
    sign_in(browser, console, ADMIN_KEY)
    open_page(browser, console, "keys")
    browser.find_element(By.ID, "key-user").send_keys("temp@acme.com")
    browser.find_element(By.ID, "key-groups").send_keys("eng, ops")
    browser.find_element(By.CSS_SELECTOR, "#key-form button").click()
    wait_for(browser, lambda b: b.find_element(By.ID, "new-key-value").text)
    key = browser.find_element(By.ID, "new-key-value").text
    assert console.api("GET", "/v1/me", key).json()["user_id"] == "temp@acme.com"
    _shot(browser, screenshots, "keys")
    browser.refresh()  # shown once: gone from the page after a reload
    ready(browser)
    assert browser.find_element(By.ID, "new-key").get_attribute("hidden") is not None
    assert key not in browser.find_element(By.TAG_NAME, "body").text
    row = next(
        r
        for r in browser.find_elements(By.CSS_SELECTOR, "#keys-table tbody tr")
        if "temp@acme.com" in r.text
    )
    row.find_element(By.CSS_SELECTOR, "button.revoke").click()
    # The table is redrawn from the API after the revoke: read it in one script.
    wait_for(
        browser,
        lambda b: b.execute_script(
            """return [...document.querySelectorAll("#keys-table tbody tr")].some(
                (r) => r.textContent.includes("temp@acme.com") && !r.querySelector("button"))"""
        ),
    )
    assert console.api("GET", "/v1/me", key).status_code == 401


def test_an_admin_replays_a_dead_letter_from_operations(
    browser: WebDriver, console: Console, seeded: None, screenshots: Path
) -> None:
    before = _letters(console)
    sign_in(browser, console, ADMIN_KEY)
    open_page(browser, console, "operations")
    rows = browser.find_elements(By.CSS_SELECTOR, "#dlq tbody tr")
    assert len(rows) == len(before)
    # The readiness, route and drift panels are filled from the API.
    assert "store" in browser.find_element(By.ID, "readiness").text
    assert "query_distance" in browser.find_element(By.ID, "drift").text
    _shot(browser, screenshots, "operations")
    rows[0].find_element(By.CSS_SELECTOR, "button.replay").click()
    wait_for(browser, lambda b: "replayed" in b.find_element(By.ID, "dlq-status").text)
    # Its record key is still wrong: the worker dead-letters it again, with its reason.
    eventually(lambda: len(_letters(console)) == len(before) + 1, "the replayed letter returns")


def test_the_usage_chart_renders_for_billing(
    browser: WebDriver, console: Console, seeded: None, screenshots: Path
) -> None:
    answer = console.api(
        "POST",
        "/v1/chat/completions",
        HR_KEY,
        json={"messages": [{"role": "user", "content": QUESTION}], "max_tokens": 16},
    )
    assert answer.status_code == 200, answer.text
    sign_in(browser, console, BILLING_KEY)
    links = browser.find_elements(By.CSS_SELECTOR, "#nav a:not([hidden])")
    assert [link.text for link in links] == ["Playground", "Usage"]
    open_page(browser, console, "usage")
    Select(browser.find_element(By.ID, "group-by")).select_by_value("model")
    browser.find_element(By.CSS_SELECTOR, "#usage-form button[type=submit]").click()
    wait_for(browser, lambda b: "model" in b.find_element(By.ID, "usage-table").text)
    rows = browser.find_elements(By.CSS_SELECTOR, "#usage-table tbody tr")
    bars = browser.find_elements(By.CSS_SELECTOR, "#chart svg rect.bar")
    assert rows and len(bars) == len(rows)
    assert float(bars[0].get_attribute("width") or 0) > 0
    assert browser.find_element(By.ID, "csv").is_enabled()
    _shot(browser, screenshots, "usage")


def test_the_audit_page_shows_who_was_served_a_document(
    browser: WebDriver, console: Console, seeded: None, screenshots: Path
) -> None:
    sign_in(browser, console, ADMIN_KEY)
    browser.get(f"{console.base}/console/audit?doc_id={SALARY_DOC}")
    ready(browser)
    wait_for(browser, lambda b: "hannah@acme.com" in b.find_element(By.ID, "audit-table").text)
    table = browser.find_element(By.ID, "audit-table").text
    assert "evan@acme.com" not in table  # outside the ACL: never served it
    _shot(browser, screenshots, "audit")
    # One request's record, as the playground links to it.
    asked = console.api(
        "POST",
        "/v1/search",
        HR_KEY,
        json={"query": "salary bands", "top_k": 2},
    )
    request_id = asked.headers["x-request-id"]
    browser.get(f"{console.base}/console/audit?request_id={request_id}")
    ready(browser)
    wait_for(browser, lambda b: request_id in b.find_element(By.ID, "audit-record").text)
    record = browser.find_element(By.ID, "audit-record").text
    assert "hannah@acme.com" in record and SALARY_DOC in record
    _shot(browser, screenshots, "audit-request")


ADMIN_CALLS = [
    ("GET", "/v1/admin/keys"),
    ("POST", "/v1/admin/keys"),
    ("GET", "/v1/admin/dlq"),
    ("POST", "/v1/admin/dlq/0/0/replay"),
    ("GET", "/v1/admin/operations"),
    ("GET", "/v1/drift"),
    ("GET", "/v1/audit?doc_id=x"),
]


def test_a_user_without_the_admin_role_reaches_no_admin_page_or_call(
    browser: WebDriver, console: Console, seeded: None, screenshots: Path
) -> None:
    sign_in(browser, console, HR_KEY)
    links = browser.find_elements(By.CSS_SELECTOR, "#nav a:not([hidden])")
    assert [link.text for link in links] == ["Playground"]
    for page in ("keys", "operations", "audit", "usage"):
        open_page(browser, console, page)
        error = browser.find_element(By.ID, "error")
        assert error.is_displayed() and error.text.startswith("403"), (page, error.text)
        assert not browser.find_elements(By.CSS_SELECTOR, "main tbody tr td button")
    _shot(browser, screenshots, "forbidden")
    # The page's own credential, from the page: the API refuses every admin call.
    statuses = browser.execute_async_script(
        """
        const [calls, done] = arguments;
        const key = sessionStorage.getItem("headwater.credential");
        Promise.all(calls.map(([method, path]) => fetch(path, {
          method, headers: {Authorization: `Bearer ${key}`, "Content-Type": "application/json"},
          body: method === "POST" ? JSON.stringify({user_id: "x"}) : undefined,
        }).then((r) => r.status))).then(done);
        """,
        ADMIN_CALLS,
    )
    assert statuses == [403] * len(ADMIN_CALLS)


def test_another_tenants_admin_sees_none_of_this_tenants_letters(console: Console) -> None:
    response = console.api("GET", "/v1/admin/dlq", "console-globex-admin")
    assert response.status_code == 200 and response.json()["data"] == []
    letter = _letters(console)[0]
    replay = console.api(
        "POST",
        f"/v1/admin/dlq/{letter['partition']}/{letter['offset']}/replay",
        "console-globex-admin",
    )
    assert replay.status_code == 404


def test_markup_in_titles_reasons_and_user_ids_is_shown_as_text(
    browser: WebDriver, console: Console, seeded: None, screenshots: Path
) -> None:
    sign_in(browser, console, XSS_KEY)
    assert XSS_USER in browser.find_element(By.ID, "whoami").text
    _ask(browser, "When is the office closed for holidays in 2026?")
    assert any(XSS_TITLE in text for text in _citations(browser)), _citations(browser)
    _no_injection(browser)
    _shot(browser, screenshots, "xss-playground")

    sign_in(browser, console, ADMIN_KEY)
    open_page(browser, console, "operations")
    letter = _letters(console)[0]
    assert XSS_RECORD_KEY in letter["reason"]
    dlq = browser.find_element(By.ID, "dlq").text
    assert DLQ_DOC in dlq and XSS_RECORD_KEY in dlq
    _no_injection(browser)
    browser.get(f"{console.base}/console/audit?doc_id={XSS_DOC}")
    ready(browser)
    wait_for(browser, lambda b: XSS_USER in b.find_element(By.ID, "audit-table").text)
    _no_injection(browser)
    open_page(browser, console, "keys")
    assert XSS_USER in browser.find_element(By.ID, "keys-table").text
    _no_injection(browser)
    _shot(browser, screenshots, "xss-keys")


HR_TOPICS = [
    "parental leave",
    "sick leave",
    "remote work",
    "travel expenses",
    "overtime pay",
    "annual leave",
    "salary reviews",
    "pension contributions",
    "training budgets",
    "performance reviews",
    "probation periods",
    "notice periods",
    "health insurance",
    "bonus payments",
    "working hours",
]
ASTRONOMY = [
    "How long does Jupiter take to orbit the Sun?",
    "What is the surface temperature of Venus?",
    "Why do neutron stars spin so fast?",
    "How far away is the Andromeda galaxy?",
    "What causes a total solar eclipse?",
    "How are black holes detected by gravitational waves?",
    "What are the rings of Saturn made of?",
    "How old is the cosmic microwave background?",
    "Why is Mars red?",
    "How do astronomers measure the distance to a quasar?",
]


def test_operations_shows_drift_when_questions_change_domain(
    browser: WebDriver, console: Console, screenshots: Path
) -> None:
    """Drift through the real retriever and embedding model (settings: a reference of 20
    questions, a window of 10): HR questions, then astronomy."""

    def ask(question: str) -> None:
        response = console.api("POST", "/v1/search", DRIFT_KEY, json={"query": question})
        assert response.status_code == 200, response.text

    def drift() -> dict[str, Any]:
        response = console.api("GET", "/v1/drift", DRIFT_KEY)
        assert response.status_code == 200, response.text
        return dict(response.json())

    for n in range(30):
        ask(f"What is the company policy on {HR_TOPICS[n % len(HR_TOPICS)]}?")
    before = drift()["signals"]["query_distance"]["value"]
    assert before is not None and not drift()["alerting"]
    for question in ASTRONOMY:
        ask(question)
    after = drift()
    assert after["signals"]["query_distance"]["alerting"], after
    assert after["signals"]["query_distance"]["value"] > 3 * before
    sign_in(browser, console, DRIFT_KEY)
    open_page(browser, console, "operations")
    assert "DRIFTING" in browser.find_element(By.ID, "drift").text
    _shot(browser, screenshots, "operations-drift")
