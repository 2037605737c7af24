"""OpenSearch: the Elasticsearch source's reading (a point in time, sliced search_after)
through opensearch-py, with `knn_vector` fields. See `sources/elasticsearch.py`."""

from __future__ import annotations

from qmigrate.sources.elasticsearch import OpenSearchSource as Source

__all__ = ["Source"]
