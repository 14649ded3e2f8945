"""The messages engines and workers exchange: upstream TaskFlow 6.5's, checked on arrival.

Every message is JSON (``application/json``, UTF-8) with a ``type`` property:

* ``NOTIFY`` from an engine to a topic, body ``{}``, ``reply_to`` the engine's reply key:
  "who is there?" (it reaches one worker of the topic, which share the topic's queue; ours
  also listen to :data:`DISCOVERY_PREFIX` + topic, which ours send to as well, and so all
  answer). A worker answers to that key with a ``NOTIFY`` whose body is exactly
  ``{"topic": ..., "tasks": ["module.Class", ...]}`` (upstream's engines refuse any other
  key). Ours also announce themselves that way, unprompted, to :data:`ANNOUNCE_KEY` when
  they start and every heartbeat after (ours bind their reply queue to that key; upstream's
  do not, so they never see it).
* ``REQUEST`` from an engine to a worker, ``reply_to`` and ``correlation_id`` set, body
  ``{"task_cls", "task_name", "task_version", "action": "execute"|"revert", "arguments"}``
  and, to revert, ``"result": ["success", value] | ["failure", failure]`` and
  ``"failures": {atom name: failure}`` (failures as :meth:`Failure.to_dict` writes them).
* ``RESPONSE`` from the worker to ``reply_to``, same ``correlation_id``, body exactly
  ``{"state", "data"}``: ``RUNNING`` ``{}`` when the task starts, ``EVENT``
  ``{"event_type", "details"}`` for each event of the task's notifier (progress included),
  then ``SUCCESS`` ``{"result": value}`` or ``FAILURE`` ``{"result": failure}``.

What we add stays invisible to upstream: headers (which it ignores) name the worker
(:data:`WORKER_HEADER`, its identity, also the routing key of a queue of its own) and its
thread count (:data:`THREADS_HEADER`), and a worker repeats ``RUNNING`` every heartbeat
while the task runs (upstream's engines accept a repeated ``RUNNING`` and change nothing).

Values are encoded as kombu's JSON serializer encodes them, as upstream's are: tuples
become lists, and bytes, datetimes, decimals and UUIDs travel as ``{"__type__", "__value__"}``
objects. Anything else is refused when encoded (a task whose result can not travel fails
with a clear error instead of leaving the engine waiting).

Checks (:func:`decode`; :func:`load` and :func:`validate` for a body alone): the type is
known, the content type is JSON (nothing else is ever deserialized, so a pickle is only a
rejected message), the body fits the size limit, is UTF-8 and parses, and matches its JSON
schema (:func:`schema`). A message that fails is rejected with a :class:`Rejected` saying
why; callers log it (with :func:`preview`, never the whole body).
"""

from __future__ import annotations

import copy
import json
from typing import TYPE_CHECKING, Any

from kombu.utils import json as kombu_json

from taskflow import exceptions as exc
from taskflow.types.failure import Failure

if TYPE_CHECKING:
    from taskflow._workers.transport import Received

__all__ = [
    "ANNOUNCE_KEY",
    "DISCOVERY_PREFIX",
    "EVENT",
    "EXECUTE",
    "FAILURE",
    "MAX_MESSAGE_BYTES",
    "NOTIFY",
    "PENDING",
    "REQUEST",
    "RESPONSE",
    "REVERT",
    "RUNNING",
    "SUCCESS",
    "THREADS_HEADER",
    "WAITING",
    "WORKER_HEADER",
    "Rejected",
    "clip",
    "decode",
    "encode",
    "failure_from_dict",
    "failure_to_dict",
    "load",
    "preview",
    "schema",
    "validate",
]

NOTIFY = "NOTIFY"
REQUEST = "REQUEST"
RESPONSE = "RESPONSE"
TYPES = (NOTIFY, REQUEST, RESPONSE)

#: Request states (the engine's view of one request): waiting for a capable worker, sent,
#: started, and how it ended; ``EVENT`` is the response state of a task event.
WAITING = "WAITING"
PENDING = "PENDING"
RUNNING = "RUNNING"
SUCCESS = "SUCCESS"
FAILURE = "FAILURE"
EVENT = "EVENT"

EXECUTE = "execute"
REVERT = "revert"

#: The routing key ours announce themselves to (module docstring).
ANNOUNCE_KEY = "taskflow.worker-announcements"
#: Discovery sent to ``<topic>`` reaches one worker of the topic (they share its queue):
#: ours also listen to ``DISCOVERY_PREFIX + topic``, where every one of them hears it.
DISCOVERY_PREFIX = "taskflow.discover."
#: Headers of ours: the worker's identity (and private routing key), its thread count.
WORKER_HEADER = "taskflow-worker"
THREADS_HEADER = "taskflow-threads"

#: The largest message body accepted by default (bytes).
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
#: How much of a rejected body a log message shows.
PREVIEW_BYTES = 200

