"""Smoke-check and time a running OpenAI-compatible LLM server (vLLM from deploy/llm/serve.sh).

Checks /health, /v1/models, a non-streaming and a streaming chat completion (with
`stream_options.include_usage`), then times a completion of exactly --bench-tokens tokens.
Standard library only, so any Python can run it:

    python deploy/llm/check_server.py --port 8001 --model smollm2-135m-instruct
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

QUESTION = "What is the capital of France? Answer in one sentence."


def request(url: str, body: dict[str, Any] | None = None, timeout_s: float = 120) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout_s) as resp:
        raw = resp.read()
    return json.loads(raw) if raw else None


def stream_events(url: str, body: dict[str, Any], timeout_s: float = 120) -> Iterator[Any]:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=timeout_s) as resp:
        for line in resp:
            text = line.decode().strip()
            if not text.startswith("data:"):
                continue
            payload = text[len("data:") :].strip()
            if payload == "[DONE]":
                return
            yield json.loads(payload)


def check(base: str, model: str, *, bench_tokens: int, bench_runs: int) -> None:
    request(f"{base}/health")
    models = [m["id"] for m in request(f"{base}/v1/models")["data"]]
    assert model in models, f"{model!r} not served: {models}"
    print(f"health ok; models: {models}")

    chat = {"model": model, "messages": [{"role": "user", "content": QUESTION}], "temperature": 0}
    reply = request(f"{base}/v1/chat/completions", {**chat, "max_tokens": 32})
    text, usage = reply["choices"][0]["message"]["content"], reply["usage"]
    assert text.strip() and usage["completion_tokens"] > 0, reply
    print(f"chat: {text!r} usage={usage}")

    body = {**chat, "max_tokens": 32, "stream": True, "stream_options": {"include_usage": True}}
    parts, usage = [], None
    for event in stream_events(f"{base}/v1/chat/completions", body):
        parts.extend(c["delta"].get("content") or "" for c in event["choices"])
        usage = event.get("usage") or usage
    assert "".join(parts).strip() and usage and usage["completion_tokens"] > 0, (parts, usage)
    print(f"stream: {''.join(parts)!r} usage={usage}")

    # ignore_eos (a vLLM extension) makes the completion exactly bench_tokens long.
    timed = {**chat, "max_tokens": bench_tokens, "ignore_eos": True}
    rates = []
    for _ in range(bench_runs):
        start = time.perf_counter()
        usage = request(f"{base}/v1/chat/completions", timed)["usage"]
        rates.append(usage["completion_tokens"] / (time.perf_counter() - start))
    shown = ", ".join(f"{r:.1f}" for r in rates)
    print(
        f"bench: {bench_tokens}-token completion, median {statistics.median(rates):.1f} tok/s "
        f"(runs: {shown})"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--model", default="smollm2-135m-instruct", help="served model name")
    parser.add_argument("--bench-tokens", type=int, default=64)
    parser.add_argument("--bench-runs", type=int, default=5)
    args = parser.parse_args(argv)
    check(
        f"http://{args.host}:{args.port}",
        args.model,
        bench_tokens=args.bench_tokens,
        bench_runs=args.bench_runs,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
