"""The console in a real headless Chromium (Debian's ``chromium`` and ``chromium-driver``,
driven by selenium through the system chromedriver; nothing is downloaded), against one
real Headwater app — the API and ingest worker over the embedded store, the session's
Kafka broker and vLLM server — behind a real uvicorn server, shared by every test here.

Topics are this run's own, so the DLQ and the audit trail hold only what these tests
wrote. Screenshots of each page go to ``$HEADWATER_SCREENSHOTS`` (default
``.run/screenshots``).
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from core.settings import Settings
from deploy.stack import LLM_MODEL_NAME, StackPaths
from headwater.processes import build_app
from tests.e2e.conftest import serving

ADMIN_KEY = "console-admin-key"
HR_KEY = "console-hr-key"
ENG_KEY = "console-eng-key"
BILLING_KEY = "console-billing-key"
CONNECTOR_KEY = "console-connector-key"
# A user id that is markup: every page that shows it must show it as text.
XSS_USER = "<img src=x onerror=\"window.__xss='user'\">mallory@acme.com"
XSS_KEY = "console-xss-key"
DRIFT_KEY = "console-initech-admin"
KEYS = [
    {"key": ADMIN_KEY, "tenant": "acme", "user_id": "root@acme.com", "roles": ["admin"]},
    {"key": HR_KEY, "tenant": "acme", "user_id": "hannah@acme.com", "groups": ["hr"]},
    {"key": ENG_KEY, "tenant": "acme", "user_id": "evan@acme.com", "groups": ["eng"]},
    {"key": BILLING_KEY, "tenant": "acme", "user_id": "bill@acme.com", "roles": ["billing"]},
    {"key": CONNECTOR_KEY, "tenant": "acme", "user_id": "wiki", "roles": ["connector"]},
    {"key": XSS_KEY, "tenant": "acme", "user_id": XSS_USER, "groups": ["hr"]},
    # Another tenant's admin: sees none of acme's letters, keys or records.
    {"key": "console-globex-admin", "tenant": "globex", "user_id": "g@globex", "roles": ["admin"]},
    # A tenant of its own for the drift test: no other test's questions in its reference.
    {"key": DRIFT_KEY, "tenant": "initech", "user_id": "ops@initech", "roles": ["admin"]},
]


@dataclass
class Console:
    """The served app: its base URL, settings, and an HTTP client for seeding."""

    base: str
    settings: Settings
    http: httpx.Client

    def api(self, method: str, path: str, key: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}"}
        return self.http.request(method, f"{self.base}{path}", headers=headers, **kwargs)


def _chromium() -> tuple[str, str] | None:
    browser = shutil.which("chromium")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


@pytest.fixture(scope="package")
def console(
    kafka_bootstrap: str, llm_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Console]:
    root = tmp_path_factory.mktemp("console")
    keys = root / "keys.json"
    keys.write_text(json.dumps({"keys": KEYS}))
    run = uuid.uuid4().hex[:8]
    settings = Settings(
        kafka_bootstrap=kafka_bootstrap,
        llm_small_url=llm_url,
        llm_small_tokenizer=StackPaths.default().models_dir / LLM_MODEL_NAME,
        data_dir=root / "data",
        api_keys_file=keys,
        consumer_group=f"console-{run}",
        documents_topic=f"console-{run}.documents",
        dlq_topic=f"console-{run}.documents.dlq",
        audit_topic=f"console-{run}.audit",
        principals_topic=f"console-{run}.principals",
        keys_topic=f"console-{run}.keys",
        drift_reference_size=20,
        drift_window=10,
        drift_probe_interval_s=5,
    )
    with serving(build_app(settings)) as url, httpx.Client(timeout=60) as http:
        yield Console(base=url.removesuffix("/v1"), settings=settings, http=http)


@pytest.fixture(scope="package")
def browser() -> Iterator[WebDriver]:
    found = _chromium()
    if found is None:
        pytest.fail("chromium and chromedriver are missing: run 'make tools'")
    binary, driver_path = found
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in (
        "--headless=new",
        "--no-sandbox",  # root in CI containers
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,1000",
        "--no-first-run",
        "--disable-extensions",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="package")
def screenshots() -> Path:
    folder = Path(os.environ.get("HEADWATER_SCREENSHOTS", ".run/screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def wait_for(browser: WebDriver, check: Callable[[WebDriver], Any], timeout_s: float = 30) -> Any:
    return WebDriverWait(browser, timeout_s, poll_frequency=0.05).until(check)


def sign_in(browser: WebDriver, console: Console, key: str) -> None:
    """Sign in through the sign-in page, as a person would."""
    browser.get(f"{console.base}/console/signin")
    browser.execute_script("sessionStorage.clear()")
    wait_for(browser, lambda b: b.find_element(By.TAG_NAME, "body").get_attribute("data-ready"))
    field = browser.find_element(By.ID, "credential")
    field.clear()
    field.send_keys(key)
    browser.find_element(By.CSS_SELECTOR, "#signin-form button").click()
    wait_for(browser, lambda b: b.current_url.endswith("/console/playground"))
    ready(browser)


def ready(browser: WebDriver) -> None:
    """Wait until the page's script has filled it (or shown its error)."""
    wait_for(
        browser,
        lambda b: b.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "true",
    )


def open_page(browser: WebDriver, console: Console, name: str) -> None:
    browser.get(f"{console.base}/console/{name}")
    ready(browser)


def eventually(check: Callable[[], bool], what: str, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"{what} did not happen within {timeout_s}s")
