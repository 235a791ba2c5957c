"""The OpenAPI document tells the truth: schemathesis (its own virtualenv,
``.venv-schemathesis``, made by ``make setup``) walks every operation of
``/openapi.json`` against a real API process and checks what comes back: no server
error, every status documented, bodies and headers as documented, 405 with ``Allow``.

The API runs without an ingest worker on a store of its own (no documents: a chat with
retrieval on is answered by the grounding refusal, without a model call), in front of the
session's real vLLM server with a 512-token window, so a fuzzed ``max_tokens`` either
fits a short generation or answers 400. The key is an ordinary user's: the admin, usage
and document routes answer 403, as documented.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from core.settings import Settings
from headwater.processes import build_app
from tests.e2e.conftest import HR_KEY, serving

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]
ST = REPO / ".venv-schemathesis" / "bin" / "st"


def test_schemathesis_finds_no_mismatch(settings: Settings, tmp_path: Path) -> None:
    assert ST.exists(), f"{ST} is missing: run 'make setup'"
    own = settings.model_copy(
        update={
            "data_dir": tmp_path / "data",
            "llm_context_tokens": 512,
            "rate_limit_rps": 0.0,  # the fuzzer's volume is not what this test is about
        }
    )
    with serving(build_app(own, run_ingest=False)) as base_url:
        result = subprocess.run(
            [
                str(ST),
                "run",
                base_url.removesuffix("/v1") + "/openapi.json",
                "--checks",
                "all",
                "--exclude-checks",
                # Stateful checks that need resources a plain user cannot create here.
                "use_after_free,ensure_resource_availability,ignored_auth,"
                "object_level_authorization,positive_data_acceptance",
                "--header",
                f"Authorization: Bearer {HR_KEY}",
                "--max-examples",
                "15",
                "--phases",
                "examples,coverage,fuzzing",
                "--seed",
                "1",
                "--request-timeout",
                "30",
                "--workers",
                "1",
            ],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=tmp_path,
        )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
