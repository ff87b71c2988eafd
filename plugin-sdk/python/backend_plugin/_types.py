"""The plain Python types of a plugin: what authors declare and receive.

Nothing here imports gRPC or protobuf: a plugin's logic can be imported and
tested without them.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable, List, Mapping, Optional, Sequence, Tuple

# Parameter types; values always travel as canonical text.
BOOL = "bool"  # "true" or "false"
INT = "int"  # base-10 64-bit integer, optionally within min..max
STRING = "string"  # UTF-8 text without NUL bytes
ENUM = "enum"  # one of choices
DURATION = "duration"  # a non-negative Go duration such as "1h30m0s"
LIST = "list"  # a JSON array of strings
SECRET = "secret"  # text stored encrypted and never displayed

PARAM_TYPES = (BOOL, INT, STRING, ENUM, DURATION, LIST, SECRET)


@dataclass
class Analyser:
    """Decides which pubsub nodes the plugin handles.

    A node matches when its name starts with ``node_prefix``, or when the
    payload of its first item has the namespace ``payload_namespace`` (at
    least one of the two is required; the prefix is tested first). The
    daemon tries analysers by descending ``priority``, then by ``name``, and
    the first match wins.
    """

    name: str  # unique among all analysers of the daemon; lowercase
    type: str  # the human word stored with the node (e.g. "blog")
    node_prefix: str = ""
    payload_namespace: str = ""
    subtype: str = ""  # default subtype of matching nodes (match may refine it)
    to_sync: bool = False  # matching nodes are cached whole and kept fresh
    parser: str = ""  # the parser the daemon asks parse() to apply; "" = unparsed
    priority: int = 0  # higher first
    indexed_paths: List[str] = field(default_factory=list)  # dotted JSON paths
    match: bool = False  # the daemon calls Plugin.match for matching nodes


@dataclass
class Param:
    """A per-profile parameter, keyed ``category.name``."""

    category: str  # lowercase [a-z0-9_]+
    name: str  # lowercase [a-z0-9_]+
    type: str  # one of BOOL, INT, STRING, ENUM, DURATION, LIST, SECRET
    default: str = ""  # canonical text
    min: Optional[int] = None  # bounds of an INT parameter, inclusive
    max: Optional[int] = None
    choices: List[str] = field(default_factory=list)  # values of an ENUM
    help: str = ""  # one line for people
    needs_reconnect: bool = False  # a change applies on the next connection

    @property
    def key(self) -> str:
        return self.category + "." + self.name


@dataclass
class Item:
    """One pubsub item: its id, its publisher's JID ("" when the service did
    not tell) and the exact inner XML of <item> as the service sent it."""

    id: str
    publisher: str = ""
    payload: bytes = b""


@dataclass
class ParseRequest:
    """A batch of items of one node to parse."""

    profile: str = ""
    service: str = ""
    node: str = ""
    analyser: str = ""  # the analyser that matched the node
    parser: str = ""  # its parser
    items: List[Item] = field(default_factory=list)
    # The call's deadline (time.monotonic() value) and cancellation, set by
    # the SDK when the daemon calls; None in process.
    deadline: Optional[float] = field(default=None, repr=False, compare=False)
    _cancelled: Optional[Callable[[], bool]] = field(default=None, repr=False, compare=False)

    def time_remaining(self) -> Optional[float]:
        """Seconds left before the daemon gives up on this call (None: no
        deadline)."""
        if self.deadline is None:
            return None
        return self.deadline - time.monotonic()

    def cancelled(self) -> bool:
        """Whether the daemon gave up on this call (deadline passed, call
        cancelled, or the daemon went away): stop working on it."""
        if self._cancelled is not None and self._cancelled():
            return True
        return self.deadline is not None and time.monotonic() >= self.deadline


@dataclass
class ParseResult:
    """The outcome for one item.

    ``data`` is the parsed data: any value ``json.dumps`` turns into a JSON
    object (typically a dict), or ``bytes`` holding a JSON object.
    ``search_text`` is indexed for full-text search (without markup), in
    addition to the payload's own text. ``error`` (text or an exception),
    when set, says why the item could not be parsed; data is then ignored.
    """

    id: str = ""
    data: Any = None
    search_text: str = ""
    error: Any = None
    # data is JSON this SDK encoded itself (valid: only its kind is checked).
    _encoded: bool = field(default=False, repr=False, compare=False)


@dataclass
class MatchRequest:
    """Asks whether an analyser that set ``match`` applies to a node."""

    profile: str = ""
    service: str = ""
    node: str = ""
    analyser: str = ""
    first_item: Optional[Item] = None  # None when the node is empty


@dataclass
class MatchResult:
    """The answer to a MatchRequest; the default keeps the analyser with its
    declared subtype."""

    drop: bool = False  # the analyser does not apply to the node after all
    subtype: str = ""  # when set, replaces the analyser's subtype for the node


ParseFn = Callable[[ParseRequest], Sequence[ParseResult]]
MatchFn = Callable[[MatchRequest], MatchResult]
ConfigureFn = Callable[[str, Optional[Mapping[str, str]]], None]


@dataclass
class Plugin:
    """A plugin: its identity, what it provides, and its handlers.

    ``parse(request)`` returns one ParseResult per item, in the order of
    ``request.items``; raising fails the whole batch (the daemon keeps the
    items and retries later). ``parse_each`` builds it from a per-item
    function. ``match(request)`` refines the choice of an analyser that sets
    ``match``. ``configure(profile, values)`` receives every declared
    parameter's canonical value for a profile, at start and after each
    change; ``values`` is None when the profile was deleted. Calls to
    configure never overlap; parse and match may run concurrently in
    several threads.
    """

    name: str  # lowercase letters, digits, '-' and '_'
    version: str = ""
    analysers: List[Analyser] = field(default_factory=list)
    params: List[Param] = field(default_factory=list)
    parse: Optional[ParseFn] = None
    match: Optional[MatchFn] = None
    configure: Optional[ConfigureFn] = None

    def validate(self) -> None:
        """Raises ValueError naming the first problem of the declaration."""
        validate(self)


class Cancelled(Exception):
    """Raised by parse_each when the daemon gave up on the call."""


def parse_each(fn: Callable[[ParseRequest, Item], Any]) -> ParseFn:
    """Builds a batch parse function from a per-item one.

    ``fn(request, item)`` returns the parsed data (see ParseResult.data), or
    a ``(data, search_text)`` tuple; an exception fails that item only. The
    data is encoded to JSON here. The batch stops (Cancelled) once the
    daemon gave up on the call.
    """

    def parse(req: ParseRequest) -> List[ParseResult]:
        out = []
        for it in req.items:
            if req.cancelled():
                raise Cancelled("the daemon gave up on this call")
            out.append(_parse_one(fn, req, it))
        return out

    parse.__name__ = getattr(fn, "__name__", "parse")
    parse.__doc__ = fn.__doc__
    return parse


def _parse_one(fn, req: ParseRequest, it: Item) -> ParseResult:
    try:
        value = fn(req, it)
        text = ""
        if isinstance(value, tuple):
            value, text = value
        raw, encoded = to_json(value)
        return ParseResult(id=it.id, data=raw, search_text=text or "", _encoded=encoded)
    except Exception as e:  # a failure of this item only
        return ParseResult(id=it.id, error=e)


def to_json(data: Any) -> Tuple[bytes, bool]:
    """Returns data as JSON bytes, and whether this function encoded it
    (bytes are taken as JSON text, as is). Raises ValueError when the value
    has no JSON form (NaN included)."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data), False
    try:
        s = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ValueError("encode parsed data: %s" % e) from None
    return s.encode("utf-8"), True


