"""Values as the server sees them: what survives a trip through JSON, or a 400 naming where it does not.

A remote call sends its input as JSON text, so the policy sees lists for tuples and string keys for int keys,
and a set, a datetime, NaN or an integer past a double's range never arrives (the server answers 400). Local mode
puts the same value through the same trip, so a call that the server would refuse is refused here too, with the
same code, instead of handing the policy something it could never receive from an executor.
"""
from __future__ import annotations

import json
import math
from typing import Any

from .errors import PolicyGridApiError

_DOUBLE_MAX = 1.7976931348623157e308


def as_json(value: Any, path: str) -> Any:
    """``value`` after a JSON round trip; raises 400 ``validation_failed`` naming the first value JSON cannot carry."""
    # Checked first: json.dumps writes 1 and "1" as one key twice (read back, one silently wins), a lone surrogate as an
    # escape the server refuses, and any depth up to Python's recursion limit.
    ensure_json(value, path)
    try:
        return json.loads(encode(value, path), parse_int=_int_in_range)
    except _OutOfRange:
        raise _refused(value, path) from None


def ensure_json(value: Any, path: str) -> None:
    """Raises 400 ``validation_failed`` naming the first value JSON cannot carry; the value itself is left as it is.

    The per-call check of local mode: a walk costs a tenth of a JSON round trip (0.4 against 4.8 µs for a one-key
    input), and the round trip would more than double the price of a warm local call.
    """
    found = first_non_json(value, path)
    if found:
        raise _error(*found)


def encode(value: Any, path: str) -> str:
    """JSON text of ``value`` (strict: no NaN or Infinity); raises 400 ``validation_failed`` naming the bad value."""
    try:
        return json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as e:
        raise _refused(value, path) from e


class _OutOfRange(ValueError):
    pass


def _int_in_range(text: str) -> int:
    number = int(text)
    if abs(number) > _DOUBLE_MAX:
        raise _OutOfRange(text)
    return number


def _refused(value: Any, path: str) -> PolicyGridApiError:
    # A whole body may nest one level more than a value inside one.
    return _error(*(first_non_json(value, path, BODY_MAX_DEPTH if path == "body" else VALUE_MAX_DEPTH)
                    or (path, "is not JSON-serializable")))


def _error(where: str, why: str) -> PolicyGridApiError:
    return PolicyGridApiError(400, "validation_failed", f"{where}: {why}", [{"path": where, "message": why}])


# A request body nests at most 32 levels of objects and arrays (the outermost counts); a value inside one (input_data,
# parameters, settings, a command's data) has the body's own level less. The server refuses deeper bodies with a 400.
BODY_MAX_DEPTH = 32
VALUE_MAX_DEPTH = BODY_MAX_DEPTH - 1


def first_non_json(value: Any, path: str, max_depth: int = VALUE_MAX_DEPTH) -> tuple[str, str] | None:
    """(path, reason) of the first value in ``value`` that JSON cannot carry to the server, or None: what it has no type
    for, NaN and infinity, an integer past a double's range, a lone surrogate, keys JSON cannot write or writes alike
    (1 and "1"), and nesting past ``max_depth`` levels (the server's limit, which also keeps this walk off Python's
    recursion limit)."""
    found = _first_problem(value, 1, max_depth)
    if found is None:
        return None
    trail, why = found
    where = path + "".join(reversed(trail))
    return (where if len(where) <= 200 else where[:200] + "…", why)


def _first_problem(value: Any, depth: int, max_depth: int) -> tuple[list, str] | None:
    """([path segments, innermost first], reason); the path is only built for a value that fails."""
    kind = type(value)
    if kind is str:
        if value.isascii():  # O(1): only text with non-ASCII characters can hold a surrogate
            return None
        bad = _lone_surrogate(value)
        return None if bad is None else ([], f"'{bad}' is a lone surrogate, which no JSON text can hold")
    if value is None or kind is bool:
        return None
    if isinstance(value, str):
        return _first_problem(str(value), depth, max_depth)
    if isinstance(value, int):
        return None if abs(value) <= _DOUBLE_MAX else ([], "integer is past a double's range (the server refuses it)")
    if isinstance(value, float):
        return None if math.isfinite(value) else ([], f"{value!r} is not a JSON number")
    if isinstance(value, (dict, list, tuple)) and depth > max_depth:
        return ([], f"nests deeper than {max_depth} levels of objects and arrays (the server refuses it)")
    if isinstance(value, dict):
        for key in value:
            if type(key) is not str or not key.isascii():
                why = _key_refused(value)
                if why:
                    return ([], why)
                break
        for key, item in value.items():
            found = _first_problem(item, depth + 1, max_depth)
            if found:
                found[0].append(f".{key}")
                return found
        return None
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            found = _first_problem(item, depth + 1, max_depth)
            if found:
                found[0].append(f"[{i}]")
                return found
        return None
    return ([], f"a value of type {type(value).__name__} is not JSON (use a list, dict, str, number, bool or None)")


