"""Make Connexion 3.3 serve an OpenAPI 3.1 document.

Why this module exists: Connexion 3.3 validates every document against the OpenAPI 3.0
meta-schema, so a 3.1 document is refused outright (``'3.1.0' does not match
'^3\\.0\\.\\d(-.+)?$'``; upstream issue spec-first/connexion#1396, still open). Past that
check it validates requests with JSON Schema draft 4 and decides how to parse a parameter by
reading a ``type`` key that 3.1's ``anyOf: [{...}, {type: 'null'}]`` idiom does not have.

What it changes, and nothing else:

* documents whose ``openapi`` is 3.1.x are checked by openapi-spec-validator's 3.1 validator
  instead of Connexion's 3.0 meta-schema (other versions are untouched);
* parameters and bodies are validated with JSON Schema 2020-12, the dialect of OpenAPI 3.1;
  a violation answers 422 with the field and the rule, a body that is not JSON answers 400;
* parameters are split and coerced by the non-null branch of a nullable ``anyOf`` (Connexion
  reads ``type`` to decide), exploded form arrays keep each occurrence as one item, and an
  integer is read only from ASCII digits;
* a JSON body is parsed once, refused past a small nesting depth, and handed to the handler as
  parsed (Flask would parse it again, with a parser a deep body drives into RecursionError).

Written for Connexion 3.3. Delete it when Connexion supports OpenAPI 3.1 itself, and the
body and integer checks with it once Connexion parses bodies once and reads integers strictly.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import flask
import jsonschema
import orjson
from connexion import spec as connexion_spec
from connexion.datastructures import MediaTypeDict
from connexion.exceptions import (
    BadRequestProblem,
    InvalidSpecification,
    NonConformingResponseBody,
    UnsupportedMediaTypeProblem,
)
from connexion.operations import OpenAPIOperation
from connexion.uri_parsing import OpenAPIURIParser
from connexion.validators import (
    FormDataValidator,
    JSONRequestBodyValidator,
    JSONResponseBodyValidator,
    MultiPartFormDataValidator,
    ParameterValidator,
    TextResponseBodyValidator,
)
from jsonschema import Draft202012Validator
from starlette.datastructures import Headers

from ..contract import ContractError, is_openapi_31, validate_document

log = logging.getLogger(__name__)

FORMAT_CHECKER = Draft202012Validator.FORMAT_CHECKER


class RequestValidationProblem(BadRequestProblem):
    """A request that breaks the document's schemas: 422 Unprocessable Content."""

    def __init__(self, detail: str):
        super().__init__(detail=detail)
        self.status = self.status_code = 422
        self.title = "Unprocessable Content"


class MalformedBodyProblem(BadRequestProblem):
    """A body that cannot be parsed at all: 400 Bad Request."""


class OpenAPI31Operation(OpenAPIOperation):
    """An operation whose parameters Connexion's parsing code can read.

    Connexion decides how to split and coerce a parameter from its schema's ``type``. A
    parameter value on the wire is never JSON null, so for parsing each parameter's schema is
    its non-null branch; the document's own schema travels alongside, under
    ``x-document-schema``, and is what validation uses.
    """

    @property
    def parameters(self):
        parsed = getattr(self, "_parsed_parameters", None)
        if parsed is None:
            parsed = [
                {**p, "schema": non_null(p.get("schema", {})),
                 "x-document-schema": p.get("schema", {})}
                for p in super().parameters
            ]
            self._parsed_parameters = parsed
        return parsed


class OpenAPI31Specification(connexion_spec.OpenAPISpecification):
    """Connexion's OpenAPI 3 specification, validated as the 3.1 document it is."""

    operation_cls = OpenAPI31Operation

    @classmethod
    def _validate_spec(cls, spec: dict) -> None:
        try:
            validate_document(spec)
        except ContractError as error:
            raise InvalidSpecification(str(error)) from None


