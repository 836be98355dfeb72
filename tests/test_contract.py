"""The contract: openapi.yaml is valid OpenAPI 3.1, keeps the seed, and matches the code."""

from __future__ import annotations

import copy
import importlib
import inspect
import re
from pathlib import Path

import pytest
import yaml
from connexion.exceptions import InvalidSpecification
from connexion.spec import OpenAPISpecification

from mnemo import spec
from mnemo.contract import Contract, ContractError, validate_document
from mnemo.workarounds import openapi31

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT.parent / "shared" / "reference" / "000_f0b2f7e68ce53c4a.txt"
METHODS = {"get", "put", "post", "delete", "patch", "options", "head", "trace"}


@pytest.fixture(scope="module")
def document():
    return Contract.load(ROOT / "openapi.yaml").document


def operations(document):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, operation


def test_the_document_is_valid_openapi_3_1(document):
    assert document["openapi"] == "3.1.0"
    validate_document(document)


def test_a_broken_document_is_refused_with_a_clear_message(document):
    broken = copy.deepcopy(document)
    del broken["info"]["title"]
    broken["paths"]["/memories"]["get"]["parameters"][0] = {"name": "x"}
    with pytest.raises(ContractError) as refused:
        validate_document(broken)
    message = str(refused.value)
    assert re.search(r"- info: .title. is a required property", message), message
    assert "- paths//memories/get/parameters/0: " in message, message


def test_connexion_alone_refuses_the_3_1_document_which_is_why_openapi31_exists(document):
    with pytest.raises(InvalidSpecification, match="'3.1.0' does not match"):
        OpenAPISpecification(copy.deepcopy(document))


def test_every_operation_id_resolves_to_a_handler_and_every_handler_is_in_the_document(document):
    # The same check as `mnemo spec check`: no missing handler, no stub, no undeclared handler.
    findings = spec.check(Contract(document))
    assert [f for f in findings if f.kind != spec.OK] == []
    assert len(findings) == sum(1 for _ in operations(document))


def test_handler_defaults_are_the_documents_defaults(document):
    for _path, _method, operation in operations(document):
        module = importlib.import_module(operation["x-openapi-router-controller"])
        signature = inspect.signature(getattr(module, operation["operationId"]))
        for parameter in operation.get("parameters", []):
            if "$ref" in parameter:
                parameter = document["components"]["parameters"][parameter["$ref"].split("/")[-1]]
            if parameter["in"] == "header":
                continue  # Connexion hands handlers no headers: they read them from the request
            default = parameter.get("schema", {}).get("default")
            if not parameter.get("required"):
                assert signature.parameters[parameter["name"]].default == default, (
                    operation["operationId"], parameter["name"])


def seed_document() -> dict:
    text = SEED.read_text(encoding="utf-8")
    return yaml.safe_load(re.search(r"````yaml[^\n]*\n(.*?)````", text, re.S).group(1))


def is_kept(seed, ours, where="") -> list[str]:
    """Where ``ours`` drops or changes something ``seed`` says (adding is allowed)."""
    if isinstance(seed, dict):
        if not isinstance(ours, dict):
            return [where]
        problems = []
        for key, value in seed.items():
            if key not in ours:
                problems.append(f"{where}/{key} missing")
            else:
                problems += is_kept(value, ours[key], f"{where}/{key}")
        return problems
    if isinstance(seed, list):
        if not isinstance(ours, list) or len(ours) < len(seed):
            return [where]
        return [p for i, item in enumerate(seed) for p in is_kept(item, ours[i], f"{where}/{i}")]
    return [] if seed == ours else [f"{where}: {seed!r} became {ours!r}"]


@pytest.mark.skipif(not SEED.exists(), reason="the shared reference is not beside this checkout")
def test_create_memory_keeps_every_field_constraint_and_status_of_the_seed(document):
    seed = seed_document()
    seed_operation = seed["paths"]["/memories"]["post"]
    ours = copy.deepcopy(document["paths"]["/memories"]["post"])
    # The seed's description is kept word for word as the first paragraph of ours.
    assert ours["description"].startswith(seed_operation["description"])
    ours["description"] = seed_operation["description"]
    assert is_kept(seed_operation, ours) == []
    for name, schema in seed["components"]["schemas"].items():
        assert is_kept(schema, _resolve(document, document["components"]["schemas"][name])) == [], name
    assert document["components"]["securitySchemes"]["HTTPBearer"] == {"type": "http", "scheme": "bearer"}


def _resolve(document, node):
    if isinstance(node, dict):
        if "$ref" in node:
            target = document
            for part in node["$ref"].lstrip("#/").split("/"):
                target = target[part]
            return _resolve(document, target)
        return {key: _resolve(document, value) for key, value in node.items()}
    if isinstance(node, list):
        return [_resolve(document, item) for item in node]
    return node


SCOPES = {"get": "memories:read", "post": "memories:write", "patch": "memories:write",
          "delete": "memories:delete"}