_FAILURE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["exception_str", "exc_type_names", "version"],
    "properties": {
        "exception_str": {"type": "string"},
        "traceback_str": {"type": ["string", "null"]},
        "exc_type_names": {"type": "array", "minItems": 1, "items": {"type": "string"}},
        "version": {"const": Failure.DICT_VERSION},
        "exc_args": {"type": "array"},
        "causes": {"type": "array", "items": {"$ref": "#/$defs/failure"}},
    },
}

_REQUEST_SCHEMA: dict[str, Any] = {
    "$defs": {"failure": _FAILURE_SCHEMA},
    "type": "object",
    "required": ["task_cls", "task_name", "task_version", "action", "arguments"],
    "properties": {
        "task_cls": {"type": "string", "minLength": 1},
        "task_name": {"type": "string", "minLength": 1},
        "task_version": {
            "oneOf": [
                {"type": "string"},
                {"type": "array", "items": {"type": "integer"}},
            ]
        },
        "action": {"enum": [EXECUTE, REVERT]},
        "arguments": {"type": "object"},
        # ``["success", what execute returned]`` or ``["failure", the failure it raised]``.
        "result": {
            "type": "array",
            "minItems": 2,
            "maxItems": 2,
            "prefixItems": [{"enum": ["success", "failure"]}, {}],
            "if": {"prefixItems": [{"const": "failure"}]},
            "then": {"prefixItems": [{}, {"$ref": "#/$defs/failure"}]},
        },
        "failures": {"type": "object", "additionalProperties": {"$ref": "#/$defs/failure"}},
    },
    # Reverting needs what execute returned and what failed (else its call could not be made).
    "if": {"properties": {"action": {"const": REVERT}}},
    "then": {"required": ["result", "failures"]},
}

_RESPONSE_SCHEMA: dict[str, Any] = {
    "$defs": {"failure": _FAILURE_SCHEMA},
    "type": "object",
    "required": ["state", "data"],
    "properties": {
        "state": {"enum": [RUNNING, EVENT, SUCCESS, FAILURE]},
        "data": {"type": "object"},
    },
    "allOf": [
        {
            "if": {"properties": {"state": {"const": EVENT}}},
            "then": {
                "properties": {
                    "data": {
                        "required": ["event_type", "details"],
                        "properties": {
                            "event_type": {"type": "string"},
                            "details": {"type": "object"},
                        },
                    }
                }
            },
        },
        {
            "if": {"properties": {"state": {"const": SUCCESS}}},
            "then": {"properties": {"data": {"required": ["result"]}}},
        },
        {
            "if": {"properties": {"state": {"const": FAILURE}}},
            "then": {
                "properties": {
                    "data": {
                        "required": ["result"],
                        "properties": {"result": {"$ref": "#/$defs/failure"}},
                    }
                }
            },
        },
    ],
}

_NOTIFY_REPLY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["topic", "tasks"],
    "properties": {
        "topic": {"type": "string", "minLength": 1},
        "tasks": {"type": "array", "items": {"type": "string"}},
    },
}

_NOTIFY_ASK_SCHEMA: dict[str, Any] = {"type": "object"}

#: The schemas by name (:func:`_validator`).
_SCHEMAS: dict[str, dict[str, Any]] = {
    "request": _REQUEST_SCHEMA,
    "response": _RESPONSE_SCHEMA,
    "notify-reply": _NOTIFY_REPLY_SCHEMA,
    "notify-ask": _NOTIFY_ASK_SCHEMA,
}

#: The schema a body is checked against, by (message type, the side receiving it).
_SCHEMA_NAMES = {
    (NOTIFY, "worker"): "notify-ask",
    (NOTIFY, "engine"): "notify-reply",
    (REQUEST, "worker"): "request",
    (RESPONSE, "engine"): "response",
}

_validators: dict[str, Any] = {}


def _validator(name: str) -> Any:
    """The compiled validator of schema ``name`` (built on first use: jsonschema is slow
    to import and to compile)."""
    validator = _validators.get(name)
    if validator is None:
        import jsonschema

        validator = jsonschema.Draft202012Validator(_SCHEMAS[name])
        _validators[name] = validator
    return validator


class Rejected(exc.InvalidFormat):
    """A message that is not a valid message of the protocol (the text says why)."""


def clip(text: str, limit: int = PREVIEW_BYTES) -> str:
    """``text`` cut to about ``limit`` characters for a log line or an error: its start
    and its end (where jsonschema says what is wrong with the value it shows first)."""
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}...({len(text)} characters)...{text[-half:]}"


def _repr(value: Any) -> str:
    try:
        return repr(value)
    except Exception:  # e.g. nested too deep
        return f"<{type(value).__name__}>"


