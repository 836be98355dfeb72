"""The contract and the code agree: every operation of openapi.yaml has a handler, and every
public handler serves an operation.

``check`` reports where they disagree. ``scaffold`` writes a handler stub for each operation
that has none; a stub answers 501 ``NOT_IMPLEMENTED`` and ``check`` keeps reporting it, so a
scaffolded operation can never pass as done.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import inspect
import keyword
import pkgutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

CONTROLLER = "x-openapi-router-controller"
METHODS = ("get", "put", "post", "delete", "patch", "options", "head", "trace")
# Set on a scaffolded handler; its value is the operation it stands in for.
STUB_MARK = "__mnemo_not_implemented__"


def not_implemented(operation: str):
    """Mark a scaffolded handler: it answers 501 NOT_IMPLEMENTED whatever its body says, and
    ``mnemo spec check`` lists it as not implemented. Remove the mark once it is implemented."""

    def mark(function):
        @functools.wraps(function)  # keeps the signature Connexion reads parameters from
        def answer(*_args, **_kwargs):
            detail = f"{operation} ({function.__name__}) is in the API document but not implemented yet"
            return {"detail": detail, "error_code": "NOT_IMPLEMENTED"}, 501

        setattr(answer, STUB_MARK, operation)
        return answer

    return mark


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    operation_id: str
    module: str  # where Connexion looks for the handler
    function: str
    definition: dict

    @property
    def name(self) -> str:
        return f"{self.method.upper()} {self.path}"

    @property
    def handler(self) -> str:
        return f"{self.module}.{self.function}"


@dataclass(frozen=True)
class Finding:
    """One operation or handler and whether code and contract agree on it."""

    kind: str  # one of KINDS
    subject: str
    detail: str = ""


OK, MISSING, NOT_IMPLEMENTED, UNDECLARED = "ok", "missing", "not implemented", "not in the spec"
KINDS = (OK, MISSING, NOT_IMPLEMENTED, UNDECLARED)


def operations(document: dict) -> Iterator[Operation]:
    """Each operation with the module and function Connexion routes it to: the operationId in
    the module ``x-openapi-router-controller`` names (on the operation or its path), or a
    dotted operationId by itself."""
    for path, item in document.get("paths", {}).items():
        for method in METHODS:
            operation = item.get(method)
            if operation is None:
                continue
            operation_id = operation.get("operationId", "")
            controller = operation.get(CONTROLLER) or item.get(CONTROLLER)
            if controller:
                module, function = controller, operation_id
            else:
                module, _, function = operation_id.rpartition(".")
            yield Operation(method, path, operation_id, module, function, operation)


def check(document: dict) -> list[Finding]:
    """Every operation's handler, every link to an operation that does not exist, then every
    public handler no operation names."""
    findings = []
    routed = set()
    for operation in operations(document):
        routed.add(operation.handler)
        subject = f"{operation.name} -> {operation.handler or '(no operationId)'}"
        problem = _missing(operation)
        if problem:
            findings.append(Finding(MISSING, subject, problem))
        elif hasattr(getattr(importlib.import_module(operation.module), operation.function), STUB_MARK):
            findings.append(Finding(NOT_IMPLEMENTED, subject, "a scaffolded stub that answers 501"))
        else:
            findings.append(Finding(OK, subject))
    declared = {operation.operation_id for operation in operations(document)}
    for operation in operations(document):
        for status, response in operation.definition.get("responses", {}).items():
            for name, link in _resolve(document, response).get("links", {}).items():
                target = _resolve(document, link).get("operationId")
                if target is not None and target not in declared:
                    findings.append(Finding(MISSING, f"{operation.name} {status} link {name}",
                                            f"operationId {target} names no operation"))
    for handler in _public_handlers({operation.module for operation in operations(document)}):
        if handler not in routed:
            findings.append(Finding(UNDECLARED, handler, "a public handler that no operation names"))
    return findings


def _missing(operation: Operation) -> str | None:
    if not operation.module or not operation.function:
        return "no x-openapi-router-controller, and the operationId names no module"
    if _find(operation.module) is None:
        return f"module {operation.module} does not exist"
    try:
        module = importlib.import_module(operation.module)
    except Exception as error:
        return f"module {operation.module} cannot be imported: {error!r}"
    if not callable(getattr(module, operation.function, None)):
        return f"module {operation.module} has no function {operation.function}"
    return None


def _public_handlers(controllers: set[str]) -> list[str]:
    """Public functions defined in the controller modules and their sibling modules."""
    modules = set()
    for name in controllers:
        modules.add(name)
        package, _, _ = name.rpartition(".")
        try:
            path = importlib.import_module(package).__path__ if package else None
        except (ImportError, AttributeError):
            continue
        for info in pkgutil.iter_modules(path):
            if not info.name.startswith("_"):
                modules.add(f"{package}.{info.name}")
    handlers = []
    for name in sorted(modules):
        try:
            module = importlib.import_module(name)
        except Exception:
            continue  # reported against its operations
        for function_name, function in inspect.getmembers(module, inspect.isfunction):
            if function.__module__ == name and not function_name.startswith("_"):
                handlers.append(f"{name}.{function_name}")
    return handlers


class ScaffoldError(Exception):
    """A stub that cannot be written where Connexion would look for it."""


def scaffold(document: dict) -> list[tuple[Path, list[Operation]]]:
    """Write a stub for each operation without a handler; the files written and what for.

    A module that does not exist is created; one that exists gets the missing functions
    appended. Nothing is written unless every stub has a place to go.
    """
    wanted: dict[str, list[Operation]] = {}
    for operation in operations(document):
        problem = _missing(operation)
        if problem is None:
            continue
        if not operation.module or not operation.function.isidentifier():
            raise ScaffoldError(f"{operation.name}: {problem}; give it an operationId and an "
                                "x-openapi-router-controller first")
        if problem.startswith(f"module {operation.module} cannot be imported"):
            raise ScaffoldError(f"{operation.name}: {problem}")
        wanted.setdefault(operation.module, []).append(operation)
    plans = [(_module_file(module), stubs) for module, stubs in wanted.items()]
    for path, stubs in plans:
        exists = path.exists()
        text = path.read_text(encoding="utf-8") if exists else _module_header(stubs[0].module)
        if exists and IMPORT not in text:
            text = f"{text.rstrip()}\n\n\n# Written by `mnemo spec scaffold`.\n{IMPORT}  # noqa: E402\n"
        text = text.rstrip("\n") + "\n" + "".join(_stub(operation, document) for operation in stubs)
        path.write_text(text, encoding="utf-8")
    importlib.invalidate_caches()
    for module in wanted:
        if module in sys.modules:  # imported to look for the handler: read it again
            importlib.reload(sys.modules[module])
    return plans


IMPORT = "from mnemo.spec import not_implemented"


def _find(module: str):
    """The module's import spec, or None if neither it nor its package exists."""
    try:
        return importlib.util.find_spec(module)
    except ModuleNotFoundError:
        return None


