"""Schemathesis drives every operation and checks every answer against openapi.yaml.

All four phases run: the document's examples, coverage of its constraints (boundaries, every
enum value, invalid data that must be refused), fuzzing, and stateful call sequences that
follow the document's links (create -> get/update/delete). Every check is on, among them
response-schema conformance, acceptance of valid and rejection of invalid data, and auth:
requests carry a credential, and Schemathesis also replays them without it. The server trusts
both schemes, and everything runs twice: with the security key (an administrator), and with
a JWT of a user holding every user scope (so every answer goes through per-user isolation;
/metrics, which such a token may not read, is left out of that run).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, settings
from schemathesis import openapi
from schemathesis.config import SchemathesisConfig

from mnemo.app import create_app
from mnemo.config import JwtConfig
from storage import Catalog, Database

from .conftest import DB_ID, drop_tables, make_settings
from .tokens import rs256, rsa_keys

ROOT = Path(__file__).resolve().parent.parent
KEY = "schemathesis-key"
# A day is far longer than any run.
JWT_USER = "schemathesis-user"
TOKENS = {"security_key": KEY, "jwt": rs256(sub=JWT_USER, lifetime_s=86400)}
TABLE = "st_memories"  # schemathesis.toml sends this table name


@pytest.fixture
def served(database_url):
    drop_tables(database_url, TABLE)
    database = Database.connect(DB_ID, database_url, [TABLE])
    database.prepare()
    app = create_app(make_settings(TABLE, security_key=KEY, jwt=JwtConfig(rsa_keys().public_pem)),
                     catalog=Catalog([database]))
    yield app, database
    database.dispose()
    drop_tables(database_url, TABLE)


def load_schema(token: str):
    schema = openapi.from_path(
        ROOT / "openapi.yaml", config=SchemathesisConfig.from_path(ROOT / "schemathesis.toml")
    )
    schema.config.update(headers={"Authorization": f"Bearer {token}"})

    # The same credential as an auth provider too: once an operation declares header
    # parameters of its own (Idempotency-Key, If-Match), Schemathesis otherwise takes the
    # configured header for a generated, likely invalid, credential.
    @schema.auth.auth(refresh_interval=None)
    class Bearer:
        def get(self, case, context):
            return token

        def set(self, case, data, context):
            case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}

    schema.hook(filter_query)
    if token == TOKENS["jwt"]:
        # A user's token is rightly refused /metrics (403): tests/test_metrics.py checks that.
        schema = schema.exclude(operation_id="get_metrics")
    return schema


class ServedApp:
    """An ASGI app that forwards to the app of the running test.

    Schemathesis binds an app to the schema before tests are generated, while each test's app
    (and database) comes from a fixture; this stands in between.
    """

    app = None

    async def __call__(self, scope, receive, send):
        await self.app(scope, receive, send)


def filter_query(ctx, query):
    """Drop generated queries that put a non-string, or a string with a comma, where the topics
    array goes.

    ``topics`` is an exploded form array: ``?topics=false`` is, on the wire, exactly the
    one-topic list ``["false"]``, which the API rightly accepts. Schemathesis means it as the
    boolean ``false`` and would expect a refusal that no server could give. A topic ``a,b`` goes
    out as ``topics=a%2Cb``, which the API reads as two topics, as the document says: fifty
    such topics are more than the fifty allowed.
    """
    topics = (query or {}).get("topics")
    return topics is None or (isinstance(topics, list)
                              and all(isinstance(t, str) and "," not in t for t in topics))


SERVED = ServedApp()
WITH_KEY, WITH_JWT = load_schema(TOKENS["security_key"]), load_schema(TOKENS["jwt"])
WITH_KEY.app = WITH_JWT.app = SERVED


@WITH_KEY.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_answer_of_every_operation_keeps_the_contract_with_the_security_key(case, served):
    SERVED.app, _ = served
    response = case.call_and_validate()
    # The credential is accepted, with every scope the operation needs. (Schemathesis also
    # sends cases without it, for an operation with a single scheme such as /metrics; those
    # are 401, which its own auth checks expect.)
    if "Authorization" in response.request.headers:
        assert response.status_code not in (401, 403), response.text


@WITH_JWT.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_answer_of_every_operation_keeps_the_contract_with_a_users_jwt(case, served):
    SERVED.app, _ = served
    response = case.call_and_validate()
    # The credential is accepted, with every scope the operation needs; only naming another user
    # to erase is refused, since a user may erase only itself. (Schemathesis also sends cases
    # without the credential, for an operation with a single scheme such as /metrics; those are
    # 401, which its own auth checks expect.)
    if "Authorization" in response.request.headers:
        assert response.status_code != 401, response.text
        assert response.status_code != 403 or erases_another_user(case), response.text


def erases_another_user(case) -> bool:
    return (case.operation.path == "/users/{user_id}/memories"
            and (case.path_parameters or {}).get("user_id") != JWT_USER)


@pytest.mark.parametrize("credential", TOKENS)
def test_call_sequences_following_the_links_keep_the_contract(served, credential):
    app, database = served
    schema = load_schema(TOKENS[credential])
    schema.app = app

    class Workflow(schema.as_state_machine()):
        def setup(self):
            # Each scenario starts from an empty table, so scenarios do not depend on each other.
            with database.engine.begin() as conn:
                for table in reversed(database.metadata.sorted_tables):
                    conn.execute(sa.delete(table))

    Workflow.run(settings=settings(Workflow.TestCase.settings, max_examples=40,
                                   stateful_step_count=8, derandomize=True, deadline=None))
