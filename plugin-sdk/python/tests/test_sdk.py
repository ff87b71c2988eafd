"""Unit tests of the Python SDK, in process (the Go tests beside this
directory run the real processes). Run: PYTHONPATH=. /usr/bin/python3 -m
unittest discover -s tests"""

import base64
import importlib.util
import io
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import threading
import unittest
import zipfile

from backend_plugin import (BOOL, ENUM, INT, Analyser, Cancelled, Item, MatchRequest, MatchResult, Param, ParseRequest,
                            ParseResult, Plugin, parse_each, testing)
from backend_plugin import _log, _types

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def plugin(**kw):
    base = dict(name="p", analysers=[Analyser(name="a", type="t", node_prefix="urn:a", parser="x")],
                parse=parse_each(lambda req, it: {"id": it.id}))
    base.update(kw)
    return Plugin(**base)


class ValidateTest(unittest.TestCase):
    def refused(self, p, msg):
        with self.assertRaises(ValueError) as cm:
            p.validate()
        self.assertEqual(str(cm.exception), msg)

    def test_rules(self):
        plugin().validate()
        self.refused(plugin(name="Bad"), "plugin name 'Bad': use lowercase letters, digits, '-' and '_'")
        self.refused(plugin(analysers=[]), "plugin p declares no analyser")
        self.refused(plugin(analysers=[Analyser(name="A", type="t", node_prefix="x")]),
                     "plugin p: analyser name 'A' must be non-empty, lowercase, without surrounding spaces")
        a = Analyser(name="a", type="t", node_prefix="x")
        self.refused(plugin(analysers=[a, a]), "plugin p: analyser 'a' declared twice")
        self.refused(plugin(analysers=[Analyser(name="a", type="", node_prefix="x")]), "plugin p: analyser 'a' has no type")
        self.refused(plugin(analysers=[Analyser(name="a", type="t")]), "plugin p: analyser 'a' needs a node prefix or a payload namespace")
        self.refused(plugin(parse=None), "plugin p: analyser 'a' names parser 'x' but the plugin has no parse")
        self.refused(plugin(analysers=[Analyser(name="a", type="t", node_prefix="x", match=True)]),
                     "plugin p: analyser 'a' asks for match but the plugin has no match")
        self.refused(plugin(params=[Param(category="C", name="n", type=BOOL)]),
                     "plugin p: parameter 'C.n': category and name must be lowercase [a-z0-9_]+")
        self.refused(plugin(params=[Param(category="c", name="n", type=BOOL)] * 2), "plugin p: parameter 'c.n' declared twice")
        self.refused(plugin(params=[Param(category="c", name="n", type="float")]), "plugin p: parameter 'c.n' has unknown type 'float'")
        self.refused(plugin(params=[Param(category="c", name="n", type=ENUM)]), "plugin p: enum parameter 'c.n' has no choices")
        self.refused(plugin(parse="nope"), "plugin p: parse is not callable")


