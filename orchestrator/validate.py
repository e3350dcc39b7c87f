"""What the rig reads back is foreign input: run directories, reproducer
bundles, LAVA exports and logs, the results store, a test program's output.
They travel between machines and people, so they are data checked here before
any of it reaches a path, a shell or SQL.

- one name rule (`NAME`, matched whole, at most NAME_MAX characters) for
  everything that becomes part of a path: kernels, targets, runs, boots;
- JSON files: bounded size, no NaN/Infinity, integers that fit 64 bits,
  bounded nesting, then the shipped schema (orchestrator/schema/); a pattern
  in a schema matches the whole string (`$` never before a trailing newline);
- paths named by a foreign file stay inside the directory they belong to.

Every failure is BadInput with one line: the file, the field, what is wrong.
"""

from __future__ import annotations

import json
import re
import reprlib
from functools import cache
from pathlib import Path
from typing import Any

from orchestrator.errors import BadInput

NAME_MAX = 64
NAME = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._-]{{0,{NAME_MAX - 1}}}")
NAME_RULE = (f"a name of at most {NAME_MAX} letters, digits, '.', '_' and '-',"
             " starting with a letter or digit")
SCHEMA_DIR = Path(__file__).resolve().parent / "schema"
MAX_JSON_BYTES = 256 << 20  # a run's results.json with every sample stays far below
MAX_DEPTH = 64  # the deepest of the rig's own files is under 10
_INT_LIMIT = 1 << 63
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
SHOWN = 60  # characters of a foreign value an error line quotes


def is_name(value: object) -> bool:
    return isinstance(value, str) and NAME.fullmatch(value) is not None


_SHORT = reprlib.Repr()  # attributes, not arguments: Python 3.11
_SHORT.maxlevel, _SHORT.maxlist, _SHORT.maxdict = 3, 6, 6
_SHORT.maxstring, _SHORT.maxlong, _SHORT.maxother = SHOWN, 40, SHOWN


def shown(value: object) -> str:
    """A foreign value as an error line quotes it: short, one line, no control
    characters. Never built from the whole repr (it may be huge)."""
    text = _SHORT.repr(value)
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)[:2 * SHOWN]


def name(value: object, where: str) -> str:
    """value if it follows the name rule, else BadInput naming `where`."""
    if not is_name(value):
        raise BadInput(f"{where}: got {shown(value)}, expected {NAME_RULE}")
    assert isinstance(value, str)
    return value


def inside(root: Path, path: Path, where: str) -> Path:
    """path, resolved, if it lies within root (symbolic links followed)."""
    resolved = path.resolve()
    if not resolved.is_relative_to(root.resolve()):
        leads = "" if resolved == path else f" (it leads to {shown(str(resolved))})"
        raise BadInput(f"{where}: {shown(str(path))}{leads} is outside {root}")
    return resolved


# -- JSON ----------------------------------------------------------------------


def _bounded_int(text: str) -> int:
    if len(text) > 20 or not -_INT_LIMIT <= int(text) < _INT_LIMIT:
        raise ValueError(f"integer {text[:20]}... does not fit 64 bits")
    return int(text)


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"number {text[:20]} is out of range")
    return value


def _no_constant(text: str) -> Any:
    raise ValueError(f"{text} is not a JSON number")


def parse_json(text: str, where: str) -> Any:
    """A JSON text as data, strictly: BadInput for anything the rig never writes."""
    opened = max(text.count("["), text.count("{"))
    try:
        if opened > MAX_DEPTH and nesting(text) > MAX_DEPTH:
            raise ValueError(f"nested deeper than {MAX_DEPTH} levels")
        return json.loads(text, parse_int=_bounded_int, parse_float=_finite_float,
                          parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        message = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise BadInput(f"{where}: not valid JSON: {message}") from None


def nesting(text: str) -> int:
    """The deepest bracket nesting of a JSON text (outside strings), in one pass:
    checked before json.loads, whose recursion a deep document would exhaust."""
    deepest = level = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            level += 1
            deepest = max(deepest, level)
        elif char in "]}":
            level -= 1
    return deepest


def read_text(path: Path, limit: int = MAX_JSON_BYTES, errors: str = "strict") -> str:
    """A foreign file's text: a regular file (never a FIFO or a device, which
    could hang the read), at most `limit` bytes, UTF-8 (errors: as bytes.decode)."""
    try:
        if not path.is_file():
            raise BadInput(f"{path}: not a regular file")
        with path.open("rb") as stream:
            data = stream.read(limit + 1)
    except OSError as exc:
        raise BadInput(f"{path}: cannot read: {exc.strerror}") from None
    if len(data) > limit:
        raise BadInput(f"{path}: larger than {limit >> 20} MiB")
    try:
        return data.decode("utf-8", errors)
    except UnicodeDecodeError as exc:
        raise BadInput(f"{path}: not UTF-8 text (byte {exc.start})") from None


@cache
def _validator(schema_name: str) -> Any:
    import jsonschema  # only when a foreign file is read

    file_name, _, pointer = schema_name.partition("#")
    schema = json.loads((SCHEMA_DIR / file_name).read_text())
    if pointer:  # one definition of the file: "results-v1.json#/$defs/case"
        schema = {"$schema": schema["$schema"], "$defs": schema["$defs"], "$ref": f"#{pointer}"}

    def whole_pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Any:
        # a schema pattern's '$' is the end of the string, as in ECMA-262
        if isinstance(instance, str) and not re.search(
                pattern[:-1] + r"\Z" if pattern.endswith("$") else pattern, instance):
            yield jsonschema.ValidationError(f"does not match {pattern}")

    checker = jsonschema.FormatChecker()
    checker.checks("rig-name", raises=())(is_name)
    base = jsonschema.validators.validator_for(schema)
    strict = jsonschema.validators.extend(base, {"pattern": whole_pattern})
    return strict(schema, format_checker=checker)


def field(path: tuple | list) -> str:
    """A JSON path as rig.yaml's errors spell key paths: kernels.k1.targets[0]."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (
            f".{part}" if is_name(part) else f".{shown(part)}")
    return out.lstrip(".") or "(top level)"


def check(data: Any, schema_name: str, where: str) -> Any:
    """data if it follows the schema, else BadInput naming the first wrong field."""
    error = next(iter(_validator(schema_name).iter_errors(data)), None)  # the first found
    if error is None:
        return data
    while error.context:  # a oneOf: the error of the branch that got furthest
        error = max(error.context, key=lambda e: len(e.absolute_path))
    if error.validator == "format":
        why = f"got {shown(error.instance)}, expected {NAME_RULE}"
    elif error.validator == "required":
        missing = [k for k in error.validator_value if k not in error.instance]
        why = f"{shown(missing[0] if missing else error.validator_value)} is required"
    elif error.validator == "additionalProperties":
        extra = [k for k in error.instance if k not in error.schema.get("properties", {})]
        why = f"unknown key {shown(extra[0] if extra else '?')}"
    else:  # type, enum, pattern, minimum, minProperties, oneOf...: the rule as the schema says
        rule = error.validator_value
        if not isinstance(rule, str | int | float | list):  # a sub-schema: not for people
            rule = "its schema"
        why = f"got {shown(error.instance)}, expected {error.validator} {shown(rule)}"
    raise BadInput(f"{where}: {field(error.absolute_path)}: {why}")


def load_json(path: Path, schema_name: str, limit: int = MAX_JSON_BYTES) -> Any:
    """A foreign JSON file, read and checked against orchestrator/schema/<schema_name>."""
    return check(parse_json(read_text(path, limit), str(path)), schema_name, str(path))