def test_every_memory_operation_describes_its_errors_and_is_protected(document):
    for _path, method, operation in operations(document):
        if operation["tags"] != ["Memory"]:
            continue
        assert "**Errors:**" in operation["description"], operation["operationId"]
        assert "**Access:**" in operation["description"], operation["operationId"]
        # The security key, or a JWT carrying the scope of the operation's kind.
        assert operation["security"] == [{"HTTPBearer": []}, {"JWT": [SCOPES[method]]}]
        assert {"401", "403", "404", "422", "429", "503"} <= set(operation["responses"])
        if "requestBody" in operation:
            assert "413" in operation["responses"], operation["operationId"]


def test_every_error_answer_declares_its_request_id(document):
    for name, response in document["components"]["responses"].items():
        assert response["headers"]["X-Request-ID"] == {"$ref": "#/components/headers/RequestId"}, name
        schema = response["content"]["application/json"]["schema"]
        target = _resolve(document, schema)
        assert target["properties"]["request_id"]["type"] == "string", name


def test_the_jwt_scheme_is_a_bearer_jwt(document):
    scheme = document["components"]["securitySchemes"]["JWT"]
    assert (scheme["type"], scheme["scheme"], scheme["bearerFormat"]) == ("http", "bearer", "JWT")


def test_create_memory_links_its_id_to_get_update_delete_and_history(document):
    links = document["paths"]["/memories"]["post"]["responses"]["200"]["links"]
    targets = {link["operationId"] for link in links.values()}
    assert targets == {"get_memory", "update_memory", "delete_memory", "get_memory_history"}
    for link in links.values():
        assert link["parameters"] == {"memory_id": "$response.body#/memory_id"}


def test_the_served_document_is_the_contract(client, document):
    served = client.get("/openapi.json").json()
    assert served["openapi"] == "3.1.0"
    assert {(p, m) for p, m, _ in operations(served)} == {(p, m) for p, m, _ in operations(document)}


def test_parameters_validate_with_json_schema_2020_12():
    # draft 4 knows neither 'const' nor a 'null' branch the way 2020-12 does
    schema = {"anyOf": [{"type": "string", "const": "ok"}, {"type": "null"}]}
    assert openapi31.violation(schema, None, "x") is None
    assert openapi31.violation(schema, "ok", "x") is None
    assert "'ok' was expected" in openapi31.violation(schema, "no", "x")


def test_a_nullable_anyof_parses_as_its_non_null_branch():
    schema = {"anyOf": [{"type": "integer", "minimum": 1}, {"type": "null"}], "default": 20}
    assert openapi31.non_null(schema) == {"type": "integer", "minimum": 1, "default": 20}
    plain = {"type": "string"}
    assert openapi31.non_null(plain) is plain


def test_exploded_form_arrays_keep_commas_inside_items():
    parser = openapi31.URIParser(
        [{"name": "topics", "in": "query", "schema": {"type": "array", "items": {"type": "string"}}}], {}
    )
    assert parser.resolve_query({"topics": ["a,b", "c"]}) == {"topics": ["a,b", "c"]}


# -- the contract is read once ------------------------------------------------------------------

CODE = [ROOT / "mnemo", ROOT / "handlers", ROOT / "storage"]


def test_openapi_yaml_is_opened_and_walked_by_one_module():
    # Everything else asks mnemo.contract: no other module reads YAML or walks the paths.
    walkers = sorted(str(path.relative_to(ROOT)) for directory in CODE for path in directory.rglob("*.py")
                     if re.search(r"yaml\.safe_load|\[\"paths\"\]|\.get\(\"paths\"", path.read_text("utf-8")))
    assert walkers == ["mnemo/contract.py"]


@pytest.fixture(scope="module")
def contract():
    return Contract.load(ROOT / "openapi.yaml")


def test_the_contract_lists_every_operation_with_its_handler(contract, document):
    assert {(o.path, o.method) for o in contract.operations} == {(p, m) for p, m, _ in operations(document)}
    get = contract.operation("get_memory")
    assert (get.name, get.handler) == ("GET /memories/{memory_id}", "handlers.memories.get_memory")
    assert contract.routing_names["handlers.memories.get_memory"] == ("get_memory", "/memories/{memory_id}")


def test_the_contract_resolves_parameters_and_says_which_query_parameters_are_arrays(contract):
    listing = {(p.name, p.location): p for p in contract.operation("get_memories").parameters}
    assert "integer" in listing["limit", "query"].types
    assert "$ref" not in listing["db_id", "query"].schema
    assert "topics" in contract.array_query_parameters
    assert contract.operation("get_memory").parameters[0].required


def test_the_contract_says_which_scopes_each_operation_asks_for(contract):
    assert contract.operation("erase_user_memories").scopes == {"memories:delete"}
    assert contract.operation("create_memory").scopes == {"memories:write"}
    assert contract.operation("health").scopes == frozenset()


def test_the_contract_says_which_methods_a_path_allows(contract):
    assert contract.allowed_methods("/memories/abc") == "DELETE, GET, PATCH"
    assert contract.allowed_methods("/nowhere") is None


def test_an_unreadable_or_broken_document_is_refused_saying_why(tmp_path):
    with pytest.raises(ContractError, match="cannot read"):
        Contract.load(tmp_path / "missing.yaml")
    (tmp_path / "broken.yaml").write_text("openapi: [unclosed\n")
    with pytest.raises(ContractError, match="is not YAML"):
        Contract.load(tmp_path / "broken.yaml")
