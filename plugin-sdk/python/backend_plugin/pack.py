"""Packs a plugin script and this SDK into one executable file (a Python
zip application), ready for a plugin directory:

    backend-plugin-pack hello.py -o ~/.local/lib/backend/plugins/backend-plugin-hello

The file starts with ``#!/usr/bin/python3`` (Debian's interpreter, with
python3-grpcio, python3-protobuf and python3-cryptography; --interpreter
changes it), holds the script as __main__.py, the SDK, and each --include'd
module or package; it is written whole (a temporary file renamed into
place, mode 0755) and is byte-for-byte reproducible, so its sha256 can be
pinned in the daemon's configuration (plugins.pins) and covers the SDK too.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import zipfile

DEFAULT_INTERPRETER = "/usr/bin/python3"

# Fixed timestamp of every entry: the same inputs give the same bytes.
_EPOCH = (1980, 1, 1, 0, 0, 0)


def _sdk_files():
    """(archive name, path) of the SDK's Python sources."""
    pkg = os.path.dirname(os.path.abspath(__file__))
    base = os.path.dirname(pkg)
    out = []
    for d, dirs, files in os.walk(pkg):
        dirs[:] = sorted(x for x in dirs if x != "__pycache__")
        for f in sorted(files):
            if f.endswith(".py"):
                p = os.path.join(d, f)
                out.append((os.path.relpath(p, base).replace(os.sep, "/"), p))
    return out


def _included(path):
    path = os.path.abspath(path)
    if os.path.isfile(path):
        return [(os.path.basename(path), path)]
    if not os.path.isdir(path):
        raise SystemExit("--include %s: no such file or directory" % path)
    base = os.path.dirname(path)
    out = []
    for d, dirs, files in os.walk(path):
        dirs[:] = sorted(x for x in dirs if x != "__pycache__" and not x.startswith("."))
        for f in sorted(files):
            if not f.endswith((".pyc", ".pyo")):
                p = os.path.join(d, f)
                out.append((os.path.relpath(p, base).replace(os.sep, "/"), p))
    return out


def _add(z, name, data):
    info = zipfile.ZipInfo(name, _EPOCH)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    z.writestr(info, data)


def pack(script, output, include=(), interpreter=DEFAULT_INTERPRETER):
    """Writes the plugin file; raises SystemExit with a message on error."""
    try:
        with open(script, "rb") as f:
            source = f.read()
    except OSError as e:
        raise SystemExit("read %s: %s" % (script, e.strerror or e))
    try:
        compile(source, script, "exec", dont_inherit=True)
    except SyntaxError as e:
        raise SystemExit("%s:%s: %s" % (script, e.lineno, e.msg))
    if not interpreter.startswith("/") or "\n" in interpreter:
        raise SystemExit("--interpreter must be an absolute path, got %r" % interpreter)
    entries = [("__main__.py", source)]
    names = {"__main__.py"}
    for name, path in _sdk_files() + [x for p in include for x in _included(p)]:
        if name in names:
            raise SystemExit("%s: two files would be packed as %s" % (path, name))
        names.add(name)
        with open(path, "rb") as f:
            entries.append((name, f.read()))
    output = os.path.abspath(output)
    d = os.path.dirname(output)
    if not os.path.isdir(d):
        raise SystemExit("the output directory %s does not exist (create the plugin directory first)" % d)
    fd, tmp = tempfile.mkstemp(prefix=".pack-", dir=d)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(b"#!" + interpreter.encode() + b"\n")
            with zipfile.ZipFile(f, "w") as z:
                for name, data in entries:
                    _add(z, name, data)
        os.chmod(tmp, 0o755)
        os.replace(tmp, output)
    except BaseException:
        os.unlink(tmp)
        raise
    return output


def main(argv=None):
    ap = argparse.ArgumentParser(
        prog="backend-plugin-pack",
        description="Packs a plugin script and the backend_plugin SDK into one executable file "
                    "(a Python zip application, #!/usr/bin/python3, mode 0755, reproducible) for a plugin directory.")
    ap.add_argument("script", help="the plugin script (it calls backend_plugin.serve)")
    ap.add_argument("-o", "--output", required=True, help="the plugin file to write, e.g. PLUGIN_DIR/backend-plugin-NAME")
    ap.add_argument("--include", action="append", default=[], metavar="PATH",
                    help="a module file or package directory the script imports (repeatable)")
    ap.add_argument("--interpreter", default=DEFAULT_INTERPRETER, help="the #! interpreter (default %(default)s)")
    a = ap.parse_args(argv)
    out = pack(a.script, a.output, a.include, a.interpreter)
    name = os.path.basename(out)
    if not name.startswith("backend-plugin-"):
        print("note: the daemon only runs plugin files named backend-plugin-NAME; %s is not" % name, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
