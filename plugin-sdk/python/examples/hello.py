#!/usr/bin/python3
"""Parses greetings: <greeting xmlns="urn:example:hello" to="…">text</greeting>."""
import xml.etree.ElementTree as ET

from backend_plugin import Analyser, Plugin, parse_each, serve


def greeting(req, item):
    g = ET.fromstring(item.payload)
    if g.tag != "{urn:example:hello}greeting":
        raise ValueError("not a greeting: " + g.tag)
    return {"to": g.get("to", ""), "text": g.text or ""}, g.text or ""


PLUGIN = Plugin(name="hello", version="1.0.0", parse=parse_each(greeting), analysers=[
    Analyser(name="hello", type="greeting", node_prefix="urn:example:hello", to_sync=True, parser="hello", indexed_paths=["to"])])

if __name__ == "__main__":
    serve(PLUGIN)
