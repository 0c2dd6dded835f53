"""Celery's task message protocol v2: the frozen TaskMessage and its wire form (pure layer)."""

from __future__ import annotations

import dataclasses
import os
import socket
import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kombu.serialization import registry

from djtasks.exceptions import (
    ContentDisallowed,
    ImproperlyConfigured,
    InvalidEta,
    MessageTooLarge,
    ProtocolError,
)

CONTENT_TYPE_JSON = "application/json"
CONTENT_TYPE_PICKLE = "application/x-python-serialize"
CONTENT_TYPE_YAML = "application/x-yaml"
CONTENT_TYPE_MSGPACK = "application/x-msgpack"

# Celery's argsrepr_maxsize/kwargsrepr_maxsize, so logs and the admin show what Celery shows.
REPR_MAXSIZE = 1024
#: The longest task id: what the result, parked-message and dead-letter tables hold. A
#: longer id could not be stored, so no result could ever say what became of the task.
MAX_ID_LENGTH = 255

# Every header key as_task_v2 writes; anything else on a message is a custom header.
PROTOCOL_HEADERS = frozenset({
    "lang", "task", "id", "shadow", "eta", "expires", "group", "group_index", "retries",
    "timelimit", "root_id", "parent_id", "argsrepr", "kwargsrepr", "origin", "ignore_result",
    "replaced_task_nesting", "stamped_headers", "stamps",
})

# kombu adds these itself and acts on them when decoding; carrying one over into a
# republished (say, retried) message would make the consumer decompress a plain body.
TRANSPORT_HEADERS = frozenset({"compression"})


@dataclass(frozen=True)
class TaskMessage:
    """One task message, as every layer above this module sees it."""

    id: str
    task: str
    args: tuple = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    eta: datetime | None = None
    expires: datetime | None = None
    retries: int = 0
    group: str | None = None
    group_index: int | None = None
    root_id: str | None = None
    parent_id: str | None = None
    shadow: str | None = None
    time_limit: float | None = None
    soft_time_limit: float | None = None
    argsrepr: str | None = None
    kwargsrepr: str | None = None
    origin: str | None = None
    # None is what Celery's send_task sends when the caller did not choose: the worker then
    # follows the task's own ignore_result option, so None must survive the trip.
    ignore_result: bool | None = False
    replaced_task_nesting: int = 0
    stamped_headers: list | None = None
    stamps: Mapping | None = None
    callbacks: list | None = None
    errbacks: list | None = None
    chain: list | None = None
    chord: Mapping | None = None
    reply_to: str = ""
    correlation_id: str | None = None
    headers: Mapping[str, Any] = field(default_factory=dict)
    priority: int | None = None

    def __post_init__(self) -> None:
        for name, what in (("id", "the task id"), ("task", "the task name")):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ProtocolError(f"expected {what} as a non-empty string, "
                                    f"got {_bounded_repr(value, 100)}")
        if len(self.id) > MAX_ID_LENGTH:
            raise ProtocolError(f"id: expected at most {MAX_ID_LENGTH} characters, got {len(self.id)}")
        if not isinstance(self.args, list | tuple):
            raise ProtocolError(f"expected task args as a list or tuple, "
                                f"got {type(self.args).__name__}")
        # JSON brings args back as a list; one type keeps equality and argsrepr stable.
        object.__setattr__(self, "args", tuple(self.args))
        if not isinstance(self.kwargs, Mapping):
            raise ProtocolError(f"expected task kwargs as a mapping, "
                                f"got {type(self.kwargs).__name__}")
        for name in ("eta", "expires"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, datetime) or value.utcoffset() is None):
                raise InvalidEta(f"expected {name} as a timezone-aware datetime, got {value!r}")
            if value is not None:
                _check_in_utc_range(name, value)
        clashing = sorted(PROTOCOL_HEADERS.intersection(self.headers))
        if clashing:
            raise ProtocolError(f"expected custom headers outside the protocol's keys, got "
                                f"{clashing}; set the TaskMessage fields instead")

    def replace(self, **changes: Any) -> TaskMessage:
        """Return a copy with ``changes`` applied, e.g. the next retry of this message."""
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class WireMessage:
    """What kombu publishes: ``producer.publish(body, headers=headers, **properties)``."""

    body: tuple
    headers: dict
    properties: dict


def new_task_id() -> str:
    """Return a new task id: a uuid4 string, as Celery makes them."""
    return str(uuid.uuid4())


