"""The gRPC services a plugin process serves: the daemon's plugin protocol
(backend.plugin.v1.Plugin) over the author's plain-Python handlers, and
go-plugin's own services (gRPC health, GRPCController, GRPCStdio)."""

from __future__ import annotations

import io
import logging
import queue
import threading
import time
from concurrent import futures

import grpc

from . import _types as t
from ._convert import HandlerError, describe_response, parse_request, parse_response
from ._proto import grpc_controller_pb2, grpc_controller_pb2_grpc
from ._proto import grpc_stdio_pb2, grpc_stdio_pb2_grpc
from ._proto import health_pb2, health_pb2_grpc
from ._proto import plugin_pb2 as pb
from ._proto import plugin_pb2_grpc

log = logging.getLogger("backend_plugin")


class PluginService(plugin_pb2_grpc.PluginServicer):
    """Serves one Plugin. Configure calls are serialised by cfg_lock."""

    def __init__(self, plugin: t.Plugin):
        self.p = plugin
        self.cfg_lock = threading.Lock()

    def _fail(self, context, method: str, what: str, e: BaseException):
        if isinstance(e, HandlerError):
            context.abort(grpc.StatusCode[e.code], str(e))
        if isinstance(e, t.Cancelled):
            left = context.time_remaining()
            code = grpc.StatusCode.DEADLINE_EXCEEDED if left is not None and left <= 0 else grpc.StatusCode.CANCELLED
            context.abort(code, "%s: %s" % (what, e))
        log.error("%s failed", method, exc_info=e, extra={"method": method})
        context.abort(grpc.StatusCode.UNKNOWN, "%s: %s" % (what, t.error_text(e)))

    def Describe(self, request, context):
        return describe_response(self.p)

    def Configure(self, request, context):
        if self.p.configure is None:
            return pb.ConfigureResponse()
        values = None if request.deleted else dict(request.values)
        try:
            with self.cfg_lock:
                self.p.configure(request.profile, values)
        except Exception as e:
            self._fail(context, "Configure", "configure profile " + request.profile, e)
        return pb.ConfigureResponse()

    def Match(self, request, context):
        if self.p.match is None:
            context.abort(grpc.StatusCode.UNIMPLEMENTED, "plugin %s has no match" % self.p.name)
        mr = t.MatchRequest(profile=request.profile, service=request.service, node=request.node, analyser=request.analyser)
        if request.HasField("first_item"):
            it = request.first_item
            mr.first_item = t.Item(id=it.id, publisher=it.publisher, payload=it.payload)
        try:
            res = self.p.match(mr)
            if res is None:
                res = t.MatchResult()
            if not isinstance(res, t.MatchResult):
                raise HandlerError(grpc.StatusCode.INTERNAL, "plugin %s: match returned a %s, not a MatchResult" % (self.p.name, type(res).__name__))
            return pb.MatchResponse(drop=bool(res.drop), subtype=res.subtype or "")
        except Exception as e:
            self._fail(context, "Match", "match node " + request.node, e)

    def Parse(self, request, context):
        if self.p.parse is None:
            context.abort(grpc.StatusCode.UNIMPLEMENTED, "plugin %s has no parse" % self.p.name)
        req = parse_request(request)
        left = context.time_remaining()
        if left is not None:
            req.deadline = time.monotonic() + left
        req._cancelled = lambda: not context.is_active()
        try:
            return parse_response(self.p.name, req.items, self.p.parse(req))
        except Exception as e:
            self._fail(context, "Parse", "parse", e)

    def Ping(self, request, context):
        return pb.PingResponse()


# go-plugin's host checks this service name.
HEALTH_SERVICE = "plugin"


class HealthService(health_pb2_grpc.HealthServicer):
    """grpc.health.v1.Health: "plugin" (and the server as a whole, "") are
    serving while the process serves."""

    def Check(self, request, context):
        if request.service not in ("", HEALTH_SERVICE):
            context.abort(grpc.StatusCode.NOT_FOUND, "unknown service %r" % request.service)
        return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)

    def Watch(self, request, context):
        if request.service not in ("", HEALTH_SERVICE):
            yield health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVICE_UNKNOWN)
        else:
            yield health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)
        done = threading.Event()
        context.add_callback(done.set)
        done.wait()


class ControllerService(grpc_controller_pb2_grpc.GRPCControllerServicer):
    """go-plugin's GRPCController: Shutdown stops the server (the daemon
    then waits for the process to exit before it kills it)."""

    def __init__(self, shutdown):
        self.shutdown = shutdown

    def Shutdown(self, request, context):
        self.shutdown()
        return grpc_controller_pb2.Empty()


_WAKE = object()


class Stdio(grpc_stdio_pb2_grpc.GRPCStdioServicer):
    """go-plugin's GRPCStdio: what the plugin writes to sys.stdout and
    sys.stderr after the handshake goes to the daemon, which logs it (the
    real stdout carried the handshake; the real stderr carries the JSON
    log). At most `limit` chunks wait for the daemon; later ones are
    dropped (counted in `dropped`)."""

    def __init__(self, limit: int = 1024):
        self.q: "queue.Queue" = queue.Queue(maxsize=limit)
        self.dropped = 0

    def writer(self, channel: int) -> io.TextIOWrapper:
        return io.TextIOWrapper(io.BufferedWriter(_ChunkWriter(self, channel)), encoding="utf-8",
                                errors="backslashreplace", line_buffering=True)

    def put(self, channel: int, data: bytes) -> None:
        try:
            self.q.put_nowait((channel, data))
        except queue.Full:
            self.dropped += 1

    def StreamStdio(self, request, context):
        done = threading.Event()

        def wake():
            done.set()
            try:
                self.q.put_nowait(_WAKE)
            except queue.Full:
                pass  # not blocked: the queue has data

        context.add_callback(wake)
        while not done.is_set():
            chunk = self.q.get()
            if chunk is _WAKE:
                continue
            yield grpc_stdio_pb2.StdioData(channel=chunk[0], data=chunk[1])


class _ChunkWriter(io.RawIOBase):
    def __init__(self, stdio: Stdio, channel: int):
        self.stdio, self.channel = stdio, channel

    def writable(self):
        return True

    def write(self, b):
        data = bytes(b)
        if data:
            self.stdio.put(self.channel, data)
        return len(data)


STDOUT = grpc_stdio_pb2.StdioData.STDOUT
STDERR = grpc_stdio_pb2.StdioData.STDERR


class DaemonThreadPool(futures.Executor):
    """The server's handler threads, as daemon threads: when the daemon
    closes the plugin, a handler stuck in author code does not keep the
    process alive (as goroutines do not in Go). The queue is the only
    shared state."""

    def __init__(self, workers: int):
        self._q: "queue.SimpleQueue" = queue.SimpleQueue()
        for i in range(workers):
            threading.Thread(target=self._work, name="plugin-handler-%d" % i, daemon=True).start()

    def submit(self, fn, /, *args, **kwargs):
        f = futures.Future()
        self._q.put((f, fn, args, kwargs))
        return f

    def _work(self):
        while True:
            f, fn, args, kwargs = self._q.get()
            if not f.set_running_or_notify_cancel():
                continue
            try:
                f.set_result(fn(*args, **kwargs))
            except BaseException as e:  # delivered to whoever waits on f
                f.set_exception(e)

    def shutdown(self, wait=True, *, cancel_futures=False):
        pass  # daemon threads: they end with the process