_connexion_from_dict = connexion_spec.Specification.from_dict.__func__  # type: ignore[attr-defined]


def _from_dict(cls, spec, *, base_uri=""):
    if isinstance(spec, dict) and is_openapi_31(spec):
        return OpenAPI31Specification(spec, base_uri=base_uri)
    return _connexion_from_dict(cls, spec, base_uri=base_uri)


def install() -> None:
    """Route 3.1 documents to OpenAPI31Specification. Idempotent."""
    connexion_spec.Specification.from_dict = classmethod(_from_dict)  # type: ignore[assignment]


def problem() -> str | None:
    """What of Connexion this module relies on is no longer there; None while it all is."""
    relied_on = {
        "Specification.from_dict": connexion_spec.Specification.__dict__.get("from_dict"),
        "OpenAPISpecification._validate_spec": getattr(connexion_spec.OpenAPISpecification,
                                                       "_validate_spec", None),
        "OpenAPIOperation.parameters": OpenAPIOperation.__dict__.get("parameters"),
        "OpenAPIURIParser.resolve_params": getattr(OpenAPIURIParser, "resolve_params", None),
        "OpenAPIURIParser._resolve_param_duplicates": getattr(OpenAPIURIParser, "_resolve_param_duplicates",
                                                              None),
        "OpenAPIURIParser._split": getattr(OpenAPIURIParser, "_split", None),
        "JSONRequestBodyValidator.wrap_receive": getattr(JSONRequestBodyValidator, "wrap_receive", None),
        "JSONRequestBodyValidator._parse": getattr(JSONRequestBodyValidator, "_parse", None),
        "JSONRequestBodyValidator._validate": getattr(JSONRequestBodyValidator, "_validate", None),
        "JSONResponseBodyValidator._validate": getattr(JSONResponseBodyValidator, "_validate", None),
        "ParameterValidator.validate_parameter": getattr(ParameterValidator, "validate_parameter", None),
        "ParameterValidator.validate_request": getattr(ParameterValidator, "validate_request", None),
    }
    missing = [name for name, found in relied_on.items() if found is None]
    if not isinstance(relied_on["Specification.from_dict"], classmethod):
        missing.append("Specification.from_dict as a classmethod")
    if not isinstance(relied_on["OpenAPIOperation.parameters"], property):
        missing.append("OpenAPIOperation.parameters as a property")
    return ("Connexion no longer has " + ", ".join(dict.fromkeys(missing))) if missing else None


# -- schemas --------------------------------------------------------------------------------


def non_null(schema: dict) -> dict:
    """The schema a present (non-null) value must match, for parsing decisions.

    ``{anyOf: [{type: integer}, {type: 'null'}], default: 20}`` becomes
    ``{type: integer, default: 20}``; anything else is returned as it is.
    """
    for keyword in ("anyOf", "oneOf"):
        branches = schema.get(keyword)
        if not branches:
            continue
        present = [b for b in branches if b.get("type") != "null"]
        if len(present) == 1:
            merged = {k: v for k, v in schema.items() if k != keyword}
            merged.update(present[0])
            return merged
    return schema


_validators: dict[int, tuple[dict, Draft202012Validator]] = {}


def validator_for(schema: dict) -> Draft202012Validator:
    """One validator per schema object, built on first use: Connexion asks per request."""
    cached = _validators.get(id(schema))
    if cached is None or cached[0] is not schema:
        cached = (schema, Draft202012Validator(schema, format_checker=FORMAT_CHECKER))
        _validators[id(schema)] = cached
    return cached[1]


def violation(schema: dict, instance: Any, where: str) -> str | None:
    """'<where>.<path>: <rule broken>' for the most relevant violation, or None if valid."""
    error = jsonschema.exceptions.best_match(validator_for(schema).iter_errors(instance))
    if error is None:
        return None
    # "not valid under any of the given schemas" says little; name the rule the value broke
    # in the branch it was meant for (never the 'null' branch of a nullable anyOf).
    while error.validator in ("anyOf", "oneOf") and error.context:
        meant = [e for e in error.context if e.schema.get("type") != "null"]
        error = jsonschema.exceptions.best_match(meant or error.context)
    path = ".".join(str(p) for p in error.absolute_path)
    message = _shortened(error.message, error.instance)
    return f"{where}.{path}: {message}" if path else f"{where}: {message}"