class ParseTest(unittest.TestCase):
    def test_as_the_daemon_sees_it(self):
        def fn(req, it):
            if it.id == "raise":
                raise KeyError("k")
            if it.id == "empty":
                raise RuntimeError()
            if it.id == "list":
                return [1]
            if it.id == "raw":
                return b'{"raw":true}'
            if it.id == "rawbad":
                return b'{"a":NaN}'
            if it.id == "utf16":
                return '{"a":1}'.encode("utf-16")
            if it.id == "surrogate":
                return {"a": 1}, "\ud800"
            if it.id == "set":
                return {"s": {1}}
            return {"id": it.id, "pub": it.publisher, "n": len(it.payload), "text": "é<b>"}, "text " + it.id

        p = plugin(parse=parse_each(fn))
        ids = ["ok", "raise", "empty", "list", "raw", "rawbad", "utf16", "surrogate", "set"]
        res = testing.parse(p, ParseRequest(profile="alice", items=[Item(i, "r@x", b"<p/>") for i in ids]))
        got = {r.id: (r.data, r.search_text, r.error) for r in res}
        self.assertEqual([r.id for r in res], ids)
        self.assertEqual(got["ok"], ('{"id":"ok","pub":"r@x","n":4,"text":"é<b>"}'.encode(), "text ok", None))
        self.assertEqual(got["raise"], (None, "", "'k'"))
        self.assertEqual(got["empty"], (None, "", "RuntimeError"))
        self.assertEqual(got["list"][2], "parser returned something that is not a JSON object")
        self.assertEqual(got["raw"], (b'{"raw":true}', "", None))
        self.assertEqual(got["rawbad"][2], "parser returned something that is not a JSON object")
        self.assertEqual(got["utf16"][2], "parser returned something that is not a JSON object")
        self.assertIsNotNone(got["surrogate"][2])
        self.assertEqual(got["set"][2], "encode parsed data: Object of type set is not JSON serializable")

    def test_batch_failures(self):
        def boom(req):
            raise OSError("disk on fire")

        with self.assertRaises(testing.CallError) as cm:
            testing.parse(plugin(parse=boom), ParseRequest(items=[Item("1")]))
        self.assertEqual((cm.exception.code, cm.exception.message), ("UNKNOWN", "parse: disk on fire"))
        with self.assertRaises(testing.CallError) as cm:
            testing.parse(plugin(parse=lambda req: []), ParseRequest(items=[Item("1")]))
        self.assertEqual(cm.exception.message, "plugin p: parse returned 0 results for 1 items")
        with self.assertRaises(testing.CallError) as cm:
            testing.parse(plugin(parse=lambda req: [ParseResult(id="2", data={})]), ParseRequest(items=[Item("1")]))
        self.assertIn("results must follow the order of the items", cm.exception.message)
        with self.assertRaises(testing.CallError) as cm:
            testing.parse(plugin(parse=lambda req: [{"a": 1}]), ParseRequest(items=[Item("1")]))
        self.assertEqual(cm.exception.message, "plugin p: parse result 0 is a dict, not a ParseResult")
        # A batch function may leave ids out and give unencoded data.
        res = testing.parse(plugin(parse=lambda req: [ParseResult(data={"n": i}) for i, _ in enumerate(req.items)]),
                            ParseRequest(items=[Item("1"), Item("2")]))
        self.assertEqual([(r.id, r.data) for r in res], [("1", b'{"n":0}'), ("2", b'{"n":1}')])

    def test_cancelled(self):
        calls = []

        def fn(req, it):
            calls.append(it.id)
            return {}

        req = ParseRequest(items=[Item("1"), Item("2")], _cancelled=lambda: bool(calls))
        with self.assertRaises(Cancelled):
            parse_each(fn)(req)
        self.assertEqual(calls, ["1"])
        self.assertIsNone(ParseRequest().time_remaining())
        self.assertTrue(ParseRequest(deadline=0).cancelled())

    def test_example(self):
        hello = load(os.path.join(ROOT, "examples", "hello.py"), "hello")
        res = testing.parse(hello.PLUGIN, ParseRequest(items=[
            Item("1", payload=b'<greeting xmlns="urn:example:hello" to="world">hi</greeting>'),
            Item("2", payload=b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
                              b'<greeting xmlns="urn:example:hello">&e;</greeting>')]))
        self.assertEqual(json.loads(res[0].data), {"to": "world", "text": "hi"})
        self.assertEqual(res[0].search_text, "hi")
        self.assertIsNotNone(res[1].error)  # external entities are never read
        self.assertNotIn("root", res[1].error)

    def test_describe_match_configure(self):
        p = plugin(params=[Param(category="c", name="n", type=INT, default="3", min=0),
                           Param(category="c", name="b", type=BOOL, help="h", needs_reconnect=True)],
                   match=lambda req: None, configure=lambda profile, values: seen.append((profile, values)))
        d = testing.describe(p)
        self.assertEqual((d.name, d.protocol_version, d.sdk_version), ("p", 1, "0.1.0"))
        self.assertTrue(d.params[0].HasField("min"))
        self.assertFalse(d.params[0].HasField("max"))
        self.assertEqual(d.params[1].type, 1)
        self.assertTrue(d.params[1].needs_reconnect)
        self.assertEqual(testing.match(p, MatchRequest(node="n")), MatchResult())
        seen = []
        testing.configure(p, "alice", {"c.n": "4"})
        testing.configure(p, "alice", None)
        self.assertEqual(seen, [("alice", {"c.n": "4"}), ("alice", None)])


