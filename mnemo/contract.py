"""The contract, read once: openapi.yaml turned into the operations everything else asks about.

The app factory hands the document to Connexion; the edge middleware, the error handlers,
``mnemo spec`` (and anything else that needs to know what the API declares: its paths and
methods, its parameters with every ``$ref`` resolved, the scopes each operation asks for)
take it from the ``Contract`` made here, so no other module walks the document.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from openapi_spec_validator import OpenAPIV31SpecValidator
from openapi_spec_validator.schemas import openapi_v31_schema_validator

# The operation's own key, or its path item's, naming the module of its handler.
CONTROLLER = "x-openapi-router-controller"
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")

_PACKAGE = Path(__file__).resolve().parent
# Installed, the document ships inside the package; in a source checkout it is the
# repository's own openapi.yaml, one level up, which wins so that a checkout works on itself.
DOCUMENT_LOCATIONS = (_PACKAGE.parent / "openapi.yaml", _PACKAGE / "openapi.yaml")


class ContractError(Exception):
    """The document is not a valid OpenAPI 3.1 document (or not YAML at all)."""


class ContractUnreadable(ContractError):
    """The document's file cannot be read."""


@dataclass(frozen=True)
class Parameter:
    name: str
    location: str  # path, query, header or cookie
    required: bool
    schema: dict

    @property
    def types(self) -> frozenset[str]:
        """The JSON types its schema admits (the branches of an ``anyOf`` too)."""
        types = set()
        for branch in self.schema.get("anyOf", [self.schema]):
            kind = branch.get("type")
            types.update(kind if isinstance(kind, list) else [kind] if kind else [])
        return frozenset(types)


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    operation_id: str
    module: str  # where Connexion looks for the handler
    function: str
    definition: dict = field(repr=False, compare=False)
    parameters: tuple[Parameter, ...] = ()
    # The scopes a JWT needs, by security scheme; empty for an operation open to anyone.
    security: tuple[dict[str, list[str]], ...] = ()

    @property
    def name(self) -> str:
        return f"{self.method.upper()} {self.path}"

    @property
    def handler(self) -> str:
        return f"{self.module}.{self.function}"

    @property
    def routing_name(self) -> str:
        """What Connexion's routing calls the operation: its controller, a dot, its operationId."""
        controller = self.definition.get(CONTROLLER)
        return f"{controller}.{self.operation_id}" if controller else self.operation_id

    @property
    def scopes(self) -> frozenset[str]:
        """Every scope any of its security requirements names."""
        return frozenset(scope for requirement in self.security for scopes in requirement.values()
                         for scope in scopes)


class Contract:
    """openapi.yaml, validated, with its operations."""

    def __init__(self, document: dict, path: Path | None = None):
        self.document = document
        self.path = path
        self.operations: tuple[Operation, ...] = tuple(self._operations())
        self._path_patterns = [
            (re.compile(re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)) + "/?"),
             ", ".join(sorted(m.upper() for m in item if m in HTTP_METHODS)))
            for template, item in document.get("paths", {}).items()
        ]

    @classmethod
    def load(cls, path: Path | str | None = None) -> Contract:
        """The document at ``path`` (by default: document_path()), checked against OpenAPI 3.1.

        ContractError, saying what is wrong, for a file that cannot be read, is not YAML, or is
        not a valid document (ContractUnreadable for the first).
        """
        path = Path(path) if path is not None else document_path()
        try:
            with open(path, encoding="utf-8") as handle:
                document = yaml.safe_load(handle)
        except OSError as error:
            raise ContractUnreadable(f"cannot read {path}: {error.strerror or error}") from None
        except yaml.YAMLError as error:
            raise ContractError(f"{path} is not YAML: {error}") from None
        if not isinstance(document, dict):
            raise ContractError(f"{path} is not an OpenAPI document: it is not a mapping")
        try:
            validate_document(document)
        except ContractError as error:
            raise ContractError(f"{path}: {error}") from None
        return cls(document, path)

    def resolve(self, node: dict) -> dict:
        """``node`` with its ``$ref`` (and theirs) followed to what they name."""
        while isinstance(node, dict) and "$ref" in node:
            target = self.document
            for part in node["$ref"].lstrip("#/").split("/"):
                target = target[part]
            node = target
        return node

    def operation(self, operation_id: str) -> Operation:
        return self._by_id[operation_id]

    @functools.cached_property
    def _by_id(self) -> dict[str, Operation]:
        return {operation.operation_id: operation for operation in self.operations}

    @functools.cached_property
    def routing_names(self) -> dict[str, tuple[str, str]]:
        """Connexion's name for each operation -> (operationId, the path the document declares)."""
        return {operation.routing_name: (operation.operation_id, operation.path)
                for operation in self.operations if operation.operation_id}

    @functools.cached_property
    def array_query_parameters(self) -> frozenset[str]:
        """Names of the query parameters declared as arrays (directly or nullable)."""
        return frozenset(parameter.name for operation in self.operations
                         for parameter in operation.parameters
                         if parameter.location == "query" and "array" in parameter.types)

    def allowed_methods(self, path: str) -> str | None:
        """The methods the document declares for a request path, as an ``Allow`` header."""
        for pattern, methods in self._path_patterns:
            if pattern.fullmatch(path):
                return methods
        return None

    def _operations(self) -> Iterator[Operation]:
        default_security = self.document.get("security", [])
        for path, item in self.document.get("paths", {}).items():
            for method in HTTP_METHODS:
                definition = item.get(method)
                if definition is None:
                    continue
                operation_id = definition.get("operationId", "")
                controller = definition.get(CONTROLLER) or item.get(CONTROLLER)
                if controller:
                    module, function = controller, operation_id
                else:
                    module, _, function = operation_id.rpartition(".")
                declared = {}
                # An operation's own parameters override its path item's of the same name and place.
                for parameter in [*item.get("parameters", []), *definition.get("parameters", [])]:
                    parameter = self.resolve(parameter)
                    declared[parameter["name"], parameter["in"]] = Parameter(
                        parameter["name"], parameter["in"],
                        bool(parameter.get("required")) or parameter["in"] == "path",
                        self.resolve(parameter.get("schema", {})))
                yield Operation(method, path, operation_id, module, function, definition,
                                tuple(declared.values()),
                                tuple(definition.get("security", default_security)))


def is_openapi_31(document: dict) -> bool:
    return str(document.get("openapi", "")).startswith("3.1.")


def validate_document(document: dict) -> None:
    """Raise ContractError listing what openapi-spec-validator finds wrong with ``document``.

    The document is first checked against the OpenAPI 3.1 schema alone, because the
    validator's deeper checks assume a document of the right shape and can trip over one that
    is not.
    """
    errors = list(openapi_v31_schema_validator.iter_errors(document))
    if not errors:
        try:
            errors = list(OpenAPIV31SpecValidator(document).iter_errors())
        except Exception as error:  # the validator's own failures, on a document it cannot walk
            raise ContractError(f"the OpenAPI 3.1 document is not valid: {error!r}") from None
    if errors:
        lines = [f"- {'/'.join(map(str, e.absolute_path)) or '(root)'}: "
                 f"{e.message.splitlines()[0]}" for e in errors[:20]]
        raise ContractError("the OpenAPI 3.1 document is not valid:\n" + "\n".join(lines))


def document_path() -> Path:
    """Where openapi.yaml is: the checkout's own, or else the copy installed with the package."""
    for path in DOCUMENT_LOCATIONS:
        if path.is_file():
            return path
    raise ContractUnreadable("openapi.yaml not found in " + " or ".join(map(str, DOCUMENT_LOCATIONS)))
