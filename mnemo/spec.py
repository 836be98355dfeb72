"""The contract and the code agree: every operation of openapi.yaml has a handler, and every
public handler serves an operation.

``check`` reports where they disagree. ``scaffold`` writes a handler stub for each operation
that has none; a stub answers 501 ``NOT_IMPLEMENTED`` and ``check`` keeps reporting it, so a
scaffolded operation can never pass as done. Both take the operations from mnemo.contract, and
import handlers from wherever ``sys.path`` finds them first.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import inspect
import keyword
import pkgutil
import sys
from dataclasses import dataclass
from pathlib import Path

from .api_errors import NotImplementedYet
from .contract import Contract, Operation

# Set on a scaffolded handler; its value is the operation it stands in for.
STUB_MARK = "__mnemo_not_implemented__"


def not_implemented(operation: str):
    """Mark a scaffolded handler: it answers 501 NOT_IMPLEMENTED whatever its body says, and
    ``mnemo spec check`` lists it as not implemented. Remove the mark once it is implemented."""

    def mark(function):
        @functools.wraps(function)  # keeps the signature Connexion reads parameters from
        def answer(*_args, **_kwargs):
            raise NotImplementedYet(f"{operation} ({function.__name__}) is in the API document but "
                                    "not implemented yet")

        setattr(answer, STUB_MARK, operation)
        return answer

    return mark


@dataclass(frozen=True)
class Finding:
    """One operation or handler and whether code and contract agree on it."""

    kind: str  # one of KINDS
    subject: str
    detail: str = ""


OK, MISSING, NOT_IMPLEMENTED, UNDECLARED = "ok", "missing", "not implemented", "not in the spec"
KINDS = (OK, MISSING, NOT_IMPLEMENTED, UNDECLARED)


def check(contract: Contract) -> list[Finding]:
    """Every operation's handler, every link to an operation that does not exist, then every
    public handler no operation names."""
    findings = []
    routed = set()
    for operation in contract.operations:
        routed.add(operation.handler)
        subject = f"{operation.name} -> {operation.handler or '(no operationId)'}"
        problem = _missing(operation)
        if problem:
            findings.append(Finding(MISSING, subject, problem))
        elif hasattr(getattr(importlib.import_module(operation.module), operation.function), STUB_MARK):
            findings.append(Finding(NOT_IMPLEMENTED, subject, "a scaffolded stub that answers 501"))
        else:
            findings.append(Finding(OK, subject))
    declared = {operation.operation_id for operation in contract.operations}
    for operation in contract.operations:
        for status, response in operation.definition.get("responses", {}).items():
            for name, link in contract.resolve(response).get("links", {}).items():
                target = contract.resolve(link).get("operationId")
                if target is not None and target not in declared:
                    findings.append(Finding(MISSING, f"{operation.name} {status} link {name}",
                                            f"operationId {target} names no operation"))
    for handler in _public_handlers({operation.module for operation in contract.operations}):
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


def scaffold(contract: Contract) -> list[tuple[Path, list[Operation]]]:
    """Write a stub for each operation without a handler; the files written and what for.

    A module that does not exist is created; one that exists gets the missing functions
    appended. Nothing is written unless every stub has a place to go.
    """
    wanted: dict[str, list[Operation]] = {}
    for operation in contract.operations:
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
        text = text.rstrip("\n") + "\n" + "".join(_stub(operation, contract) for operation in stubs)
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


def _stub(operation: Operation, contract: Contract) -> str:
    summary = (operation.definition.get("summary") or operation.operation_id).strip()
    summary = summary.replace("\\", "\\\\").replace('"', '\\"')
    return (f'\n\n@not_implemented("{operation.name}")\n'
            f"def {operation.function}({', '.join(_parameters(operation, contract))}):\n"
            f'    """{summary}"""\n')


def _parameters(operation: Operation, contract: Contract) -> list[str]:
    """The parameters Connexion passes, as they would appear in the handler's signature."""
    required, optional, others = [], [], False
    for parameter in operation.parameters:
        if parameter.location not in ("path", "query"):
            continue
        if not parameter.name.isidentifier() or keyword.iskeyword(parameter.name):
            others = True
        elif parameter.required:
            required.append(parameter.name)
        else:
            optional.append(f"{parameter.name}={parameter.schema.get('default')!r}")
    body = operation.definition.get("requestBody")
    if body is not None and contract.resolve(body).get("required"):
        required.append("body")
    elif body is not None:
        optional.append("body=None")
    return required + optional + (["**parameters"] if others else [])
