// An example frontend: lists the profiles, follows the event stream,
// publishes blog posts, syncs the blog into the cache and reads it from
// there, searches it, and triggers the other kinds of events (retraction,
// parameter change, plugin restart, reconnection, purge, deletion, a
// profile created and deleted), waiting for each typed event.
//
// Usage: node dist/example.js PROFILE
//   (BACKEND_SOCKET, or BACKEND_URL with BACKEND_TOKEN_FILE and
//   BACKEND_CA_FILE, say where the daemon is)
// Prints one line per step ("STEP name {...}") and per event received
// ("EVENT {...}": its case, its message type and a summary read from the
// typed fields), then "DONE".
import { fromJson, toJson } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { ConnectError } from "@connectrpc/connect";
import { createBackend, targetFromEnv, EventSchema, type Event } from "./client.js";

const profile = process.argv[2];
if (!profile) {
  console.error("usage: example PROFILE");
  process.exit(2);
}
const node = "urn:xmpp:microblog:0";
const api = createBackend(targetFromEnv());
const events: Event[] = [];
let wake: () => void = () => {};

function step(name: string, data: unknown): void {
  console.log(`STEP ${name} ${JSON.stringify(data)}`);
}

// summary reads an event through its typed fields (an exhaustive switch
// on the oneof: a new kind is a compile error here).
function summary(ev: Event): string {
  const e = ev.event;
  switch (e.case) {
    case "started":
      return "started";
    case "items":
      return `${e.value.node} ${e.value.items.map((it) => it.xml).join(" ")}`;
    case "retract":
      return `${e.value.node} ${e.value.ids.join(",")}`;
    case "purge":
      return e.value.node;
    case "delete":
      return `${e.value.node} ${e.value.redirect ?? ""}`;
    case "configuration":
      return `${e.value.node} ${e.value.fields.map((f) => f.var).join(",")}`;
    case "subscription":
      return `${e.value.node} ${e.value.subscription}`;
    case "sessionState":
      return `${e.value.state} ${e.value.error ?? ""}`;
    case "cacheSync":
      return `${e.value.node} ${e.value.state} ${e.value.items} done=${e.value.done}`;
    case "paramChanged":
      return `${e.value.key}=${JSON.stringify(e.value.value ? toJson(ValueSchema, e.value.value) : null)}`;
    case "pluginState":
      return `${e.value.name} ${e.value.state}`;
    case "profileCreated":
      return e.value.jid;
    case "profileDeleted":
      return "deleted";
    case undefined:
      return "unknown kind (a newer daemon)";
  }
}