def preview(body: bytes | str, limit: int = PREVIEW_BYTES) -> str:
    """The start of ``body`` for a log line (its size said when it is cut)."""
    raw = body.encode("utf-8", "replace") if isinstance(body, str) else body
    if len(raw) <= limit:
        return repr(raw)
    return f"{raw[:limit]!r}... ({len(raw)} bytes)"


def encode(body: Any) -> bytes:
    """JSON bytes of ``body`` as kombu's serializer writes them (module docstring).

    Raises:
        TypeError: a value that can not travel (named).
    """
    try:
        return str(kombu_json.dumps(body)).encode("utf-8")
    except (TypeError, ValueError) as err:
        raise TypeError(f"Value can not be sent to a worker as JSON: {err}") from err
    except RecursionError as err:
        raise TypeError("Value nests too deep to be sent to a worker as JSON") from err


def decode(
    received: Received, role: str, limit: int = MAX_MESSAGE_BYTES
) -> tuple[str, dict[str, Any]]:
    """(type, body) of a message, checked for the side that got it (``role``: ``"worker"``
    gets requests and discovery, ``"engine"`` gets responses and discovery answers).

    Raises:
        Rejected: why the message is not one this side can act on.
    """
    # Every text put in a Rejected is cut (:func:`clip`): what a message says may be huge,
    # and it ends up in logs and in the failure a request is answered with.
    kind = received.type
    expected = (NOTIFY, REQUEST) if role == "worker" else (NOTIFY, RESPONSE)
    if not isinstance(kind, str) or kind not in expected:
        raise Rejected(
            f"unexpected message type {clip(_repr(kind))} (a {role} takes {', '.join(expected)})"
        )
    data = load(received, limit)
    validate(kind, role, data)
    return kind, data


def load(received: Received, limit: int = MAX_MESSAGE_BYTES) -> Any:
    """The decoded JSON body of a message (not checked against any schema).

    Raises:
        Rejected: it is not JSON, not UTF-8, or larger than ``limit`` bytes.
    """
    content_type = received.content_type
    if content_type != "application/json":
        raise Rejected(f"content type {clip(_repr(content_type))} is not application/json")
    body = received.body
    if len(body) > limit:
        raise Rejected(f"{len(body)} bytes, more than the limit of {limit}")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as err:
        raise Rejected(f"the body is not UTF-8 ({err.reason} at byte {err.start})") from None
    try:
        return kombu_json.loads(text)
    except RecursionError:
        raise Rejected("the JSON nests too deep") from None
    except Exception as err:
        # Not JSON, or a typed value (``{"__type__", "__value__"}``) kombu's decoders fail
        # on, with whatever they raise (AttributeError, decimal.InvalidOperation...).
        raise Rejected(f"the body is not JSON ({clip(f'{type(err).__name__}: {err}')})") from None


def schema(kind: str, role: str) -> dict[str, Any]:
    """A copy of the JSON schema :func:`decode` checks the body of a ``kind`` message
    arriving at ``role`` (``"worker"`` or ``"engine"``) against.

    Raises:
        ValueError: ``role`` never gets messages of type ``kind``.
    """
    return copy.deepcopy(_SCHEMAS[_schema_name(kind, role)])


def validate(kind: str, role: str, data: Any) -> None:
    """Check ``data`` (a decoded body) as :func:`decode` checks the body of a ``kind``
    message arriving at ``role``.

    Raises:
        Rejected: ``data`` does not match the schema (the text says where and why).
        ValueError: ``role`` never gets messages of type ``kind``.
    """
    validator = _validator(_schema_name(kind, role))
    try:
        error = next(iter(validator.iter_errors(data)), None)
    except RecursionError:
        raise Rejected("the JSON nests too deep") from None
    if error is not None:
        where = "/".join(str(part) for part in error.absolute_path) or "the body"
        raise Rejected(f"{kind} does not match its schema at {clip(where)}: {clip(error.message)}")


def _schema_name(kind: str, role: str) -> str:
    try:
        return _SCHEMA_NAMES[kind, role]
    except (KeyError, TypeError):
        raise ValueError(f"a {role!r} never gets {kind!r} messages") from None


def failure_to_dict(failure: Failure) -> dict[str, Any]:
    """``failure`` as it travels: with its exception's arguments when they can (JSON)."""
    data = failure.to_dict()
    try:
        kombu_json.dumps(data)
    except (TypeError, ValueError, RecursionError):
        data = failure.to_dict(include_args=False)
    return data


def failure_from_dict(data: dict[str, Any]) -> Failure:
    """The Failure a message carries (checked by the schema already)."""
    return Failure.from_dict(data)


def dumps_for_log(data: Any) -> str:
    """``data`` as compact JSON for a debug line (never raises)."""
    try:
        return json.dumps(data, default=repr)[:PREVIEW_BYTES]
    except Exception:
        return repr(data)[:PREVIEW_BYTES]
