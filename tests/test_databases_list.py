"""GET /databases: the databases and memory tables a request may name, for anyone who may read."""

from __future__ import annotations

from mnemo.app import create_app
from mnemo.config import JwtConfig
from storage import Catalog, Database

from .conftest import DB_ID, make_settings
from .tokens import READ, WRITE, bearer, rs256, rsa_keys


def test_every_configured_database_and_table_is_listed_in_configuration_order(tmp_path):
    first = Database.connect(DB_ID, f"sqlite:///{tmp_path}/a.db", ["people", "pets"])
    second = Database.connect("archive", f"sqlite:///{tmp_path}/b.db", ["old"])
    catalog = Catalog([first, second])
    catalog.prepare()
    try:
        with create_app(make_settings("people"), catalog=catalog).test_client() as client:
            answer = client.get("/databases")
        assert answer.status_code == 200
        assert answer.json() == {"databases": [{"db_id": DB_ID, "tables": ["people", "pets"]},
                                               {"db_id": "archive", "tables": ["old"]}]}
    finally:
        catalog.dispose()


def test_listing_databases_needs_the_read_scope(catalog, table_name, database_url):
    app = create_app(make_settings(table_name, jwt=JwtConfig(rsa_keys().public_pem)), catalog=catalog)
    with app.test_client() as client:
        assert client.get("/databases").status_code == 401
        refused = client.get("/databases", headers=bearer(rs256(sub="ann", scopes=[WRITE])))
        assert refused.status_code == 403
        listed = client.get("/databases", headers=bearer(rs256(sub="ann", scopes=[READ])))
        assert listed.status_code == 200
        assert listed.json()["databases"] == [{"db_id": DB_ID, "tables": [table_name]}]
