"""Elasticsearch storage for xprofiler traces (``elasticsearch://``, ``elasticsearch+https://``)."""

from __future__ import annotations

from .driver import ElasticsearchDriver

__all__ = ["ElasticsearchDriver"]
