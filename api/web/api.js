// Calls to citywatch's HTTP API with the bearer token the user gave, and server-sent events
// read over fetch (EventSource cannot send an Authorization header, and a token in a URL
// would end up in logs).

const TOKEN_KEY = "citywatch.token";

export function token() {
  return localStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(t) {
  if (t) localStorage.setItem(TOKEN_KEY, t.trim());
  else localStorage.removeItem(TOKEN_KEY);
}

/** A token handed over in the address (`/#token=…`, as the demo prints it) is kept and the
 *  address cleaned, so it is neither bookmarked nor shown on the wall screen. */
export function takeTokenFromHash() {
  const m = location.hash.match(/token=([^&]+)/);
  if (m) {
    setToken(decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }
}

function headers(extra) {
  const h = Object.assign({ Accept: "application/json" }, extra || {});
  const t = token();
  if (t) h.Authorization = "Bearer " + t;
  return h;
}

/** An API error with the server's message (`{error: {code, message, field}}`). */
export class ApiError extends Error {
  constructor(status, body) {
    const e = (body && body.error) || {};
    super(e.message || "HTTP " + status);
    this.status = status;
    this.code = e.code || "";
    this.field = e.field || "";
  }
}

export async function get(path) {
  const r = await fetch(path, { headers: headers() });
  return answer(r);
}

export async function send(method, path, body) {
  const r = await fetch(path, {
    method,
    headers: headers({ "Content-Type": "application/json" }),
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return answer(r);
}

async function answer(r) {
  const text = await r.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch (_) {
    body = null;
  }
  if (!r.ok) throw new ApiError(r.status, body);
  return body;
}

/**
 * Follows a server-sent event stream, reconnecting with Last-Event-ID after a break.
 * `onEvent(name, data, id)` gets each event; `onState(connected)` each connection change.
 * Returns a function that stops it.
 */
export function follow(path, onEvent, onState) {
  let stopped = false;
  let lastId = null;
  let controller = null;
  async function once() {
    controller = new AbortController();
    const h = headers({ Accept: "text/event-stream" });
    if (lastId !== null) h["Last-Event-ID"] = lastId;
    const r = await fetch(path, { headers: h, signal: controller.signal });
    if (!r.ok) throw new ApiError(r.status, await r.json().catch(() => null));
    onState(true);
    const reader = r.body.getReader();
    const decoder = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buf.indexOf("\n\n")) >= 0) {
        const block = buf.slice(0, cut);
        buf = buf.slice(cut + 2);
        let name = "message";
        let id = null;
        const data = [];
        for (const line of block.split("\n")) {
          if (line.startsWith(":")) continue;
          const colon = line.indexOf(":");
          const field = colon < 0 ? line : line.slice(0, colon);
          const v = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
          if (field === "event") name = v;
          else if (field === "data") data.push(v);
          else if (field === "id") id = v;
        }
        if (id !== null) lastId = id;
        if (data.length) onEvent(name, data.join("\n"), id);
      }
    }
  }
  (async () => {
    let wait = 500;
    while (!stopped) {
      try {
        await once();
        wait = 500;
      } catch (e) {
        if (stopped) return;
        if (e instanceof ApiError && (e.status === 401 || e.status === 403)) {
          onState(false, e);
          return;
        }
      }
      onState(false);
      await new Promise((res) => setTimeout(res, wait));
      wait = Math.min(wait * 2, 10000);
    }
  })();
  return () => {
    stopped = true;
    if (controller) controller.abort();
  };
}