class LogTest(unittest.TestCase):
    def test_hclog_lines(self):
        r, w = os.pipe()
        h = _log.HCLogHandler(w, "p")
        log = logging.getLogger("plugin.test")
        log.propagate = False
        log.addHandler(h)
        log.setLevel(_log.TRACE)
        try:
            log.log(_log.TRACE, "t")
            log.info("parsed %d", 3, extra={"item": "i1", "nan": float("nan"), "obj": Exception()})
            try:
                raise ValueError("bad")
            except ValueError:
                log.exception("failed")
        finally:
            log.removeHandler(h)
            os.close(w)
        with os.fdopen(r) as f:
            lines = [json.loads(line) for line in f]
        self.assertEqual([(x["@level"], x["@message"]) for x in lines], [("trace", "t"), ("info", "parsed 3"), ("error", "failed")])
        self.assertRegex(lines[0]["@timestamp"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
        self.assertEqual((lines[1]["item"], lines[1]["nan"], lines[1]["obj"], lines[1]["logger"]), ("i1", "nan", "Exception", "plugin.test"))
        self.assertIn("ValueError: bad", lines[2]["traceback"])

    def test_levels(self):
        self.assertEqual([_log.hclog_level(x) for x in (5, 10, 20, 30, 40, 50)], ["trace", "debug", "info", "warn", "error", "error"])


class ServerPartsTest(unittest.TestCase):
    def test_stdio_writer(self):
        from backend_plugin import _server
        s = _server.Stdio(limit=2)
        w = s.writer(_server.STDOUT)
        w.write("partial ")
        self.assertTrue(s.q.empty())  # line buffered
        w.write("line\n")
        self.assertEqual(s.q.get_nowait(), (_server.STDOUT, b"partial line\n"))
        for i in range(4):
            print(i, file=w)
        self.assertEqual((s.q.qsize(), s.dropped), (2, 2))

    def test_daemon_pool(self):
        from backend_plugin import _server
        pool = _server.DaemonThreadPool(2)
        self.assertEqual(pool.submit(lambda a, b=0: a + b, 1, b=2).result(timeout=10), 3)
        with self.assertRaises(ZeroDivisionError):
            pool.submit(lambda: 1 / 0).result(timeout=10)
        self.assertTrue(all(t.daemon for t in threading.enumerate() if t.name.startswith("plugin-handler")))

    def test_server_cert(self):
        from cryptography import x509
        from backend_plugin import _tls
        c = _tls.ServerCert()
        der = base64.b64decode(c.handshake + "=" * (-len(c.handshake) % 4))
        cert = x509.load_der_x509_certificate(der)
        self.assertNotIn("=", c.handshake)
        self.assertEqual(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName), ["localhost"])
        self.assertTrue(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
        self.assertNotEqual(_tls.ServerCert().handshake, c.handshake)  # fresh at each start
        self.assertEqual(_tls.check_client_cert(c.cert_pem.decode()), c.cert_pem)
        with self.assertRaises(ValueError):
            _tls.check_client_cert("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")


class PackTest(unittest.TestCase):
    def test_pack(self):
        from backend_plugin import pack
        with tempfile.TemporaryDirectory() as d:
            helper = os.path.join(d, "helper.py")
            with open(helper, "w") as f:
                f.write("VALUE = 42\n")
            script = os.path.join(d, "p.py")
            with open(script, "w") as f:
                f.write("import helper, backend_plugin\nprint(helper.VALUE, backend_plugin.__version__)\n")
            out = os.path.join(d, "backend-plugin-p")
            pack.pack(script, out, include=[helper])
            names = zipfile.ZipFile(out).namelist()
            self.assertEqual(names[0], "__main__.py")
            self.assertIn("backend_plugin/_proto/plugin_pb2.py", names)
            self.assertIn("helper.py", names)
            self.assertFalse([n for n in names if "__pycache__" in n or n.startswith("tests/")])
            run = subprocess.run([out], capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
            self.assertEqual(run.stdout, "42 0.1.0\n", run.stderr)
            with open(script, "w") as f:
                f.write("def broken(:\n")
            with self.assertRaises(SystemExit) as cm:
                pack.pack(script, out)
            self.assertEqual(str(cm.exception), script + ":1: invalid syntax")
            with self.assertRaises(SystemExit):
                pack.pack(script, out, interpreter="python3")
            self.assertEqual(sorted(os.listdir(d)), ["backend-plugin-p", "helper.py", "p.py"])


if __name__ == "__main__":
    unittest.main()
