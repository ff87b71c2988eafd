"""serve(): the go-plugin handshake and the life of a plugin process."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time

from . import _log
from . import _types as t
from ._version import PROTOCOL_VERSION

# The handshake cookie: a plugin refuses to run unless the daemon started it.
COOKIE_KEY = "BACKEND_PLUGIN"
COOKIE_VALUE = "d3f1c0b5-backend-plugin"

# go-plugin's core protocol version, first field of the handshake line.
CORE_PROTOCOL_VERSION = 1

# The largest message either side sends or accepts (64 MiB, as the Go SDK).
MAX_MESSAGE_SIZE = 64 << 20

# How often the watchdog checks that the daemon is still the parent.
PARENT_POLL_SECONDS = 0.5

# Handler threads: parse and match calls run concurrently, and the stdio
# stream holds one thread for the life of the connection.
WORKERS = 8

log = logging.getLogger("backend_plugin")


def serve(plugin: t.Plugin) -> None:
    """Runs the plugin until the daemon closes it; returns then.

    It must be the first thing the script does: the daemon reads the
    handshake on stdout, so nothing may be printed before it (afterwards
    sys.stdout and sys.stderr go to the daemon's log; log with
    backend_plugin.logger). Exits with a message for people when the
    declaration is invalid or when the daemon did not start the process.
    """
    try:
        t.validate(plugin)
    except ValueError as e:
        raise SystemExit("invalid plugin: %s" % e) from None
    if os.environ.get(COOKIE_KEY) != COOKIE_VALUE:
        raise SystemExit("%s is a plugin of the backend daemon: the daemon starts it, it is not meant "
                         "to be run by hand (install it in a plugin directory)" % plugin.name)
    _Process(plugin).run()


class _Process:
    """One serving plugin process: owns the gRPC server, the socket
    directory and the redirected standard streams."""

    def __init__(self, plugin: t.Plugin):
        self.plugin = plugin
        self.stopped = threading.Event()

    def run(self) -> None:
        import grpc  # here: the plugin's own module imports stay light

        from . import _server, _tls
        from ._proto import grpc_controller_pb2_grpc, grpc_stdio_pb2_grpc, health_pb2_grpc, plugin_pb2_grpc

        # The real stderr carries the JSON log; sys.stderr is redirected
        # below, as go-plugin does in Go.
        log_fd = os.dup(2)
        _log.install(log_fd, self.plugin.name)
        _watch_parent()  # from the start: the daemon may die before the handshake
        versions = _protocol_versions()
        if versions and PROTOCOL_VERSION not in versions:
            log.warning("the daemon does not speak this plugin's protocol version; it will say what to upgrade",
                        extra={"plugin_protocol": PROTOCOL_VERSION, "daemon_protocols": ",".join(map(str, versions))})

        client_pem = os.environ.get("PLUGIN_CLIENT_CERT", "")
        cert = None
        if client_pem:
            try:
                client = _tls.check_client_cert(client_pem)
            except ValueError as e:
                log.error("plugin init error", extra={"error": str(e)})
                raise SystemExit(1)
            cert = _tls.ServerCert()
            creds = grpc.ssl_server_credentials([(cert.key_pem, cert.cert_pem)], root_certificates=client,
                                                require_client_auth=True)

        self.sockdir = _socket_dir()
        path = os.path.join(self.sockdir, "plugin.sock")
        try:
            opts = [
                ("grpc.max_receive_message_length", MAX_MESSAGE_SIZE),
                ("grpc.max_send_message_length", MAX_MESSAGE_SIZE),
            ]
            self.server = grpc.server(_server.DaemonThreadPool(WORKERS), options=opts)
            service = _server.PluginService(self.plugin)
            plugin_pb2_grpc.add_PluginServicer_to_server(service, self.server)
            health_pb2_grpc.add_HealthServicer_to_server(_server.HealthService(), self.server)
            grpc_controller_pb2_grpc.add_GRPCControllerServicer_to_server(_server.ControllerService(self.shutdown), self.server)
            stdio = _server.Stdio()
            grpc_stdio_pb2_grpc.add_GRPCStdioServicer_to_server(stdio, self.server)
            addr = "unix:" + path
            bound = self.server.add_secure_port(addr, creds) if cert else self.server.add_insecure_port(addr)
            if not bound:
                raise OSError("cannot listen on unix socket %s" % path)
            _share_with_group(self.sockdir, path)
            self.server.start()
        except Exception:
            shutil.rmtree(self.sockdir, ignore_errors=True)
            raise

        if threading.current_thread() is threading.main_thread():
            # As go-plugin: Ctrl-C in the daemon's terminal reaches the
            # plugins too, and the daemon stops them itself. SIGTERM stops
            # the plugin cleanly (its socket directory removed).
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, lambda *_: self.shutdown())
        line = "%d|%d|unix|%s|grpc|%s" % (CORE_PROTOCOL_VERSION, PROTOCOL_VERSION, path, cert.handshake if cert else "")
        if os.environ.get("PLUGIN_MULTIPLEX_GRPC"):
            line += "|false"  # no gRPC broker multiplexing: the daemon never asks for it
        # What the script printed before serve comes out first, so that the
        # daemon names it; then the handshake, then nothing else on fd 1.
        sys.stdout.flush()
        _write_all(1, (line + "\n").encode("ascii"))
        saved = sys.stdout, sys.stderr, sys.excepthook, threading.excepthook
        sys.stdout, sys.stderr = stdio.writer(_server.STDOUT), stdio.writer(_server.STDERR)
        sys.excepthook = _log_uncaught
        threading.excepthook = lambda a: _log_uncaught(a.exc_type, a.exc_value, a.exc_traceback)
        log.debug("plugin serving", extra={"address": path, "pid": os.getpid()})
        try:
            self.stopped.wait()
            self.server.stop(grace=0.1).wait()
        finally:
            for w in (sys.stdout, sys.stderr):
                try:
                    w.flush()
                except Exception:
                    pass
            sys.stdout, sys.stderr, sys.excepthook, threading.excepthook = saved
            shutil.rmtree(self.sockdir, ignore_errors=True)
        log.debug("plugin stopped by the daemon")

    def shutdown(self) -> None:
        """Asked by the daemon (GRPCController.Shutdown)."""
        self.stopped.set()


def _protocol_versions():
    out = []
    for s in os.environ.get("PLUGIN_PROTOCOL_VERSIONS", "").split(","):
        s = s.strip()
        if s.isdigit():
            out.append(int(s))
    return out


def _socket_dir() -> str:
    """A fresh private directory for the socket: under
    PLUGIN_UNIX_SOCKET_DIR when the daemon sets it, else the temp dir."""
    parent = os.environ.get("PLUGIN_UNIX_SOCKET_DIR") or None
    d = tempfile.mkdtemp(prefix="plugin", dir=parent)  # mode 0700
    if len(os.path.join(d, "plugin.sock").encode()) > 107:
        shutil.rmtree(d, ignore_errors=True)
        raise OSError("unix socket path under %s is longer than 107 bytes: set a shorter TMPDIR" % (parent or tempfile.gettempdir()))
    return d


def _share_with_group(d: str, path: str) -> None:
    """PLUGIN_UNIX_SOCKET_GROUP (name or gid), as go-plugin: the socket is
    made group-writable for that group (and its directory reachable)."""
    group = os.environ.get("PLUGIN_UNIX_SOCKET_GROUP", "")
    if not group:
        return
    if group.isdigit():
        gid = int(group)
    else:
        import grp
        gid = grp.getgrnam(group).gr_gid
    os.chown(d, -1, gid)
    os.chmod(d, 0o710)
    os.chown(path, -1, gid)
    os.chmod(path, 0o660)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _log_uncaught(exc_type, exc, tb):
    log.error("uncaught exception", exc_info=(exc_type, exc, tb))


def _watch_parent() -> None:
    """Exits the process when its parent changes (the daemon died and the
    plugin was re-parented), so that no plugin outlives a killed daemon."""
    ppid = os.getppid()
    if ppid <= 1:
        return

    def watch():
        while True:
            time.sleep(PARENT_POLL_SECONDS)
            if os.getppid() != ppid:
                log.warning("the daemon that started this plugin is gone; exiting", extra={"parent_pid": ppid})
                os._exit(3)

    threading.Thread(target=watch, name="plugin-parent-watchdog", daemon=True).start()