def to_wire(message: TaskMessage) -> WireMessage:
    """Build the headers, properties and body that Celery's as_task_v2 builds."""
    args, kwargs = message.args, dict(message.kwargs)
    headers = {
        "lang": "py",
        "task": message.task,
        "id": message.id,
        "shadow": message.shadow,
        "eta": message.eta.isoformat() if message.eta is not None else None,
        "expires": message.expires.isoformat() if message.expires is not None else None,
        "group": message.group,
        "group_index": message.group_index,
        "retries": message.retries,
        "timelimit": [message.time_limit, message.soft_time_limit],
        "root_id": message.root_id or message.id,
        "parent_id": message.parent_id,
        "argsrepr": _bounded_repr(args) if message.argsrepr is None else message.argsrepr,
        "kwargsrepr": _bounded_repr(kwargs) if message.kwargsrepr is None else message.kwargsrepr,
        "origin": message.origin or _anon_nodename(),
        "ignore_result": message.ignore_result,
        "replaced_task_nesting": message.replaced_task_nesting,
        "stamped_headers": _copy(message.stamped_headers),
        "stamps": dict(message.stamps or {}),
    }
    headers.update(message.headers)  # __post_init__ guarantees no protocol key is overridden
    properties: dict[str, Any] = {
        "correlation_id": message.correlation_id or message.id,
        "reply_to": message.reply_to or "",
    }
    if message.priority is not None:  # kombu takes priority as a publish() property
        properties["priority"] = message.priority
    embed = {
        "callbacks": _copy(message.callbacks),
        "errbacks": _copy(message.errbacks),
        "chain": _copy(message.chain),
        "chord": _copy(message.chord),
    }
    return WireMessage(body=(args, kwargs, embed), headers=headers, properties=properties)


def from_wire(headers: Mapping | None, properties: Mapping | None, body: Any,
              delivery_info: Mapping | None = None) -> TaskMessage:
    """Parse a received message; ``body`` is the decoded payload (``message.decode()``)."""
    headers, properties, delivery_info = headers or {}, properties or {}, delivery_info or {}
    if isinstance(body, Mapping):
        raise ProtocolError("protocol v1 messages are not supported: expected the body "
                            "[args, kwargs, embed] with a 'task' header, got a mapping body")
    for key in ("task", "id"):
        if key not in headers:
            raise ProtocolError(f"expected a {key!r} header (Celery protocol v2), "
                                f"got headers {sorted(headers)}")
    if not isinstance(body, list | tuple) or len(body) != 3:
        raise ProtocolError(f"expected the body [args, kwargs, embed], "
                            f"got {_bounded_repr(body, 100)}")
    args, kwargs, embed = body
    if not isinstance(embed, Mapping):
        raise ProtocolError(f"expected the body's embed as a mapping, got {type(embed).__name__}")
    time_limit, soft_time_limit = _parse_timelimit(headers.get("timelimit"))
    retries = headers.get("retries") or 0
    if not isinstance(retries, int):
        raise ProtocolError(f"expected the retries header as an integer, got {retries!r}")
    priority = properties.get("priority")
    return TaskMessage(
        id=headers["id"], task=headers["task"], args=args, kwargs=kwargs,
        eta=_parse_datetime("eta", headers.get("eta")),
        expires=_parse_datetime("expires", headers.get("expires")),
        retries=retries,
        group=headers.get("group"), group_index=headers.get("group_index"),
        root_id=headers.get("root_id"), parent_id=headers.get("parent_id"),
        shadow=headers.get("shadow"),
        time_limit=time_limit, soft_time_limit=soft_time_limit,
        argsrepr=headers.get("argsrepr"), kwargsrepr=headers.get("kwargsrepr"),
        origin=headers.get("origin"),
        ignore_result=headers.get("ignore_result"),
        replaced_task_nesting=headers.get("replaced_task_nesting") or 0,
        stamped_headers=headers.get("stamped_headers"),
        stamps=headers.get("stamps") or None,  # Celery always sends a dict, empty when unused
        callbacks=embed.get("callbacks"), errbacks=embed.get("errbacks"),
        chain=embed.get("chain"), chord=embed.get("chord"),
        reply_to=properties.get("reply_to") or "",
        correlation_id=properties.get("correlation_id"),
        headers={key: value for key, value in headers.items()
                 if key not in PROTOCOL_HEADERS and key not in TRANSPORT_HEADERS},
        # AMQP carries priority as a property; some kombu transports only in delivery_info.
        priority=priority if priority is not None else delivery_info.get("priority"),
    )


def task_id_of(headers: Mapping | None, properties: Mapping | None) -> str | None:
    """Return the task id of a message, even of one too broken to parse (for failing it).

    None when the message names none, or only one too long to store a result under.
    """
    for source, key in ((headers, "id"), (properties, "correlation_id")):
        value = (source or {}).get(key)
        if isinstance(value, str) and 0 < len(value) <= MAX_ID_LENGTH:
            return value
    return None


@dataclass(frozen=True)
class Summary:
    """What a list of waiting messages shows of one, read from its headers alone."""

    id: str | None
    task: str | None
    eta: datetime | None
    expires: datetime | None


