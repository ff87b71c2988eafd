"""The Python SDK for plugins of the backend daemon.

A plugin is a script that builds a Plugin and calls serve(); the daemon
starts it, shakes hands with it (hashicorp/go-plugin over gRPC, mutual TLS)
and calls its handlers with plain Python values. Authors never see gRPC or
protobuf::

    from backend_plugin import Analyser, Plugin, parse_each, serve

    def hello(req, item):
        return {"text": item.payload.decode()}

    serve(Plugin(name="hello", version="1.0.0", parse=parse_each(hello),
                 analysers=[Analyser(name="hello", type="greeting",
                                     node_prefix="urn:example:hello", parser="hello")]))

Importing this package imports neither grpc nor protobuf: a plugin's logic
can be tested in process without them (serve needs them).
"""

from ._log import TRACE, logger
from ._serve import COOKIE_KEY, COOKIE_VALUE, MAX_MESSAGE_SIZE, serve
from ._version import PROTOCOL_VERSION
from ._version import SDK_VERSION as __version__
from ._types import (BOOL, DURATION, ENUM, INT, LIST, SECRET, STRING, Analyser, Cancelled, Item,
                     MatchRequest, MatchResult, Param, ParseRequest, ParseResult, Plugin, parse_each)

__all__ = [
    "Analyser", "Param", "Plugin", "Item", "ParseRequest", "ParseResult", "MatchRequest", "MatchResult",
    "Cancelled", "parse_each", "serve", "logger", "TRACE",
    "BOOL", "INT", "STRING", "ENUM", "DURATION", "LIST", "SECRET",
    "PROTOCOL_VERSION", "MAX_MESSAGE_SIZE", "COOKIE_KEY", "COOKIE_VALUE", "__version__",
]
