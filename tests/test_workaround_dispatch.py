"""Handlers are decorated once per operation, not on every request (mnemo/dispatch.py), and
each operation still reads its own parameters."""

from __future__ import annotations

from connexion.apps.flask import FlaskOperation
from connexion.decorators import FlaskDecorator

from mnemo.app import create_app
from mnemo.workarounds import dispatch

from .conftest import make_settings


def test_a_handler_is_decorated_once_however_many_requests_it_serves(catalog, table_name, monkeypatch):
    decorated = []
    decorate = FlaskDecorator.decorate

    def counting(self, function):
        decorated.append(function.__name__)
        return decorate(self, function)

    monkeypatch.setattr(FlaskDecorator, "decorate", counting)
    with create_app(make_settings(table_name), catalog=catalog).test_client() as client:
        for _ in range(3):
            assert client.get("/health").status_code == 200
            assert client.get("/memories", params={"limit": 2}).status_code == 200
    assert sorted(decorated) == ["get_memories", "health"]


def test_each_operation_parses_its_own_parameters(client, create):
    create("tea", user_id="u1", topics=["drinks", "a", "b"])
    create("coffee", user_id="u2")
    # Alternating operations whose parameters differ: a parser remembered for one must never
    # serve the other.
    for _ in range(2):
        page = client.get("/memories", params=[("topics", "a,b"), ("limit", "5")]).json()
        assert [m["memory"] for m in page["data"]] == ["tea"]
        assert page["meta"]["limit"] == 5
        stats = client.get("/user_memory_stats", params={"limit": 1}).json()
        assert stats["meta"]["limit"] == 1 and stats["meta"]["total_count"] == 2
        assert client.get("/memories", params={"limit": "x"}).status_code == 422


def test_install_leaves_an_unexpected_connexion_alone(monkeypatch, caplog):
    monkeypatch.setattr(FlaskOperation, "fn", lambda self: None)
    dispatch.install()
    assert FlaskOperation.fn is not dispatch._FN
    assert "decorated on every request" in caplog.text
