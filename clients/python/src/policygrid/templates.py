"""The contract's template schemas, checked the way the server checks them (Core's
TemplateValidator), so a local evaluator refuses the same inputs a server would.

A template maps a field name to a spec {"type", "pattern", "choices", "min", "max",
"max_length", "items", "properties", "required", ...}. Fields the template does not mention
are allowed. Patterns are searched, not anchored.
"""
from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any


def validate(template: dict, value: Any, path: str) -> list[str]:
    """Every violation as "path: message"; an empty list when the value fits."""
    errors: list[str] = []
    _object(template or {}, value, path, errors)
    return errors


@lru_cache(maxsize=256)
def _compile(pattern: str):
    """A template pattern read as JSON Schema (ECMA-262) reads it, as the server does (Core's SchemaPattern):
    \\d, \\w and \\s are ASCII, $ is the end of the input only (Python's $, like .NET's, also matches before
    a final newline) and . stops at every line terminator. A pattern that turns on (?m) or (?s) keeps
    Python's meaning of those."""
    try:
        return re.compile(_ecma(pattern), re.ASCII)
    except re.error:
        re.compile(pattern, re.ASCII)  # describe the pattern as written
        raise


# Inline options that turn on m or s: $ and . then mean what the pattern's author asked of Python.
_LINE_OPTIONS = re.compile(r"\(\?[aiLmsux]*[ms][aiLmsux]*(?:-[imsx]*)?[:)]")


def _ecma(pattern: str) -> str:
    if "$" not in pattern and "." not in pattern and "[^]" not in pattern:
        return pattern
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\":
            out.append(pattern[i:i + 2])
            i += 2
        elif pattern.startswith("[^]", i):
            out.append(r"[\s\S]")  # ECMA-262: any character; Python would read a class holding "]"
            i += 3
        elif c == "[":
            end = _class_end(pattern, i)
            out.append(pattern[i:end])
            i = end
        elif pattern.startswith("(?#", i):
            close = pattern.find(")", i)
            close = n - 1 if close < 0 else close
            out.append(pattern[i:close + 1])
            i = close + 1
        elif c == "(" and _LINE_OPTIONS.match(pattern, i):
            return pattern
        else:
            out.append(r"\Z" if c == "$" else r"[^\n\r\u2028\u2029]" if c == "." else c)
            i += 1
    return "".join(out)


def _class_end(pattern: str, i: int) -> int:
    """Just past the "]" closing the class opened at i; a "]" first in the class is a character."""
    n = len(pattern)
    i += 1
    if i < n and pattern[i] == "^":
        i += 1
    if i < n and pattern[i] == "]":
        i += 1
    while i < n:
        if pattern[i] == "\\":
            i += 2
        elif pattern[i] == "]":
            return i + 1
        else:
            i += 1
    return n


def _object(template: dict, value: Any, path: str, errors: list[str]) -> None:
    if not template:
        return
    if value is None:
        value = {}
    if not isinstance(value, dict):
        errors.append(f"{path or 'value'}: must be an object, not {_describe(value)}")
        return
    for field, spec in template.items():
        if not isinstance(spec, dict):
            continue
        field_path = f"{path}.{field}" if path else field
        v = value.get(field)
        if v is None:
            if spec.get("required") is True:
                errors.append(f"{field_path}: is required")
            continue
        _value(spec, v, field_path, errors)


def _value(spec: dict, value: Any, path: str, errors: list[str]) -> None:
    kind = spec.get("type") if isinstance(spec.get("type"), str) else "any"
    if not _matches(kind, value):
        errors.append(f"{path}: must be {_article(kind)}, not {_describe(value)}")
        return
    choices = spec.get("choices")
    if isinstance(choices, list) and not any(_equal(c, value) for c in choices):
        errors.append(f"{path}: {_show(value)} is not one of {_show(choices)}")
    if isinstance(value, str) and isinstance(spec.get("pattern"), str):
        try:
            if not _compile(spec["pattern"]).search(value):
                errors.append(f"{path}: does not match {spec['pattern']}")
        except re.error as e:
            errors.append(f"{path}: the template's pattern '{spec['pattern']}' is not a valid regular expression: {e}")
    if _is_number(value):
        if _is_number(spec.get("min")) and value < spec["min"]:
            errors.append(f"{path}: {_show(value)} is less than the minimum {_show(spec['min'])}")
        if _is_number(spec.get("max")) and value > spec["max"]:
            errors.append(f"{path}: {_show(value)} is greater than the maximum {_show(spec['max'])}")
    max_length = spec.get("max_length")
    if _is_number(max_length):
        if isinstance(value, list) and len(value) > max_length:
            errors.append(f"{path}: has {len(value)} items, more than max_length {_show(max_length)}")
        elif isinstance(value, str) and _utf16_length(value) > max_length:
            errors.append(f"{path}: is {_utf16_length(value)} characters long, more than max_length {_show(max_length)}")
    items = spec.get("items")
    if isinstance(value, list) and isinstance(items, dict):
        for i, item in enumerate(value):
            item_path = f"{path}[{i}]"
            if item is None:
                item_kind = items.get("type") if isinstance(items.get("type"), str) else "any"
                if not _matches(item_kind, None):
                    errors.append(f"{item_path}: must be {_article(item_kind)}, not null")
                continue
            _value(items, item, item_path, errors)
    if isinstance(value, dict) and isinstance(spec.get("properties"), dict):
        _object(spec["properties"], value, path, errors)


def _utf16_length(s: str) -> int:
    """The length the server (.NET strings) gives: characters outside the BMP count twice."""
    return len(s) + sum(1 for ch in s if ord(ch) > 0xFFFF)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _matches(kind: str, v: Any) -> bool:
    if kind == "string":
        return isinstance(v, str)
    if kind == "number":
        return _is_number(v)
    if kind == "integer":
        return _is_number(v) and (isinstance(v, int) or v.is_integer())  # no float(): a huge int would overflow
    if kind == "boolean":
        return isinstance(v, bool)
    if kind == "object":
        return isinstance(v, dict)
    if kind == "array":
        return isinstance(v, list)
    return True


def _equal(a: Any, b: Any) -> bool:
    if _is_number(a) and _is_number(b):
        return a == b
    return type(a) is type(b) and a == b


def _article(kind: str) -> str:
    return f"an {kind}" if kind in ("integer", "object", "array") else f"a {kind}"


def _show(v: Any) -> str:
    try:
        return json.dumps(v, separators=(",", ":"))
    except (TypeError, ValueError):
        return repr(v)


def _describe(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if _is_number(v):
        return "a number"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, list):
        return "an array"
    if isinstance(v, dict):
        return "an object"
    return type(v).__name__
