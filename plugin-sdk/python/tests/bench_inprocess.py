"""The in-process side of the Python parse figure: the test plugin's Atom
parser (the plugin's parse function, JSON encoding included) called
directly on the Go benchmark's 100-item batch. Prints nanoseconds per call.
Usage: PYTHONPATH=plugin-sdk/python /usr/bin/python3 tests/bench_inprocess.py [CALLS] [BATCH]"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from backend_plugin import Item, ParseRequest  # noqa: E402
from testplugin import PLUGIN  # noqa: E402

ENTRY = ('<entry xmlns="http://www.w3.org/2005/Atom" xml:lang="en"><title>A post number %d</title>'
         '<content type="xhtml"><div xmlns="http://www.w3.org/1999/xhtml"><p>Some <b>rich</b> text with a <a href="https://example.org/">link</a>.</p></div></content>'
         '<id>urn:uuid:%d</id><published>2024-05-01T10:00:00Z</published><updated>2024-05-01T10:00:00Z</updated>'
         '<author><name>Romeo</name><uri>xmpp:romeo@montague.lit</uri></author><category term="go"/><category term="xmpp"/>'
         '<link rel="replies" title="comments" href="xmpp:pubsub.montague.lit?;node=urn%%3Axmpp%%3Amicroblog%%3A0%%3Acomments%%2F%d"/></entry>')


def main():
    calls = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    batch = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    req = ParseRequest(profile="p", node="urn:test:pyatom", analyser="pytest-atom", parser="atom",
                       items=[Item(str(i), "romeo@montague.lit", (ENTRY % (i, i, i)).encode()) for i in range(batch)])
    for _ in range(max(calls // 10, 1)):  # warm up
        PLUGIN.parse(req)
    begin = time.perf_counter_ns()
    for _ in range(calls):
        res = PLUGIN.parse(req)
    elapsed = time.perf_counter_ns() - begin
    if res[0].error is not None:
        raise SystemExit("parse failed: %s" % res[0].error)
    print(elapsed // calls)


if __name__ == "__main__":
    main()
