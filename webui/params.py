"""Query parameters and JSON fields, parsed in one place: anything malformed is an Invalid (HTTP
400) naming the field and saying what it must be, never a 500 from deep inside a route."""

from __future__ import annotations

import math

from flask import request

from appliance.errors import Invalid

LARGEST_ID = 2 ** 53  # ids, offsets: far above any real table, well inside the database's integers
KIND_NAMES = {str: "a string", int: "a whole number", float: "a number", bool: "true or false",
              list: "a list", dict: "an object"}


def query_int(name: str, default: int, *, low: int = 0, high: int = LARGEST_ID) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    value = None
    if len(raw) <= 20 and raw.lstrip("-").isdigit():
        value = int(raw)
    if value is None or not low <= value <= high:
        raise Invalid(f"'{name}' must be a whole number from {low} to {high}, got {raw[:40]!r}")
    return value


def query_float(name: str, default: float, *, low: float = 0.0, high: float) -> float:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw) if len(raw) <= 40 else math.nan
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or not low <= value <= high:  # nan fails every comparison
        raise Invalid(f"'{name}' must be a number from {low:g} to {high:g}, got {raw[:40]!r}")
    return value


def describe(kind) -> str:
    """`str` -> 'a string'; `(str, int)` -> 'a string or a whole number'."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(KIND_NAMES.get(k, k.__name__) for k in kinds)