def _key_refused(value: dict) -> str | None:
    """Why a key of ``value`` cannot reach the server as it is: JSON has no key for it, or writes it as it writes another
    key of the same object (the server refuses a key twice)."""
    written: dict = {}
    for key in value:
        if isinstance(key, str):
            bad = _lone_surrogate(key)
            if bad:
                return f"key '{bad}' is a lone surrogate, which no JSON text can hold"
            text = key
        elif isinstance(key, float) and not math.isfinite(key):
            return f"key {key!r} is not a JSON object key"
        elif key is None or isinstance(key, (bool, int, float)):
            try:
                text = json.dumps(key)
            except ValueError:  # an int key of too many digits
                return f"key {key!r:.40} ({type(key).__name__}) is not a JSON object key"
        else:
            return f"key {key!r} ({type(key).__name__}) is not a JSON object key"
        if text in written:
            return (f"keys {written[text]!r} and {key!r} are both written as the JSON key \"{text}\" (the server refuses a key "
                    "twice; use string keys)")
        written[text] = key
    return None


# What a policy answers goes the other way: the server writes it as JSON text (its worker host encodes with
# allow_nan=False and keeps text as text) and reads it back without a key twice and at most this deep.
ANSWER_MAX_DEPTH = 253  # the server's 256 levels of a worker reply, less the 3 of the reply around the answer

# Python refuses to write an int of more digits than sys.get_int_max_str_digits() (4300 by default, at least 640
# when set), so the server's worker answers such an int with its 422. Ints of fewer than 640 digits always write.
_ALWAYS_WRITTEN = 10 ** 639


def answer_problem(value: Any, where: str = "") -> str | None:
    """Why the server could not answer ``value`` (a policy's result, the context it left, a management answer), in the
    server's words (``Type: message``, as its 422 ``policy_error`` says them), or None when it could.

    A walk, not an encode and a strict parse: about a third of the cost of the encode alone, and a local call pays it
    on every answer. ``where`` is added to the message of a key twice ("in the context").
    """
    found = _unwritable(value, 1)
    if found is None:
        return None
    kind, detail = found
    if kind == "surrogate":
        return f"ValueError: policy returned text that is not Unicode: '{detail}' is a lone surrogate, which no JSON text can hold"
    if kind == "collision":
        return (f"ValueError: the policy answered a dict with a key twice once written as JSON (Duplicate property '{detail}'{where}): "
                "Python writes the keys 1, True and None as \"1\", \"true\" and \"null\", so a dict holding both 1 and \"1\" has no "
                "JSON form; use string keys")
    if kind == "depth":
        cycle = _cycle(value)
        if cycle is not None:
            return f"TypeError: policy returned a value that is not JSON: {cycle}"
        return (f"ValueError: the policy answered JSON nested too deep: an answer carries at most {ANSWER_MAX_DEPTH} levels of "
                "objects and arrays")
    return f"TypeError: policy returned a value that is not JSON: {detail}"


# The servers' worker host writes an answer with this encoder (policy_host.py: strict numbers, text kept as text).
_ANSWER_ENCODER = json.JSONEncoder(allow_nan=False, ensure_ascii=False, separators=(",", ":"))
_ANSWER_DECODER = json.JSONDecoder()


def answer_json(value: Any) -> str:
    """``value`` written as the servers' worker host writes an answer; call answer_problem first, which names in the
    server's words what this would refuse. Raises what the encoder raises for anything the walk did not foresee."""
    return _ANSWER_ENCODER.encode(value)