def _module_file(module: str) -> Path:
    found = _find(module)
    if found is not None and found.origin:
        return Path(found.origin)
    package, _, name = module.rpartition(".")
    try:
        directory = importlib.import_module(package).__path__[0] if package else None
    except (ImportError, AttributeError):
        directory = None
    if directory is None:
        raise ScaffoldError(f"cannot place module {module}: package {package or '(none)'} does not exist")
    return Path(directory) / f"{name}.py"


def _module_header(module: str) -> str:
    return (f'"""Handlers stubbed by `mnemo spec scaffold` for operations of the API document.\n\n'
            f"Each answers 501 NOT_IMPLEMENTED, and `mnemo spec check` fails, until it is implemented\n"
            f"and its @not_implemented removed. Not to be committed as it is.\n"
            f'"""\n\nfrom __future__ import annotations\n\n{IMPORT}\n')


def _stub(operation: Operation, document: dict) -> str:
    summary = (operation.definition.get("summary") or operation.operation_id).strip()
    summary = summary.replace("\\", "\\\\").replace('"', '\\"')
    return (f'\n\n@not_implemented("{operation.name}")\n'
            f"def {operation.function}({', '.join(_parameters(operation, document))}):\n"
            f'    """{summary}"""\n')


def _parameters(operation: Operation, document: dict) -> list[str]:
    """The parameters Connexion passes, as they would appear in the handler's signature."""
    declared = {}
    item = document["paths"][operation.path]
    for parameter in [*item.get("parameters", []), *operation.definition.get("parameters", [])]:
        parameter = _resolve(document, parameter)
        declared[parameter["name"], parameter["in"]] = parameter
    required, optional, others = [], [], False
    for (name, where), parameter in declared.items():
        if where not in ("path", "query"):
            continue
        if not name.isidentifier() or keyword.iskeyword(name):
            others = True
        elif parameter.get("required") or where == "path":
            required.append(name)
        else:
            optional.append(f"{name}={parameter.get('schema', {}).get('default')!r}")
    body = operation.definition.get("requestBody")
    if body is not None and _resolve(document, body).get("required"):
        required.append("body")
    elif body is not None:
        optional.append("body=None")
    return required + optional + (["**parameters"] if others else [])


def _resolve(document: dict, node: dict) -> dict:
    while "$ref" in node:
        target = document
        for part in node["$ref"].lstrip("#/").split("/"):
            target = target[part]
        node = target
    return node