def summarize(headers: Mapping | None, properties: Mapping | None) -> Summary:
    """Return a message's task id, name, eta and expiry, without decoding its body.

    Never raises: a message that is not a task message (a remote-control one, a broken
    one) gives None for what it does not say, or says in a form that does not parse.
    """
    headers = headers if isinstance(headers, Mapping) else {}
    properties = properties if isinstance(properties, Mapping) else {}
    task = headers.get("task")
    when = {}
    for name in ("eta", "expires"):
        try:
            when[name] = _parse_datetime(name, headers.get(name))
        except ProtocolError:
            when[name] = None
    return Summary(id=task_id_of(headers, properties) if "task" in headers else None,
                   task=task if isinstance(task, str) and task else None, **when)


def due_time(headers: Mapping | None) -> datetime | None:
    """Return when a message with these headers should first be delivered; None: at once.

    That is its eta, or its expiry when that comes first (delivered then, it is marked
    expired rather than run). A header that does not parse counts as absent: the consumer
    rejects the message, with the reason, when it arrives.
    """
    headers = headers or {}
    try:
        eta = _parse_datetime("eta", headers.get("eta"))
        expires = _parse_datetime("expires", headers.get("expires"))
    except ProtocolError:
        return None
    if eta is None or expires is None:
        return eta
    return min(eta, expires)


def accepted_content_types(accept: Collection[str]) -> frozenset[str]:
    """Return the content types of ``accept``, which may hold serializer names or types."""
    types = set()
    for item in accept:
        if "/" in item:
            types.add(item)
        elif item in registry.name_to_type:
            types.add(registry.name_to_type[item])
        else:
            raise ImproperlyConfigured(
                f"expected a serializer name ({', '.join(sorted(registry.name_to_type))}) "
                f"or a content type in accept_content, got {item!r}")
    return frozenset(types)


def check_size(body: bytes | str, limit: int | None) -> None:
    """Raise MessageTooLarge when ``body`` is over ``limit`` bytes (task_max_message_size)."""
    if limit is not None and len(body) > limit:
        raise MessageTooLarge(f"the body is {len(body):,} bytes, over task_max_message_size "
                              f"{limit:,}")


def check_content_type(content_type: str, accept: Collection[str]) -> None:
    """Raise ContentDisallowed unless ``content_type`` is one that ``accept`` names."""
    if content_type not in accepted_content_types(accept):
        raise ContentDisallowed(f"content type {content_type!r} is not accepted "
                                f"(accept_content: {sorted(accept)})")


def _parse_datetime(name: str, value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):  # pickle and yaml bodies may carry real datetimes
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError as exc:
            raise InvalidEta(f"expected the {name} header as an ISO 8601 datetime, "
                                f"got {_bounded_repr(value, 100)}") from exc
    else:
        raise InvalidEta(f"expected the {name} header as an ISO 8601 string, "
                            f"got {type(value).__name__}")
    # A naive time from some other client: the project keeps every time in UTC.
    parsed = parsed if parsed.utcoffset() is not None else parsed.replace(tzinfo=UTC)
    _check_in_utc_range(name, parsed)
    return parsed


def _check_in_utc_range(name: str, value: datetime) -> None:
    # 9999-12-31T23:59:59-14:00 is a valid datetime, but past year 9999 once in UTC: no
    # database column (nor Python, converting it) holds it.
    try:
        value.astimezone(UTC)
    except OverflowError:
        raise InvalidEta(f"{name}: expected a datetime before year 10000 in UTC, "
                            f"got {value.isoformat()}") from None


def _parse_timelimit(value: Any) -> tuple[Any, Any]:
    if value is None:
        return None, None
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise ProtocolError(f"expected the timelimit header as [hard, soft], got {value!r}")
    return value[0], value[1]


def _bounded_repr(value: Any, maxsize: int = REPR_MAXSIZE) -> str:
    # The body already carries the full arguments, so a full repr costs the same order as
    # serializing them; what must stay bounded is the header. Celery's saferepr cuts
    # inside long strings instead, so long values differ in where the "..." falls.
    try:
        text = repr(value)
    except Exception as exc:  # a user's broken __repr__ must not stop the publish
        text = f"<unrepresentable {type(value).__name__}: {exc!r}>"
    return text if len(text) <= maxsize else text[: maxsize - 3] + "..."


def _anon_nodename() -> str:
    # Celery's anon_nodename(): "gen<pid>@<host>"; the pid is read per call since
    # prefork children publish too.
    return f"gen{os.getpid()}@{socket.gethostname()}"


def _copy(value: Any) -> Any:
    # Fresh containers on the wire, so whoever publishes may mutate them safely.
    if isinstance(value, Mapping):
        return dict(value)
    return list(value) if value is not None else None