# How much of a value a violation's message quotes: a 5,000-character memory that is one
# character too long need not come back whole in its error.
QUOTED_VALUE = 60


def _shortened(message: str, instance: Any) -> str:
    """``message`` with the value it quotes cut short, saying how long it was."""
    quoted = repr(instance)
    if not isinstance(instance, str) or len(quoted) <= QUOTED_VALUE or quoted not in message:
        return message
    return message.replace(quoted, f"{quoted[:QUOTED_VALUE]}...' ({len(instance)} characters)", 1)


# -- parameters -----------------------------------------------------------------------------


# How the contract's integers are written in a URL. Connexion reads them with int(), which
# also takes '5_0', '+5', ' 5' and digits of any script.
INTEGER = re.compile(r"-?[0-9]+")


class URIParser(OpenAPIURIParser):
    """Connexion's OpenAPI URI parser, minus its corruption of exploded form arrays and its
    lenient integers."""

    def resolve_params(self, params, _in):
        resolved = super().resolve_params(params, _in)
        for name, value in resolved.items():
            schema = self.param_schemas.get(name) or {}
            kind = schema.get("type")
            item_kind = schema.get("items", {}).get("type") if kind == "array" else None
            if kind != "integer" and item_kind != "integer":
                continue
            # Connexion reads a path parameter as one value, any other as the list of its
            # occurrences.
            sent = [params[name]] if _in == "path" else params[name]
            if kind == "integer":
                resolved[name] = _as_sent_unless_digits(value, sent[-1])
            else:
                definition = self.param_defns[name]
                items = self._split(self._resolve_param_duplicates(sent, definition, _in), definition, _in)
                if isinstance(value, list) and len(items) == len(value):
                    resolved[name] = [_as_sent_unless_digits(v, i) for v, i in zip(value, items, strict=True)]
        return resolved

    @staticmethod
    def _resolve_param_duplicates(values, param_defn, _in):
        if _is_exploded_form(param_defn, _in):
            return list(values)
        return OpenAPIURIParser._resolve_param_duplicates(values, param_defn, _in)

    @staticmethod
    def _split(value, param_defn, _in):
        if _is_exploded_form(param_defn, _in):
            # Each occurrence is one item. Connexion joins them with commas and splits again,
            # which breaks any item that contains a comma.
            return value
        return OpenAPIURIParser._split(value, param_defn, _in)


def _as_sent_unless_digits(value, sent):
    """``value`` if it is an integer read from ASCII digits, else ``sent``, which validation
    then refuses as not an integer."""
    if type(value) is int and isinstance(sent, str) and not INTEGER.fullmatch(sent):
        return sent
    return value


def _is_exploded_form(param_defn: dict, _in: str) -> bool:
    style = param_defn.get("style", OpenAPIURIParser.style_defaults[_in])
    return style == "form" and param_defn.get("explode", True)


class Parameters(ParameterValidator):
    """Parameter validation with JSON Schema 2020-12; a violation answers 422."""

    @staticmethod
    def validate_parameter(parameter_type, value, param, param_name=None):
        if value is None:
            if param.get("required"):
                return f"{parameter_type} parameter '{param['name']}' is required"
            return None
        schema = param.get("x-document-schema", param.get("schema", {}))
        return violation(schema, value, f"{parameter_type} parameter '{param['name']}'")

    def validate_request(self, request):
        try:
            super().validate_request(request)
        except BadRequestProblem as problem:
            raise RequestValidationProblem(problem.detail) from None


# -- bodies ---------------------------------------------------------------------------------