def as_answered(value: Any) -> Any:
    """``value`` as a server hands it back to the caller: written as its worker writes it and read back as the SDK reads
    an HTTP answer, so the caller gets new objects (a list the policy keeps is not the caller's to change), a list for a
    tuple and "7" for the key 7. raw_decode: the text is compact and whole, so json.loads's BOM and whitespace checks
    (three quarters of its cost for a small answer) have nothing to find."""
    return _ANSWER_DECODER.raw_decode(answer_json(value))[0]


def _cycle(value: Any) -> str | None:
    """The encoder's "Circular reference detected" for a value that holds itself, as the server's worker reports it (the
    walk, which stops at a depth, used to call it nested too deep), or None. Only on that failure path: an encode."""
    try:
        json.dumps(value)
    except ValueError as e:
        if "Circular reference" in str(e):
            return str(e)
    except Exception:  # noqa: BLE001 - another reason (depth: RecursionError, a set deeper down) is not a cycle
        pass
    return None


def described(value: Any) -> str:
    """A policy's answer that is no dict, in the server's words ("None", "a list")."""
    if value is None:
        return "None"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return f"a {str(value).lower()}"  # as the server names a JSON true or false
    if isinstance(value, (int, float)):
        return "a number"
    return "a dict"


def _lone_surrogate(text: str) -> str | None:
    if text.isascii():  # O(1): only text with non-ASCII characters can hold a surrogate
        return None
    try:
        text.encode("utf-8")
        return None
    except UnicodeEncodeError as e:
        return e.object[e.start:e.end].encode("unicode_escape").decode("ascii")


def _unwritable(value: Any, depth: int) -> tuple[str, str] | None:
    # Exact types first: this runs on every local answer, and most hold only dicts, lists, ASCII text, ints and bools.
    kind = type(value)
    if kind is dict or kind is list or kind is tuple:
        if depth > ANSWER_MAX_DEPTH:
            return ("depth", "")
        keys_to_check = False
        if kind is dict:
            for key in value:
                if type(key) is not str or not key.isascii():
                    keys_to_check = True
                    break
            if keys_to_check:
                found = _key_problem(value)
                if found:
                    return found
            items = value.values()
        else:
            items = value
        for item in items:
            kind = type(item)
            if kind is str:
                if item.isascii():
                    continue
            elif kind is bool or item is None or (kind is int and -_ALWAYS_WRITTEN < item < _ALWAYS_WRITTEN):
                continue
            found = _unwritable(item, depth + 1)
            if found:
                return found
        return None
    if isinstance(value, str):
        bad = _lone_surrogate(value)
        return ("surrogate", bad) if bad else None
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return _digits_problem(value)
    if isinstance(value, float):
        return None if math.isfinite(value) else ("json", "Out of range float values are not JSON compliant")
    if isinstance(value, dict):  # a subclass (OrderedDict): JSON writes it as a dict
        return _unwritable(dict(value), depth)
    if isinstance(value, (list, tuple)):
        return _unwritable(list(value), depth)
    return ("json", f"Object of type {type(value).__name__} is not JSON serializable")


def _digits_problem(value: int) -> tuple[str, str] | None:
    if -_ALWAYS_WRITTEN < value < _ALWAYS_WRITTEN:
        return None
    try:
        str(int(value))
    except ValueError as e:
        return ("json", str(e))
    return None


def _key_problem(value: dict) -> tuple[str, str] | None:
    """The first key of ``value`` JSON cannot write, or that it writes like another key (1 and "1")."""
    written = set()
    for key in value:
        if isinstance(key, str):
            bad = _lone_surrogate(key)
            if bad:
                return ("surrogate", bad)
            text = key
        elif isinstance(key, float) and not math.isfinite(key):
            return ("json", "Out of range float values are not JSON compliant")
        elif key is None or isinstance(key, (bool, int, float)):
            try:
                text = json.dumps(key)
            except ValueError as e:  # an int key of too many digits
                return ("json", str(e))
        else:
            return ("json", f"keys must be str, int, float, bool or None, not {type(key).__name__}")
        if text in written:
            return ("collision", text)
        written.add(text)
    return None
