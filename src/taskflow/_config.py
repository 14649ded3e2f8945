"""Reading typed values out of configuration and engine options: one rule for the whole package.

Configuration arrives as Python values or, from URI query strings and config files, as text
(``?deep_copy=false``). A boolean is a bool, a number (zero is false) or one of the words below,
in any case; anything else is an error naming the key, so that a misspelt ``"ture"`` is never
read as false.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, overload
from urllib import parse

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["TRUE_WORDS", "FALSE_WORDS", "as_bool", "as_float", "as_int", "to_bool", "uri_options"]

#: Words read as true (compared lower-cased and stripped), as oslo's ``bool_from_string``.
TRUE_WORDS = frozenset(("1", "t", "true", "on", "y", "yes"))
#: Words read as false; the empty string counts as unset, hence false.
FALSE_WORDS = frozenset(("0", "f", "false", "off", "n", "no", ""))


def to_bool(value: Any, key: str = "value") -> bool:
    """``value`` as a boolean by the package's one rule (see the module docstring).

    Raises:
        ValueError: a string that is neither a true nor a false word.
    """
    if isinstance(value, str):
        word = value.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
        raise ValueError(
            f"'{key}' must be a boolean (one of {sorted(TRUE_WORDS | FALSE_WORDS - {''})}),"
            f" not {value!r}"
        )
    return bool(value)


def as_bool(conf: Mapping[str, Any], key: str, default: bool) -> bool:
    """``conf[key]`` as a boolean, ``default`` when absent or None."""
    value = conf.get(key)
    return default if value is None else to_bool(value, key)


@overload
def as_int(conf: Mapping[str, Any], key: str, default: int) -> int: ...
@overload
def as_int(conf: Mapping[str, Any], key: str, default: None) -> int | None: ...
def as_int(conf: Mapping[str, Any], key: str, default: int | None) -> int | None:
    """``conf[key]`` as an integer, ``default`` when absent or None.

    Raises:
        ValueError: the value is not an integer (``"3"`` and ``3`` are; ``3.5`` and ``True``
            are not).
    """
    value = conf.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError(f"'{key}' must be an integer, not {value!r}")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError(f"'{key}' must be an integer, not {value!r}") from None


@overload
def as_float(conf: Mapping[str, Any], key: str, default: float) -> float: ...
@overload
def as_float(conf: Mapping[str, Any], key: str, default: None) -> float | None: ...
def as_float(conf: Mapping[str, Any], key: str, default: float | None) -> float | None:
    """``conf[key]`` as a number, ``default`` when absent or None.

    Raises:
        ValueError: the value is not a number.
    """
    value = conf.get(key)
    if value is None:
        return default
    if isinstance(value, bool):
        raise ValueError(f"'{key}' must be a number, not {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"'{key}' must be a number, not {value!r}") from None


def uri_options(uri: str) -> dict[str, Any]:
    """The options a backend or board URI carries besides its kind, as upstream TaskFlow
    merges them into the configuration: credentials, port, host (with its port, as
    upstream gives it) and the query (repeated keys: the last wins; keys without a value
    are dropped).

    Raises:
        ValueError: a non-numeric port.
    """
    parts = parse.urlsplit(uri)
    options: dict[str, Any] = {}
    if parts.username:
        options["username"] = parse.unquote(parts.username)
    if parts.password:
        options["password"] = parse.unquote(parts.password)
    port = parts.port
    if port is not None:
        options["port"] = port
    if parts.hostname:
        options["hostname"] = parts.hostname if port is None else f"{parts.hostname}:{port}"
    options.update(parse.parse_qsl(parts.query))
    return options
