"""Databases: which databases and memory tables a request may name."""

from __future__ import annotations

from mnemo import extensions


def list_databases(token_info):
    return {"databases": [{"db_id": db_id, "tables": tables}
                          for db_id, tables in extensions.catalog().tables().items()]}, 200
