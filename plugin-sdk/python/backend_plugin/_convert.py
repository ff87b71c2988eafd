"""The conversions between the wire messages and the plain types, and the
checks of the author's answers. Needs protobuf, not gRPC."""

from __future__ import annotations

from typing import List

from . import _types as t
from ._proto import plugin_pb2 as pb
from ._version import PROTOCOL_VERSION, SDK_VERSION

# Parameter types on the wire.
_PARAM_TYPES = {
    t.BOOL: pb.PARAM_TYPE_BOOL,
    t.INT: pb.PARAM_TYPE_INT,
    t.STRING: pb.PARAM_TYPE_STRING,
    t.ENUM: pb.PARAM_TYPE_ENUM,
    t.DURATION: pb.PARAM_TYPE_DURATION,
    t.LIST: pb.PARAM_TYPE_LIST,
    t.SECRET: pb.PARAM_TYPE_SECRET,
}

_NOT_OBJECT = "parser returned something that is not a JSON object"


def describe_response(p: t.Plugin) -> pb.DescribeResponse:
    resp = pb.DescribeResponse(name=p.name, version=p.version, protocol_version=PROTOCOL_VERSION, sdk_version=SDK_VERSION)
    for a in p.analysers:
        resp.analysers.add(
            name=a.name, type=a.type, subtype=a.subtype, node_prefix=a.node_prefix,
            payload_namespace=a.payload_namespace, to_sync=a.to_sync, parser=a.parser,
            priority=a.priority, indexed_paths=list(a.indexed_paths), has_match=a.match)
    for pr in p.params:
        m = resp.params.add(
            category=pr.category, name=pr.name, type=_PARAM_TYPES[pr.type], default_value=pr.default,
            choices=list(pr.choices), help=pr.help, needs_reconnect=pr.needs_reconnect)
        if pr.min is not None:
            m.min = pr.min
        if pr.max is not None:
            m.max = pr.max
    return resp


def parse_request(req: pb.ParseRequest) -> t.ParseRequest:
    return t.ParseRequest(
        profile=req.profile, service=req.service, node=req.node, analyser=req.analyser, parser=req.parser,
        items=[t.Item(id=it.id, publisher=it.publisher, payload=it.payload) for it in req.items])


class HandlerError(Exception):
    """A call the SDK refuses with a gRPC status: code is its name
    ("INTERNAL", …)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def parse_response(name: str, items: List[t.Item], results) -> pb.ParseResponse:
    """Checks the author's results and turns them into the wire answer;
    a per-item problem becomes that item's error."""
    try:
        results = list(results)
    except TypeError:
        raise HandlerError("INTERNAL", "plugin %s: parse returned %r, not a list of ParseResult" % (name, type(results).__name__)) from None
    if len(results) != len(items):
        raise HandlerError("INTERNAL", "plugin %s: parse returned %d results for %d items" % (name, len(results), len(items)))
    out = pb.ParseResponse()
    for i, r in enumerate(results):
        if not isinstance(r, t.ParseResult):
            raise HandlerError("INTERNAL", "plugin %s: parse result %d is a %s, not a ParseResult" % (name, i, type(r).__name__))
        item_id = items[i].id
        if r.id and r.id != item_id:
            raise HandlerError("INTERNAL", "plugin %s: parse result %d has id %r, want %r (results must follow the order of the items)" % (name, i, r.id, item_id))
        res = out.results.add(id=item_id)
        if r.error is not None:
            res.error = t.error_text(r.error)
            continue
        try:
            if r._encoded:
                raw, ok = r.data, r.data[:1] == b"{"
            else:
                raw, encoded = t.to_json(r.data)
                ok = raw[:1] == b"{" if encoded else t.is_json_object(raw)
            if not ok:
                res.error = _NOT_OBJECT
                continue
            res.json = raw
            res.search_text = r.search_text or ""
        except (ValueError, TypeError) as e:  # no JSON form, text not UTF-8
            res.ClearField("json")
            res.error = t.error_text(e)
    return out
