"""How the server adapter (:mod:`retrieval.qdrant`) says things to Qdrant: the permission
filter, the dense / sparse / hybrid query with its prefetches (each under the same
filter) and fusion, payload index types."""

from __future__ import annotations

import re
from typing import Any

from qdrant_client import models

from acl.filter import MatchAny, PermissionFilter
from retrieval.query import RRF_K, SearchQuery
from retrieval.records import ACCESS_KEYS
from retrieval.schema import (
    SPARSE_VECTOR_NAME,
    VECTOR_NAME,
    SparseTerms,
)


def sparse_vector(terms: SparseTerms | None) -> models.SparseVector:
    assert terms is not None, "SearchQuery guarantees lexical terms outside dense mode"
    return models.SparseVector(indices=list(terms.indices), values=list(terms.values))


def query_args(query: SearchQuery, permitted: models.Filter, limit: int) -> dict[str, Any]:
    """``query_points`` arguments for ``query``; every stage carries the permission filter."""
    if query.plain_dense:
        return {"query": list(query.dense), "using": VECTOR_NAME, "query_filter": permitted}
    pool = query.pool(limit)
    sources = prefetches(query, permitted, pool)
    args: dict[str, Any] = {"query_filter": permitted, "with_vectors": [VECTOR_NAME]}
    if query.rerank == "mmr":
        if len(sources) > 1:
            sources = [
                models.Prefetch(prefetch=sources, query=fusion(query), filter=permitted, limit=pool)
            ]
        mmr = models.Mmr(diversity=query.mmr_diversity, candidates_limit=pool)
        args |= {"query": models.NearestQuery(nearest=list(query.dense), mmr=mmr)}
        return args | {"prefetch": sources, "using": VECTOR_NAME}
    if len(sources) > 1:
        return args | {"prefetch": sources, "query": fusion(query)}
    (only,) = sources  # sparse: the lexical search itself, IDF over what the caller may read
    return args | {"query": only.query, "using": only.using, "search_params": only.params}


def prefetches(query: SearchQuery, permitted: models.Filter, pool: int) -> list[models.Prefetch]:
    dense = models.Prefetch(
        query=list(query.dense), using=VECTOR_NAME, filter=permitted, limit=pool
    )
    if query.mode == "dense":
        return [dense]
    lexical = models.Prefetch(
        query=sparse_vector(query.lexical),
        using=SPARSE_VECTOR_NAME,
        filter=permitted,
        # IDF over the points the caller may read: a document they cannot see never moves
        # their scores (no side channel; tests/integration/test_permission_properties.py).
        params=models.SearchParams(idf=models.IdfCorpusParams(corpus=permitted)),
        limit=pool,
    )
    return [lexical] if query.mode == "sparse" else [dense, lexical]


# Qdrant counts a lexical search's IDF over ``SearchParams.idf``'s corpus from 1.19 on; an
# older server ignores the parameter (unknown fields pass) and counts every point.
SCOPED_IDF_SINCE = (1, 19)


def minor_version(version: str) -> tuple[int, int] | None:
    """``(major, minor)`` of a version string such as ``1.18.3``; None if it has none."""
    found = re.match(r"(\d+)\.(\d+)", version)
    return (int(found[1]), int(found[2])) if found else None


def scopes_idf(server_version: str) -> bool:
    """Whether a server of this version counts IDF over the caller's readable set only."""
    minor = minor_version(server_version)
    return minor is not None and minor >= SCOPED_IDF_SINCE


def fusion(query: SearchQuery) -> models.Query:
    if query.fusion == "rrf":
        return models.RrfQuery(rrf=models.Rrf(k=RRF_K))
    return models.FusionQuery(fusion=models.Fusion.DBSF)


def match(key: str, value: str | int | bool) -> models.FieldCondition:
    return models.FieldCondition(key=key, match=models.MatchValue(value=value))


def narrowing(condition: MatchAny) -> models.FieldCondition:
    if len(condition.values) == 1:
        return match(condition.key, condition.values[0])
    return models.FieldCondition(
        key=condition.key, match=models.MatchAny(any=[str(v) for v in condition.values])
    )


def permission_filter(permission: PermissionFilter) -> models.Filter:
    """The caller's readable set as one indexed condition (acl.filter: access keys)."""
    must: list[models.Condition] = [
        models.FieldCondition(
            key=ACCESS_KEYS, match=models.MatchAny(any=list(permission.access_keys))
        )
    ]
    must.extend(narrowing(condition) for condition in permission.narrowing)
    return models.Filter(must=must)


def index_schema(kind: str) -> models.PayloadSchemaType | models.KeywordIndexParams:
    if kind == "tenant_keyword":
        return models.KeywordIndexParams(type=models.KeywordIndexType.KEYWORD, is_tenant=True)
    return {
        "keyword": models.PayloadSchemaType.KEYWORD,
        "bool": models.PayloadSchemaType.BOOL,
        "integer": models.PayloadSchemaType.INTEGER,
    }[kind]
