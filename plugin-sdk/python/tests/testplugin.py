#!/usr/bin/python3
"""The plugin the SDK's tests run as a real process (driven by the Go host,
and by the daemon in cmd/backend's tests), and the Atom parser of the
benchmark. Parsers:

- echo: JSON {"id","publisher","len","batch","pid","profile","prefix"};
  item ids "crash" (the process exits), "hang" (waits until the daemon
  gives up), "raise" (the item fails), "badjson", "nan", "stdout" (stray
  prints) and "batchfail" (the batch fails) misbehave on purpose.
- notes: <note xmlns="urn:test:pynotes">text</note> into {"text","pid",
  "prefix"}, sleeping pytest.delay_ms per item (so that a test can kill it
  in the middle of a batch).
- atom: Atom entries (XEP-0277 posts) into title, content, author, tags…
"""

import os
import sys
import threading
import time
import xml.etree.ElementTree as ET

from backend_plugin import (INT, STRING, Analyser, MatchResult, Param, ParseResult, Plugin, logger, parse_each,
                            serve)

_lock = threading.Lock()
_config = {}  # profile -> values (guarded by _lock)


def configure(profile, values):
    with _lock:
        if values is None:
            _config.pop(profile, None)
        else:
            _config[profile] = dict(values)
    logger.info("configured", extra={"profile": profile, "keys": sorted(values or ())})


def _values(profile):
    with _lock:
        return dict(_config.get(profile, {}))


def _echo(req, item):
    if item.id == "crash":
        os._exit(7)
    if item.id == "hang":
        while not req.cancelled():
            time.sleep(0.01)
        return {}
    if item.id == "raise":
        raise ValueError("item %s refused" % item.id)
    if item.id == "badjson":
        return b"[1]"
    if item.id == "nan":
        return {"x": float("nan")}
    if item.id == "stdout":
        print("stray line on stdout")
        print("stray line on stderr", file=sys.stderr)
    v = _values(req.profile)
    return ({"id": item.id, "publisher": item.publisher, "len": len(item.payload), "batch": len(req.items),
             "pid": os.getpid(), "profile": req.profile, "prefix": v.get("pytest.prefix", "")},
            "text " + item.id)


_echo_each = parse_each(_echo)

NOTE = "{urn:test:pynotes}note"


def _note(req, item):
    delay = int(_values(req.profile).get("pytest.delay_ms", "0") or 0)
    if delay:
        time.sleep(delay / 1000)
    n = ET.fromstring(item.payload)
    if n.tag != NOTE:
        raise ValueError("not a note: " + n.tag)
    text = "".join(n.itertext())
    return {"text": text, "pid": os.getpid(), "prefix": _values(req.profile).get("pytest.prefix", "")}, text


ATOM = "{http://www.w3.org/2005/Atom}"
XHTML_DIV = "{http://www.w3.org/1999/xhtml}div"


def atom(req, item):
    """An Atom entry's fields, as the microblog plugin extracts them."""
    e = ET.fromstring(item.payload)
    if e.tag != ATOM + "entry":
        raise ValueError("not an Atom entry: " + e.tag)
    out = {"tags": [], "links": []}
    for c in e:
        tag = c.tag[len(ATOM):] if c.tag.startswith(ATOM) else None
        if tag in ("title", "id", "published", "updated"):
            out[tag] = "".join(c.itertext()).strip()
        elif tag == "content":
            div = c.find(XHTML_DIV)
            out["content"] = "".join((div if div is not None else c).itertext()).strip()
            out["content_type"] = c.get("type", "text")
        elif tag == "author":
            out["author"] = {k: (c.findtext(ATOM + k) or "").strip() for k in ("name", "uri", "email")}
        elif tag == "category" and c.get("term"):
            out["tags"].append(c.get("term"))
        elif tag == "link":
            out["links"].append({"rel": c.get("rel", "alternate"), "href": c.get("href", ""), "title": c.get("title", "")})
    text = " ".join(x for x in (out.get("title", ""), out.get("content", "")) if x)
    return out, text


_atom_each = parse_each(atom)
_note_each = parse_each(_note)


def parse(req):
    if req.parser == "atom":
        return _atom_each(req)
    if req.parser == "notes":
        logger.info("parsing notes", extra={"items": len(req.items), "node": req.node})
        return _note_each(req)
    if any(it.id == "batchfail" for it in req.items):
        raise RuntimeError("this batch cannot be parsed")
    if any(it.id == "wrongid" for it in req.items):
        return [ParseResult(id="other")] * len(req.items)
    logger.debug("parsing batch", extra={"items": len(req.items), "parser": req.parser})
    return _echo_each(req)


def match(req):
    if req.node.endswith(":drop"):
        return MatchResult(drop=True)
    return MatchResult(subtype="first:" + req.first_item.id if req.first_item else "empty")


PLUGIN = Plugin(
    name="pytest",
    version="2.3.4",
    analysers=[
        Analyser(name="pytest-echo", type="test", node_prefix="urn:test:pyecho", parser="echo", priority=5),
        Analyser(name="pytest-notes", type="note", node_prefix="urn:test:pynotes", to_sync=True, parser="notes",
                 indexed_paths=["text"]),
        Analyser(name="pytest-match", type="test", subtype="plain", payload_namespace="urn:test:pymatch", match=True),
        Analyser(name="pytest-atom", type="blog", node_prefix="urn:test:pyatom", parser="atom"),
    ],
    params=[
        Param(category="pytest", name="prefix", type=STRING, help="a text copied into every parsed item"),
        Param(category="pytest", name="delay_ms", type=INT, default="0", min=0, max=60000,
              help="milliseconds the notes parser sleeps per item"),
    ],
    parse=parse,
    match=match,
    configure=configure,
)

if __name__ == "__main__":
    serve(PLUGIN)
