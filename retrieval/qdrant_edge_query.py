"""How the embedded adapter (:mod:`retrieval.qdrant_edge`) says things to the engine:
the permission filter, the dense / sparse / hybrid query with its prefetches (each under
the same filter) and fusion, payload index types."""

from __future__ import annotations

from typing import Any

import numpy
import qdrant_edge as qe

from acl.filter import MatchAny, PermissionFilter
from retrieval.query import RRF_K, SearchQuery
from retrieval.records import ACCESS_KEYS
from retrieval.schema import (
    SPARSE_VECTOR_NAME,
    VECTOR_NAME,
    SparseTerms,
)


def sparse_vector(terms: SparseTerms | None) -> qe.SparseVector:
    assert terms is not None, "SearchQuery guarantees lexical terms outside dense mode"
    return qe.SparseVector(list(terms.indices), list(terms.values))


def query_request(query: SearchQuery, permitted: qe.Filter, limit: int) -> qe.QueryRequest:
    """The engine's request for ``query``; every stage carries the permission filter."""
    if query.plain_dense:
        return qe.QueryRequest(
            limit=limit,
            query=qe.Query.Nearest(list(query.dense), using=VECTOR_NAME),
            filter=permitted,
            with_payload=True,
        )
    pool = query.pool(limit)
    sources = prefetches(query, permitted, pool)
    top: Any
    params = None
    if query.rerank == "mmr":
        if len(sources) > 1:
            sources = [qe.Prefetch(pool, prefetches=sources, query=fusion(query), filter=permitted)]
        # The engine's lambda weighs relevance; the setting weighs diversity.
        top = qe.Mmr(list(query.dense), 1.0 - query.mmr_diversity, pool, using=VECTOR_NAME)
    elif len(sources) > 1:
        top = fusion(query)
    else:  # sparse: the lexical search itself, IDF over what the caller may read
        (only,), sources = sources, []
        top, params = only.query, only.params
    return qe.QueryRequest(
        limit=limit,
        query=top,
        prefetches=sources,
        filter=permitted,
        params=params,
        with_payload=True,
        with_vector=[VECTOR_NAME],
    )


def prefetches(query: SearchQuery, permitted: qe.Filter, pool: int) -> list[qe.Prefetch]:
    dense = qe.Prefetch(
        pool, query=qe.Query.Nearest(list(query.dense), using=VECTOR_NAME), filter=permitted
    )
    if query.mode == "dense":
        return [dense]
    lexical = qe.Prefetch(
        pool,
        query=qe.Query.Nearest(sparse_vector(query.lexical), using=SPARSE_VECTOR_NAME),
        filter=permitted,
        params=idf_scope(permitted),
    )
    return [lexical] if query.mode == "sparse" else [dense, lexical]


def idf_scope(permitted: qe.Filter) -> qe.SearchParams:
    # IDF over the points the caller may read: a document they cannot see never moves
    # their scores (no side channel; tests/integration/test_permission_properties.py).
    return qe.SearchParams(idf=qe.IdfParams(corpus=permitted))


def fusion(query: SearchQuery) -> Any:
    return qe.Fusion.Rrf(k=RRF_K) if query.fusion == "rrf" else qe.Fusion.Dbsf()


def match(key: str, value: str | int | bool) -> qe.FieldCondition:
    if isinstance(value, bool):
        # qdrant-edge-py 0.9 reads a Python bool as the integer 0/1, which never matches a
        # bool payload; numpy's bool reaches the engine as a bool. The store contract
        # suite (tests/integration/test_store_contract.py) pins this.
        return qe.FieldCondition(key, match=qe.MatchValue(numpy.bool_(value)))  # type: ignore[arg-type]
    return qe.FieldCondition(key, match=qe.MatchValue(value))


def narrowing(condition: MatchAny) -> qe.FieldCondition:
    if len(condition.values) == 1:
        return match(condition.key, condition.values[0])
    return qe.FieldCondition(condition.key, match=qe.MatchAny([str(v) for v in condition.values]))


def permission_filter(permission: PermissionFilter) -> qe.Filter:
    """The caller's readable set as one indexed condition (acl.filter: access keys)."""
    must: list[Any] = [
        qe.FieldCondition(ACCESS_KEYS, match=qe.MatchAny(list(permission.access_keys)))
    ]
    must.extend(narrowing(condition) for condition in permission.narrowing)
    return qe.Filter(must=must)


def index_schema(kind: str) -> Any:
    if kind == "tenant_keyword":
        return qe.KeywordIndexParams(is_tenant=True)
    return {
        "keyword": qe.PayloadSchemaType.Keyword,
        "bool": qe.PayloadSchemaType.Bool,
        "integer": qe.PayloadSchemaType.Integer,
    }[kind]
