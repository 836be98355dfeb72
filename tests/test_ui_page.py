"""The memory browser's files at /ui: served with the page's security headers, and shipped in the wheel.

What the page does is tested in a real browser by tests/test_ui_browser.py.
"""

from __future__ import annotations

import gzip
import subprocess
import sys
import zipfile
from importlib import resources
from pathlib import Path

import pytest

from mnemo.app import create_app
from storage import Catalog, Database

from .conftest import DB_ID, make_settings

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
PAGE_FILES = {"index.html", "app.js", "api.js", "dom.js", "memories.js", "people.js", "style.css"}


@pytest.fixture
def client_with(tmp_path):
    """A client of an app over a SQLite file of its own: the page does not depend on the
    database, so one engine is enough."""
    catalogs, clients = [], []

    def build(**overrides):
        database = Database.connect(DB_ID, f"sqlite:///{tmp_path}/memories.db", ["memories"])
        database.prepare()
        catalogs.append(Catalog([database]))
        app = create_app(make_settings("memories", **overrides), catalog=catalogs[-1])
        clients.append(app.test_client().__enter__())
        return clients[-1]

    yield build
    for client in clients:
        client.__exit__(None, None, None)
    for catalog in catalogs:
        catalog.dispose()


@pytest.fixture
def client(client_with):
    return client_with()


def assert_page_headers(response) -> None:
    assert response.headers["Content-Security-Policy"] == CSP
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"


def test_ui_redirects_to_the_page_folder_relatively(client):
    response = client.get("/ui", follow_redirects=False)
    assert response.status_code == 308
    # Relative, so it also holds behind a reverse proxy's path prefix.
    assert response.headers["Location"] == "ui/"
    assert_page_headers(response)


def test_the_page_is_served_without_credentials_with_its_security_headers(client_with):
    # The page holds no data: only the API calls it makes need the key.
    client = client_with(security_key="the-key")
    response = client.get("/ui/")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert response.headers["Cache-Control"] == "no-cache"
    assert_page_headers(response)
    assert '<script type="module" src="app.js"></script>' in response.text
    assert client.get("/memories").status_code == 401


@pytest.mark.parametrize(("name", "content_type"), [("app.js", "text/javascript; charset=utf-8"),
                                                    ("style.css", "text/css; charset=utf-8")])
def test_each_file_has_its_type_and_the_headers(client, name, content_type):
    response = client.get(f"/ui/{name}")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == content_type
    assert_page_headers(response)


def test_the_page_has_no_inline_script_or_style_and_never_writes_markup_from_data():
    folder = resources.files("mnemo.ui")
    html = folder.joinpath("index.html").read_text()
    for inline in ("<script>", "<style", " style=", " onclick=", " onload="):
        assert inline not in html
    for name in PAGE_FILES - {"index.html", "style.css"}:
        script = folder.joinpath(name).read_text()
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(",
                     "new Function"):
            assert sink not in script, (name, sink)


def test_an_unchanged_file_is_answered_304_by_its_etag(client):
    etag = client.get("/ui/app.js").headers["ETag"]
    response = client.get("/ui/app.js", headers={"If-None-Match": etag})
    assert response.status_code == 304
    assert response.content == b""


def test_an_unknown_file_is_a_json_404_with_the_headers(client):
    # Only the page's own files: not the module beside them, nor anything a path climbs to.
    assert client.get("/ui/__init__.py").status_code == 404
    assert client.get("/ui/%2e%2e/app.py").status_code == 404
    response = client.get("/ui/nothing.js")
    assert response.status_code == 404
    assert response.json()["error_code"] == "NOT_FOUND"
    assert_page_headers(response)


def test_only_get_and_head_reach_the_page(client):
    assert client.head("/ui/").status_code == 200
    response = client.post("/ui/", content=b"{}", headers={"Content-Type": "application/json"})
    assert response.status_code == 405
    assert response.headers["Allow"] == "GET, HEAD"
    assert response.json()["error_code"] == "METHOD_NOT_ALLOWED"


def test_other_paths_starting_with_ui_are_not_the_page(client):
    assert client.get("/uix").status_code == 404
    assert "Content-Security-Policy" not in client.get("/uix").headers


def test_the_wheel_ships_the_page_and_it_is_small(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "-q", "-w", str(tmp_path)],
                   check=True, cwd=Path(__file__).parent.parent)
    (wheel,) = tmp_path.glob("mnemo-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        shipped = {name.removeprefix("mnemo/ui/") for name in archive.namelist()
                   if name.startswith("mnemo/ui/")}
        assert shipped >= PAGE_FILES
        compressed = sum(len(gzip.compress(archive.read(f"mnemo/ui/{name}"))) for name in PAGE_FILES)
    assert compressed < 100_000