UTF8 = {"utf-8", "utf8"}
# The contract's bodies nest two levels deep; a body nested far deeper is an attack on a
# parser's or the validator's recursion, not a request.
MAX_JSON_DEPTH = 32
# Where JSONBody leaves the body it parsed, in the request's scope, for ParsedJSONRequest.
PARSED_BODY = "mnemo.parsed_json_body"
_UNPARSED = object()


class JSONBody(JSONRequestBodyValidator):
    """JSON request bodies: parsed strictly, validated with JSON Schema 2020-12."""

    _parsed: Any = _UNPARSED

    async def wrap_receive(self, receive, *, scope):
        headers = Headers(scope=scope)
        if headers.get("content-length", "0").strip() in ("", "0"):
            if self._required:
                raise RequestValidationProblem("body: a JSON request body is required")
        elif "content-type" not in headers:
            # Connexion would guess; a client that does not say what it sends is refused.
            raise UnsupportedMediaTypeProblem(detail="Content-Type must be application/json")
        receive, scope = await super().wrap_receive(receive, scope=scope)
        if self._parsed is not _UNPARSED:
            scope = {**scope, PARSED_BODY: self._parsed}
        return receive, scope

    async def _parse(self, stream, scope) -> Any:
        if self._encoding.lower() not in UTF8:
            raise UnsupportedMediaTypeProblem(detail="JSON bodies must be encoded as UTF-8")
        raw = b"".join([chunk async for chunk in stream])
        if not raw:
            return None
        try:
            # orjson also refuses invalid UTF-8 and lone surrogates, which no database stores.
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as error:
            raise MalformedBodyProblem(detail=f"body is not valid JSON: {error}") from None
        # A body with fewer brackets than the limit cannot nest deeper than it.
        if raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH and nests_deeper(body, MAX_JSON_DEPTH):
            raise MalformedBodyProblem(detail=f"body: JSON nested deeper than {MAX_JSON_DEPTH} levels")
        self._parsed = body
        return body

    def _validate(self, body: Any) -> None:
        if body is None and not self._nullable:
            raise RequestValidationProblem("body: a JSON request body is required")
        problem = violation(self._schema, body, "body")
        if problem:
            raise RequestValidationProblem(problem)


def nests_deeper(value: Any, limit: int) -> bool:
    """Whether ``value`` has arrays or objects more than ``limit`` levels deep (the outermost
    one is level 1), found without recursion."""
    pending = [(value, 1)]
    while pending:
        node, depth = pending.pop()
        if isinstance(node, dict):
            children = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > limit:
            return True
        pending.extend((child, depth + 1) for child in children)
    return False


class ParsedJSONRequest(flask.Request):
    """Flask's request, whose JSON body is the one JSONBody parsed and validated, not parsed
    again."""

    def get_json(self, force: bool = False, silent: bool = False, cache: bool = True) -> Any:
        scope = self.environ.get("asgi.scope") or {}
        if PARSED_BODY in scope:
            return scope[PARSED_BODY]
        return super().get_json(force=force, silent=silent, cache=cache)


class JSONResponse(JSONResponseBodyValidator):
    """Response validation (tests, or MNEMO_VALIDATE_RESPONSES) with JSON Schema 2020-12."""

    def _validate(self, body: dict) -> None:
        problem = violation(self._schema, body, "response")
        if problem:
            log.error("response does not match the document: %s", problem)
            raise NonConformingResponseBody(detail="response does not match the API document")


VALIDATOR_MAP = {
    "parameter": Parameters,
    "body": MediaTypeDict(
        {
            "*/*json": JSONBody,
            "application/x-www-form-urlencoded": FormDataValidator,
            "multipart/form-data": MultiPartFormDataValidator,
        }
    ),
    "response": MediaTypeDict(
        {
            "*/*json": JSONResponse,
            "text/plain": TextResponseBodyValidator,
        }
    ),
}