// waitFor resolves with the first event since `from` that matches.
async function waitFor(what: string, from: number, match: (ev: Event) => boolean, ms = 60000): Promise<Event> {
  const deadline = Date.now() + ms;
  for (;;) {
    const found = events.slice(from).find(match);
    if (found) {
      return found;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}`);
    }
    await new Promise<void>((resolve) => {
      wake = resolve;
      setTimeout(resolve, 500);
    });
  }
}

async function follow(ready: () => void): Promise<void> {
  for await (const ev of api.daemon.events({})) {
    if (ev.event.case === "started") {
      ready();
    }
    events.push(ev);
    console.log(`EVENT ${JSON.stringify({ case: ev.event.case, typeName: ev.event.value?.$typeName, profile: ev.profile, summary: summary(ev), json: toJson(EventSchema, ev) })}`);
    wake();
  }
}

const entry = (title: string) =>
  `<entry xmlns='http://www.w3.org/2005/Atom'><title>${title}</title><content>Written by the TypeScript example &amp; read back</content><category term='ts-example'/></entry>`;

async function main(): Promise<void> {
  const ctl = new AbortController();
  let stream: Promise<void> = Promise.resolve();
  await new Promise<void>((ready) => {
    stream = follow(ready).catch((err) => {
      if (!ctl.signal.aborted) {
        console.error(`event stream: ${err}`);
        process.exit(1);
      }
    });
  });

  const { profiles } = await api.profiles.list({});
  step("profiles", profiles.map((p) => ({ name: p.name, jid: p.jid, state: p.state })));
  const me = profiles.find((p) => p.name === profile);
  if (!me) {
    throw new Error(`no profile ${profile}`);
  }

  // A profile created and deleted.
  let n = events.length;
  const extra = `${profile}-ts`;
  await api.profiles.create({ name: extra, jid: `ts-${me.jid}`, password: "unused" });
  await waitFor("profile_created", n, (e) => e.event.case === "profileCreated" && e.profile === extra);
  await api.profiles.delete({ name: extra });
  await waitFor("profile_deleted", n, (e) => e.event.case === "profileDeleted" && e.profile === extra);

  // Publish (the payload is XML text), sync the blog into the cache (the
  // cache then follows the node's notifications), publish again: the
  // notification brings the item back, as the server keeps it.
  const publish = async (id: string) => {
    const res = await api.pubsub.publish({ profile, node, id, payload: entry(`Post ${id} from TypeScript`),
      options: [{ var: "pubsub#max_items", value: "max" }] });
    step("published", { id: res.id });
  };
  await publish("ts-1");
  n = events.length;
  for await (const pr of api.pubsubCache.sync({ profile, node, wait: true })) {
    if (pr.done) {
      step("synced", { state: pr.state, items: Number(pr.items), fresh: pr.fresh });
    }
  }
  await waitFor("cache_sync done", n, (e) => e.event.case === "cacheSync" && e.event.value.done);
  n = events.length;
  await publish("ts-2");
  await waitFor("items ts-2", n, (e) => e.event.case === "items" && e.event.value.items.some((it) => it.id === "ts-2"));

  // Read the node from the cache.
  const read = async (from: "cache" | "items") => {
    const chunks = from === "cache" ? api.pubsubCache.get({ profile, node }) : api.pubsub.items({ profile, node });
    const ids: string[] = [];
    let fromCache = false;
    for await (const chunk of chunks) {
      if (chunk.header) {
        fromCache = chunk.header.fromCache;
      }
      ids.push(...chunk.items.map((it) => it.id));
    }
    return { ids, fromCache };
  };
  step("cache_get", await read("cache"));
  // An items request is answered from the cache once the node is fresh
  // again (the notification of ts-2 may still be on its way).
  let items = await read("items");
  for (let i = 0; i < 100 && !items.fromCache; i++) {
    await new Promise((r) => setTimeout(r, 200));
    items = await read("items");
  }
  step("items", items);

  // Search the parsed posts (parsed data is a Struct: a plain object).
  const found: unknown[] = [];
  for await (const chunk of api.cache.search({ profiles: [profile], nodes: [node],
    filters: [{ path: "tags", op: "overlap", value: fromJson(ValueSchema, ["ts-example"]) }] })) {
    for (const it of chunk.items) {
      found.push({ id: it.id, title: it.parsed?.title });
    }
  }
  step("search", found);

  // Retract.
  n = events.length;
  await api.pubsub.retract({ profile, node, id: "ts-1", notify: true });
  await waitFor("retract", n, (e) => e.event.case === "retract" && e.event.value.ids.includes("ts-1"));

  // A parameter change.
  n = events.length;
  await api.profiles.set({ name: profile, key: "cache.sync_concurrency", value: "3" });
  await waitFor("param_changed", n, (e) => e.event.case === "paramChanged" && e.event.value.key === "cache.sync_concurrency");

  // A plugin restart.
  n = events.length;
  await api.plugins.restart({ name: "microblog" });
  await waitFor("plugin_state running", n, (e) => e.event.case === "pluginState" && e.event.value.name === "microblog" && e.event.value.state === "running");

  // A reconnection.
  n = events.length;
  await api.sessions.disconnect({ profile });
  await waitFor("session disconnected", n, (e) => e.event.case === "sessionState" && e.event.value.state === "disconnected");
  await api.sessions.connect({ profile });
  await waitFor("session connected", n, (e) => e.event.case === "sessionState" && e.event.value.state === "connected");

  // Purge and delete the node.
  n = events.length;
  await api.pubsub.purgeNode({ profile, node });
  await waitFor("purge", n, (e) => e.event.case === "purge" && e.event.value.node === node);
  await api.pubsub.deleteNode({ profile, node });
  await waitFor("delete", n, (e) => e.event.case === "delete" && e.event.value.node === node);

  ctl.abort();
  console.log("DONE");
  process.exit(0);
}

main().catch((err) => {
  const e = ConnectError.from(err);
  console.error(`example failed: ${e.code ? e.code + ": " : ""}${e.rawMessage}`);
  process.exit(1);
});
