// A client of the backend daemon's API (backend.v2) for Node.js: one
// transport (Unix socket, or TCP with TLS and the token) and a client per
// service. Messages are the generated types of ./gen (protoc-gen-es).
import { readFileSync } from "node:fs";
import { createClient, type Client, type Interceptor, type Transport } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { DaemonService } from "./gen/backend/v2/daemon_pb.js";
import { ProfileService } from "./gen/backend/v2/profile_pb.js";
import { SessionService } from "./gen/backend/v2/session_pb.js";
import { PluginService } from "./gen/backend/v2/plugins_pb.js";
import { PubSubService } from "./gen/backend/v2/pubsub_pb.js";
import { PubSubCacheService } from "./gen/backend/v2/pubsubcache_pb.js";
import { CacheService } from "./gen/backend/v2/cache_pb.js";

export * from "./gen/backend/v2/daemon_pb.js";
export * from "./gen/backend/v2/events_pb.js";
export * from "./gen/backend/v2/profile_pb.js";
export * from "./gen/backend/v2/session_pb.js";
export * from "./gen/backend/v2/plugins_pb.js";
export * from "./gen/backend/v2/pubsub_pb.js";
export * from "./gen/backend/v2/pubsubcache_pb.js";
export * from "./gen/backend/v2/cache_pb.js";

/** Where the daemon is: its Unix socket, or its TCP listener. */
export interface Target {
  /** The daemon's Unix socket (e.g. $XDG_RUNTIME_DIR/backend.sock). */
  socket?: string;
  /** The TCP listener, e.g. "https://127.0.0.1:7777". */
  url?: string;
  /** The file holding the TCP token (api.token_file). */
  tokenFile?: string;
  /** A PEM file to verify the daemon's certificate with: its self-signed
   * <data_dir>/api-tls.crt, or the CA of api.tls_cert. */
  caFile?: string;
  /** Protobuf binary instead of JSON on the wire (default: JSON). */
  binary?: boolean;
}

/** Builds a Connect transport for target. */
export function createTransport(target: Target): Transport {
  const interceptors: Interceptor[] = [];
  if (target.tokenFile) {
    const token = readFileSync(target.tokenFile, "utf8").trim();
    interceptors.push((next) => async (req) => {
      req.header.set("Authorization", `Bearer ${token}`);
      return next(req);
    });
  }
  const useBinaryFormat = target.binary ?? false;
  if (target.url) {
    return createConnectTransport({
      baseUrl: target.url,
      httpVersion: "2",
      useBinaryFormat,
      interceptors,
      nodeOptions: target.caFile ? { ca: readFileSync(target.caFile) } : {},
    });
  }
  if (!target.socket) {
    throw new Error("no daemon: give a socket or a url");
  }
  return createConnectTransport({
    baseUrl: "http://backend",
    httpVersion: "1.1",
    useBinaryFormat,
    interceptors,
    nodeOptions: { socketPath: target.socket },
  });
}

/** A client per service of the API. */
export interface Backend {
  daemon: Client<typeof DaemonService>;
  profiles: Client<typeof ProfileService>;
  sessions: Client<typeof SessionService>;
  plugins: Client<typeof PluginService>;
  pubsub: Client<typeof PubSubService>;
  pubsubCache: Client<typeof PubSubCacheService>;
  cache: Client<typeof CacheService>;
}

export function createBackend(target: Target | Transport): Backend {
  const t = "unary" in target ? target : createTransport(target);
  return {
    daemon: createClient(DaemonService, t),
    profiles: createClient(ProfileService, t),
    sessions: createClient(SessionService, t),
    plugins: createClient(PluginService, t),
    pubsub: createClient(PubSubService, t),
    pubsubCache: createClient(PubSubCacheService, t),
    cache: createClient(CacheService, t),
  };
}

/** Target from the environment: BACKEND_URL (with BACKEND_TOKEN_FILE and
 * BACKEND_CA_FILE) or BACKEND_SOCKET. */
export function targetFromEnv(env: NodeJS.ProcessEnv = process.env): Target {
  if (env.BACKEND_URL) {
    return { url: env.BACKEND_URL, tokenFile: env.BACKEND_TOKEN_FILE, caFile: env.BACKEND_CA_FILE };
  }
  const runtime = env.XDG_RUNTIME_DIR;
  return { socket: env.BACKEND_SOCKET ?? (runtime ? `${runtime}/backend.sock` : undefined) };
}
