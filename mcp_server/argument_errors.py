"""What is wrong with a tool call's arguments, said in our words and naming the argument.

Checked before the SDK validates (it ignores names it does not know and keeps `Infinity`/`NaN`, which JSON
cannot hold and the store would keep as null): an unknown argument, at any depth the input schema closes, is
refused with the nearest known name; so is a number that is not finite, anywhere. The SDK's own validation
errors (pydantic's) are then rewritten here: the argument's path and what it must be, never pydantic's text
or its links.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterator
from typing import Any

from pydantic import ValidationError

from daemon import InvalidInput, shown

_MAX_PROBLEMS = 3  # a message names the first few; fixing them shows the rest

# pydantic's error types -> what the argument must be, in our words.
_MUST_BE: dict[str, str] = {
    "string_type": "must be a string",
    "string_unicode": "must be a string",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "finite_number": "must be a finite number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "list_type": "must be a list",
    "dict_type": "must be an object",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
    "none_required": "must be null",
    "missing": "is required",
    "extra_forbidden": "is not an argument this tool takes",
    "recursion_loop": "is nested too deeply",
}


def path_text(path: tuple[str | int, ...]) -> str:
    """`('items', 0, 'content')` -> `items[0].content`."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part.isidentifier():
            text += f".{part}" if text else part
        else:
            text += f"[{shown(part, 40)}]"
    return text or "the arguments"


def check_arguments(arguments: dict[str, Any], schema: dict[str, Any]) -> None:
    """Refuse unknown argument names (with a suggestion), then numbers that are not finite; InvalidInput."""
    problems = list(_unknown(arguments, schema, schema.get("$defs", {}), (), closed=True))
    if problems:
        raise InvalidInput(_join(problems))
    check_finite(arguments)


def check_finite(arguments: dict[str, Any]) -> None:
    """Refuse `Infinity`, `-Infinity` and `NaN` anywhere in the arguments, naming where; InvalidInput. A relay
    must check before it re-encodes: the SDK's client writes them as null."""
    problems = [
        f"{path_text(p)} is {v}: only finite numbers can be stored" for p, v in _non_finite(arguments, ())
    ]
    if problems:
        raise InvalidInput(_join(problems))


def validation_problem(exc: ValidationError) -> InvalidInput:
    """The SDK's argument validation error as ours: each bad argument's path and what it must be."""
    problems = []
    for error in exc.errors(include_url=False):
        path = tuple(part for part in error["loc"] if isinstance(part, (int, str)))
        kind = error["type"]
        if kind == "literal_error":
            must = f"must be one of {error.get('ctx', {}).get('expected', 'the values the schema lists')}"
        elif kind in ("too_long", "too_short"):
            must = "has the wrong number of items"
        else:
            must = _MUST_BE.get(kind, "is not valid (see the tool's input schema)")
        problems.append(f"{path_text(path)} {must}")
    return InvalidInput(_join(list(dict.fromkeys(problems))))


def _join(problems: list[str]) -> str:
    more = len(problems) - _MAX_PROBLEMS
    return "; ".join(problems[:_MAX_PROBLEMS]) + (f" (and {more} more)" if more > 0 else "")


def _resolve(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return _resolve(defs.get(ref.removeprefix("#/$defs/"), {}), defs)
    return schema


def _unknown(
    value: Any, schema: dict[str, Any], defs: dict[str, Any], path: tuple[str | int, ...], *, closed: bool
) -> Iterator[str]:
    """Names in `value` that `schema` does not know, where it is an object schema that lists its properties
    and admits no others (a tool's arguments always; nested objects when the schema says so)."""
    schema = _resolve(schema, defs)
    for option in schema.get("anyOf", ()):  # `X | None`: look into the branch that fits the value
        option = _resolve(option, defs)
        container = "object" if isinstance(value, dict) else "array" if isinstance(value, list) else None
        if container is not None and option.get("type") == container:
            yield from _unknown(value, option, defs, path, closed=False)
    if isinstance(value, dict) and "properties" in schema:
        known = schema["properties"]
        if closed or schema.get("additionalProperties") is False:
            for name in value:
                if name not in known:
                    yield _unknown_name(name, list(known), path)
        for name, item in value.items():
            if name in known:
                yield from _unknown(item, known[name], defs, (*path, name), closed=False)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            yield from _unknown(item, schema["items"], defs, (*path, index), closed=False)


def _unknown_name(name: str, known: list[str], path: tuple[str | int, ...]) -> str:
    where = f" in {path_text(path)}" if path else ""
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    if close:
        hint = f" (did you mean {close[0]!r}?)"
    else:
        hint = f"; the known ones are {', '.join(known)}" if known else "; this tool takes no arguments"
    return f"unknown argument {shown(name, 40)}{where}{hint}"


def _non_finite(value: Any, path: tuple[str | int, ...]) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Each number in `value` that is not finite, with its path and its JSON spelling (iteratively: a
    caller's metadata may be nested deeper than Python's recursion limit)."""
    stack: list[tuple[tuple[str | int, ...], Any]] = [(path, value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            yield where, "NaN" if math.isnan(item) else "-Infinity" if item < 0 else "Infinity"
        elif isinstance(item, dict):
            stack.extend(((*where, str(key)), inner) for key, inner in reversed(item.items()))
        elif isinstance(item, list):
            stack.extend(((*where, index), inner) for index, inner in reversed(list(enumerate(item))))
