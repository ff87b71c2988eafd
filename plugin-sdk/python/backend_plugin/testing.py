"""Calls a plugin in process the way the daemon does, for plugin tests:
through the SDK's own request and answer conversions and checks, so a test
sees what the daemon would store (JSON bytes, or the item's error text)::

    from backend_plugin import Item, ParseRequest, testing
    res = testing.parse(PLUGIN, ParseRequest(profile="alice", items=[Item("1", payload=b"<greeting .../>")]))
    assert json.loads(res[0].data) == {...}

Needs python3-protobuf (not grpc). The real process, handshake included, is
tested by the daemon's side (see the SDK's Go tests).
"""

from __future__ import annotations

from typing import List, Mapping, Optional

from . import _types as t


class CallError(Exception):
    """The call failed as a whole; code is the gRPC status name the daemon
    would see (e.g. "UNKNOWN", "INTERNAL", "UNIMPLEMENTED")."""

    def __init__(self, code: str, message: str):
        super().__init__("%s: %s" % (code, message))
        self.code = code
        self.message = message


def describe(plugin: t.Plugin):
    """The Describe answer (a protobuf message: name, analysers, params…)."""
    from . import _convert
    t.validate(plugin)
    return _convert.describe_response(plugin)


def parse(plugin: t.Plugin, request: t.ParseRequest) -> List[t.ParseResult]:
    """Parses as the daemon would see it: one ParseResult per item with data
    the JSON bytes sent, or error the text sent; raises CallError when the
    batch fails as a whole."""
    from . import _convert
    t.validate(plugin)
    if plugin.parse is None:
        raise CallError("UNIMPLEMENTED", "plugin %s has no parse" % plugin.name)
    # Through the wire message, as the daemon sends it.
    wire = _convert.parse_request(_request_message(request))
    wire.deadline, wire._cancelled = request.deadline, request._cancelled
    try:
        results = plugin.parse(wire)
        resp = _convert.parse_response(plugin.name, wire.items, results)
    except _convert.HandlerError as e:
        raise CallError(e.code, str(e)) from None
    except t.Cancelled as e:
        raise CallError("CANCELLED", "parse: %s" % e) from None
    except Exception as e:
        raise CallError("UNKNOWN", "parse: %s" % t.error_text(e)) from e
    resp = type(resp).FromString(resp.SerializeToString())
    return [t.ParseResult(id=r.id, data=r.json if not r.error else None, search_text=r.search_text, error=r.error or None)
            for r in resp.results]


def match(plugin: t.Plugin, request: t.MatchRequest) -> t.MatchResult:
    """Calls match as the daemon would (None answers become the default)."""
    t.validate(plugin)
    if plugin.match is None:
        raise CallError("UNIMPLEMENTED", "plugin %s has no match" % plugin.name)
    res = plugin.match(request)
    if res is None:
        return t.MatchResult()
    if not isinstance(res, t.MatchResult):
        raise CallError("INTERNAL", "plugin %s: match returned a %s, not a MatchResult" % (plugin.name, type(res).__name__))
    return res


def configure(plugin: t.Plugin, profile: str, values: Optional[Mapping[str, str]]) -> None:
    """Calls configure as the daemon would (values None: profile deleted)."""
    t.validate(plugin)
    if plugin.configure is not None:
        plugin.configure(profile, None if values is None else dict(values))


def _request_message(r: t.ParseRequest):
    from ._proto import plugin_pb2 as pb
    m = pb.ParseRequest(profile=r.profile, service=r.service, node=r.node, analyser=r.analyser, parser=r.parser)
    for it in r.items:
        m.items.add(id=it.id, publisher=it.publisher, payload=it.payload)
    return pb.ParseRequest.FromString(m.SerializeToString())
