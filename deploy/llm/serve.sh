#!/usr/bin/env bash
# Runs vLLM's OpenAI-compatible server on CPU in the foreground (exec: the caller's PID is the
# server; SIGTERM/SIGINT stop it and its engine processes). Set up first with deploy/llm/setup.sh.
#
# Usage: deploy/llm/serve.sh [MODEL_DIR [SERVED_NAME [PORT]]] [-- extra vLLM args...]
#   MODEL_DIR    default $HEADWATER_LLM_MODEL_DIR, else <models dir>/smollm2-135m-instruct
#   SERVED_NAME  default $HEADWATER_LLM_SERVED_NAME, else smollm2-135m-instruct
#   PORT         default $HEADWATER_LLM_PORT, else 8001
# Env overrides: HEADWATER_LLM_VENV, HEADWATER_MODELS_DIR, HEADWATER_LLM_HOST (127.0.0.1),
#   HEADWATER_LLM_MAX_MODEL_LEN (4096), HEADWATER_LLM_DTYPE (bfloat16),
#   HEADWATER_LLM_KV_CACHE_BYTES (256M), and vLLM's own VLLM_CPU_* variables.
# Ready when GET /health answers 200 (about 30 s on 2 cores).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
VENV="${HEADWATER_LLM_VENV:-$ROOT/.venv-llm}"
MODELS_DIR="${HEADWATER_MODELS_DIR:-$ROOT/.cache/models}"

positional=()
while [[ $# -gt 0 && "$1" != "--" && ${#positional[@]} -lt 3 ]]; do positional+=("$1"); shift; done
[[ "${1:-}" == "--" ]] && shift
MODEL_DIR="${positional[0]:-${HEADWATER_LLM_MODEL_DIR:-$MODELS_DIR/smollm2-135m-instruct}}"
SERVED_NAME="${positional[1]:-${HEADWATER_LLM_SERVED_NAME:-smollm2-135m-instruct}}"
PORT="${positional[2]:-${HEADWATER_LLM_PORT:-8001}}"

if [[ ! -x "$VENV/bin/python" ]]; then
  echo "serve.sh: no virtualenv at $VENV; run deploy/llm/setup.sh" >&2; exit 1
fi
if [[ ! -f "$MODEL_DIR/config.json" ]]; then
  echo "serve.sh: no model at $MODEL_DIR; run deploy/llm/setup.sh" >&2; exit 1
fi

# The model folder is local, so the hub is never asked.
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}"
export VLLM_NO_USAGE_STATS="${VLLM_NO_USAGE_STATS:-1}"
export DO_NOT_TRACK="${DO_NOT_TRACK:-1}"

# KV cache: 256M holds ~11.6k tokens of SmolLM2-135M (2.8 requests of 4096 tokens at once)
# and keeps the server ~0.75 GB smaller than VLLM_CPU_KVCACHE_SPACE's minimum of 1 GiB
# (whole GiB only); that env var, if set, still overrides the flag.
# --enforce-eager: torch.compile adds 80-180 s to every start (its AOT cache fails to
# reload with this torch build) for no measurable gain in tokens/s on 2 cores.
# The `vllm` console script fails here (it asks for the metadata of a distribution named
# `vllm`; ours is `vllm-cpu`), so the module entry point is used.
exec "$VENV/bin/python" -m vllm.entrypoints.openai.api_server \
  --model "$MODEL_DIR" \
  --served-model-name "$SERVED_NAME" \
  --host "${HEADWATER_LLM_HOST:-127.0.0.1}" \
  --port "$PORT" \
  --dtype "${HEADWATER_LLM_DTYPE:-bfloat16}" \
  --max-model-len "${HEADWATER_LLM_MAX_MODEL_LEN:-4096}" \
  --kv-cache-memory-bytes "${HEADWATER_LLM_KV_CACHE_BYTES:-256M}" \
  --enforce-eager \
  "$@"