def is_json_object(raw: bytes) -> bool:
    """Whether raw is one JSON object (UTF-8, nothing after it)."""
    try:
        return isinstance(json.loads(bytes(raw).decode("utf-8"), parse_constant=_no_constant), dict)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return False


def _no_constant(name):
    raise ValueError("%s is not JSON" % name)


def error_text(err: Any) -> str:
    """The message of a per-item error, never empty."""
    text = str(err) if err is not None else ""
    if not text and isinstance(err, BaseException):
        text = type(err).__name__
    return text or "parse failed"


_PLUGIN_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_IDENT = re.compile(r"^[a-z0-9_]+$")


def validate(p: Plugin) -> None:
    """The rules of the Go SDK's Plugin.Validate, with the same messages."""
    if not isinstance(p, Plugin):
        raise ValueError("not a backend_plugin.Plugin: %r" % (p,))
    if not isinstance(p.name, str) or not _PLUGIN_NAME.match(p.name):
        raise ValueError("plugin name %r: use lowercase letters, digits, '-' and '_'" % (p.name,))
    if not p.analysers:
        raise ValueError("plugin %s declares no analyser" % p.name)
    seen = set()
    for a in p.analysers:
        if not isinstance(a, Analyser):
            raise ValueError("plugin %s: %r is not an Analyser" % (p.name, a))
        if not a.name or a.name != a.name.strip().lower():
            raise ValueError("plugin %s: analyser name %r must be non-empty, lowercase, without surrounding spaces" % (p.name, a.name))
        if a.name in seen:
            raise ValueError("plugin %s: analyser %r declared twice" % (p.name, a.name))
        seen.add(a.name)
        if not a.type:
            raise ValueError("plugin %s: analyser %r has no type" % (p.name, a.name))
        if not a.node_prefix and not a.payload_namespace:
            raise ValueError("plugin %s: analyser %r needs a node prefix or a payload namespace" % (p.name, a.name))
        if a.parser and p.parse is None:
            raise ValueError("plugin %s: analyser %r names parser %r but the plugin has no parse" % (p.name, a.name, a.parser))
        if a.match and p.match is None:
            raise ValueError("plugin %s: analyser %r asks for match but the plugin has no match" % (p.name, a.name))
        if not -(2**31) <= a.priority < 2**31:
            raise ValueError("plugin %s: analyser %r: priority %d is not a 32-bit integer" % (p.name, a.name, a.priority))
    keys = set()
    for pr in p.params:
        if not isinstance(pr, Param):
            raise ValueError("plugin %s: %r is not a Param" % (p.name, pr))
        if not _IDENT.match(pr.category or "") or not _IDENT.match(pr.name or ""):
            raise ValueError("plugin %s: parameter %r: category and name must be lowercase [a-z0-9_]+" % (p.name, pr.key))
        if pr.key in keys:
            raise ValueError("plugin %s: parameter %r declared twice" % (p.name, pr.key))
        keys.add(pr.key)
        if pr.type not in PARAM_TYPES:
            raise ValueError("plugin %s: parameter %r has unknown type %r" % (p.name, pr.key, pr.type))
        if pr.type == ENUM and not pr.choices:
            raise ValueError("plugin %s: enum parameter %r has no choices" % (p.name, pr.key))
    for what in ("parse", "match", "configure"):
        fn = getattr(p, what)
        if fn is not None and not callable(fn):
            raise ValueError("plugin %s: %s is not callable" % (p.name, what))
