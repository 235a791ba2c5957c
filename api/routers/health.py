"""Liveness, readiness and the model list."""

from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from api.deps import ServicesDep, get_principal
from core.metrics import exposition
from inference.router import ALIASES

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str


@router.get("/metrics", include_in_schema=False)
async def metrics() -> Response:
    """Prometheus exposition of this process's metrics."""
    body, content_type = exposition()
    return Response(body, media_type=content_type)


@router.get("/healthz")
async def healthz() -> Health:
    return Health(status="ok")


@router.get("/readyz", response_model=None)
async def readyz(services: ServicesDep) -> JSONResponse:
    """Ready when the store answers, Kafka is reachable and every model server is healthy;
    on a Qdrant cluster, ``store_nodes`` shows each node's own readiness."""
    checks: dict[str, bool] = {}
    try:
        await asyncio.to_thread(services.store.count)
        checks["store"] = True
    except Exception:  # noqa: BLE001 - any store failure means not ready
        checks["store"] = False
    # A cluster serves while a node is down (its shards have copies elsewhere): the
    # nodes are shown, and the store check above says whether search works.
    nodes = getattr(services.store, "nodes", None)
    store_nodes = await asyncio.to_thread(nodes) if callable(nodes) else {}
    checks["kafka"] = await asyncio.to_thread(services.producer.reachable)
    checks["directory"] = services.directory.ready()
    pools = services.router.pools
    await pools.check()
    for tier, pool in pools.pools.items():
        checks[f"llm_{tier}"] = pool.available
    ready = all(checks.values())
    return JSONResponse(
        {
            "status": "ready" if ready else "not_ready",
            "checks": checks,
            "ingest": services.ingest_enabled,
            **({"store_nodes": store_nodes} if store_nodes else {}),
        },
        status_code=200 if ready else 503,
    )


class ModelCard(BaseModel):
    id: str
    object: str = "model"
    created: int
    owned_by: str = "headwater"


class ModelList(BaseModel):
    object: str = "list"
    data: list[ModelCard]


@router.get("/v1/models", dependencies=[Depends(get_principal)])
async def models(services: ServicesDep) -> ModelList:
    now = int(time.time())
    ids = [*ALIASES, *services.router.served_models()]
    return ModelList(data=[ModelCard(id=model_id, created=now) for model_id in ids])
