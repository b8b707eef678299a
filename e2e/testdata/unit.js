// Unit tests of the browser client's logic, run by TestClientUnit in
// Chromium against the module the handler embeds. Time is a fake clock and
// the server a fake fetch, so the tests wait no real time.
import { getTokenManager, TokenManager, TokenError, startCall } from "/api/voice-agent/client.js";

const tests = [];
const test = (name, fn) => tests.push({ name, fn });

class AssertionError extends Error {}
function eq(got, want, what = "") {
  const g = JSON.stringify(got), w = JSON.stringify(want);
  if (g !== w) throw new AssertionError(`${what}: got ${g}, want ${w}`);
}
function ok(cond, what) {
  if (!cond) throw new AssertionError(what);
}
async function rejects(p, check, what) {
  try {
    await p;
  } catch (e) {
    check(e);
    return e;
  }
  throw new AssertionError(`${what}: resolved, want a rejection`);
}

// A macrotask: every promise chain started before it has settled.
const flush = () => new Promise((r) => {
  const c = new MessageChannel();
  c.port1.onmessage = () => r();
  c.port2.postMessage(0);
});

class FakeClock {
  t = 1_700_000_000_000;
  seq = 0;
  timers = new Map();
  now = () => this.t;
  setTimeout = (fn, ms) => {
    const id = ++this.seq;
    this.timers.set(id, { at: this.t + Math.max(0, ms || 0), fn });
    return id;
  };
  clearTimeout = (id) => {
    this.timers.delete(id);
  };
  // advance runs every timer due within ms, in order, letting promises settle between them.
  async advance(ms) {
    const end = this.t + ms;
    await flush();
    for (let fired = 0; ; fired++) {
      if (fired > 10_000) throw new AssertionError("runaway timers: more than 10000 fired in one advance");
      let next = null;
      for (const [id, tm] of this.timers) {
        if (tm.at <= end && (!next || tm.at < next[1].at)) next = [id, tm];
      }
      if (!next) break;
      this.timers.delete(next[0]);
      this.t = next[1].at;
      next[1].fn();
      await flush();
    }
    this.t = end;
    await flush();
  }
}

const HANG = Symbol("hang");

// fakeServer answers fetch with handler(req, n): {status, body, headers},
// HANG (never answers until aborted), or a thrown error (network failure).
function fakeServer(clock, handler) {
  const calls = [];
  const fetch = (url, init) => {
    const req = { url, path: new URL(url).pathname, init, at: clock.now(),
      body: init.body === undefined ? undefined : JSON.parse(init.body) };
    calls.push(req);
    return new Promise((resolve, reject) => {
      const abort = () => reject(new DOMException("The operation was aborted.", "AbortError"));
      if (init.signal.aborted) return abort();
      init.signal.addEventListener("abort", abort);
      Promise.resolve()
        .then(() => handler(req, calls.length))
        .then((r) => {
          if (r === HANG) return;
          const { status = 200, body, headers = {} } = r;
          resolve({ status, ok: status >= 200 && status < 300, headers: { get: (k) => headers[k] ?? null },
            json: async () => body });
        }, reject);
    });
  };
  return { fetch, calls };
}

let tokenSeq = 0;
function tokenBody(clock, { life = 60, sid = "s1", skewMs = 0 } = {}) {
  const st = clock.now() + skewMs;
  return { status: 200, body: { success: true, token: `ek_${++tokenSeq}`, expiresAt: st + life * 1000,
    expiresIn: life, serverTime: st, sessionId: sid } };
}
const fail = (status, code, extra = {}) => ({ status, body: { success: false, error: code, code, ...extra } });

function setup(handler, opts = {}) {
  const clock = new FakeClock();
  const server = fakeServer(clock, (req, n) => handler(req, n, clock));
  const events = [];
  const m = new TokenManager({ baseUrl: "https://app.test", fetch: server.fetch, clock, random: () => 0, ...opts });
  for (const e of ["tokenRefreshed", "tokenExpired", "tokenError"]) m.on(e, (arg) => events.push({ e, at: clock.now(), arg }));
  return { clock, server, m, events, count: (e) => events.filter((x) => x.e === e).length };
}
const tokenServer = (req, n, clock) => tokenBody(clock);

test("single-flight: 100 concurrent callers share one request", async () => {
  let release;
  const gate = new Promise((r) => (release = r));
  const { m, server, clock } = setup(async (req, n, c) => { await gate; return tokenBody(c); });
  const ps = Array.from({ length: 100 }, () => m.requestToken());
  await flush();
  eq(server.calls.length, 1, "requests in flight");
  release();
  const got = await Promise.all(ps);
  eq(server.calls.length, 1, "requests");
  eq(new Set(got.map((t) => t.token)).size, 1, "distinct tokens");
  eq(got[0].expiresAt, clock.now() + 60000, "expiresAt");
  m.destroy();
});

test("a fresh token is returned without a request; a stale one is refreshed", async () => {
  const { m, server, clock } = setup(tokenServer, { enableAutoRefresh: false });
  const a = await m.requestToken();
  await clock.advance(54_000);
  eq((await m.requestToken()).token, a.token, "token with 6 s left");
  eq(server.calls.length, 1, "requests");
  await clock.advance(1_500);
  const b = await m.requestToken();
  ok(b.token !== a.token, "a new token with 4.5 s left");
  eq(server.calls.map((c) => c.path), ["/api/voice-agent/token", "/api/voice-agent/refresh-token"], "paths");
  m.destroy();
});

test("requests: token without a body, refresh with the sessionId, headers and credentials", async () => {
  const { m, server, clock } = setup(tokenServer, { headers: { Authorization: "Bearer u1" }, credentials: "include",
    basePath: "/rt", enableAutoRefresh: false });
  await m.requestToken();
  await clock.advance(58_000);
  await m.requestToken();
  const [t, r] = server.calls;
  eq([t.url, t.init.method, t.body, t.init.credentials, t.init.headers], ["https://app.test/rt/token", "POST",
    undefined, "include", { Authorization: "Bearer u1" }], "token request");
  eq([r.url, r.body, r.init.headers], ["https://app.test/rt/refresh-token", { sessionId: "s1" },
    { Authorization: "Bearer u1", "Content-Type": "application/json" }], "refresh request");
  m.destroy();
});

test("auto-refresh: lead time before expiry, plus jitter, at most half the life", async () => {
  for (const [life, random, want] of [[60, 0, 30_000], [60, 0.5, 31_500], [60, 0.999, 32_997], [20, 0, 10_000], [10, 0, 5_000]]) {
    const { m, server, clock } = setup((req, n, c) => tokenBody(c, { life }), { random: () => random });
    await m.requestToken();
    await clock.advance(want - 1);
    eq(server.calls.length, 1, `life ${life}, random ${random}: requests before ${want} ms`);
    await clock.advance(1);
    eq(server.calls.length, 2, `life ${life}, random ${random}: requests at ${want} ms`);
    eq(server.calls[1].path, "/api/voice-agent/refresh-token", "path");
    m.destroy();
  }
});

test("auto-refresh keeps going and emits tokenRefreshed each time", async () => {
  const { m, clock, count } = setup(tokenServer);
  await m.requestToken();
  await clock.advance(5 * 30_000);
  eq(count("tokenRefreshed"), 6, "tokenRefreshed");
  eq(count("tokenExpired"), 0, "tokenExpired");
  m.destroy();
});

test("clock skew of ±5 minutes does not move the refresh", async () => {
  for (const skewMs of [5 * 60_000, -5 * 60_000, 3 * 3600_000]) {
    const { m, server, clock } = setup((req, n, c) => tokenBody(c, { skewMs }));
    const t = await m.requestToken();
    eq(t.expiresAt, clock.now() + 60_000, `skew ${skewMs}: expiresAt on the page's clock`);
    eq(t.expiresIn, 60, "expiresIn");
    await clock.advance(29_999);
    eq(server.calls.length, 1, `skew ${skewMs}: early`);
    await clock.advance(1);
    eq(server.calls.length, 2, `skew ${skewMs}: on time`);
    m.destroy();
  }
});

test("expiry counts from when the request was sent", async () => {
  const { m, clock } = setup(async (req, n, c) => {
    const sent = c.now();
    await new Promise((r) => c.setTimeout(r, 2_000)); // a slow answer
    return { status: 200, body: { success: true, token: "ek_slow", expiresAt: sent + 60_000, serverTime: sent + 1_000,
      expiresIn: 59, sessionId: "s1" } };
  }, { enableAutoRefresh: false });
  const start = clock.now();
  const p = m.requestToken();
  await clock.advance(2_000);
  eq((await p).expiresAt, start + 59_000, "expiresAt: sent + (expiresAt - serverTime)");
  m.destroy();
});

test("backoff: full jitter, doubling to the cap, then success", async () => {
  const { m, server, clock, events } = setup((req, n, c) => (n <= 5 ? fail(503, "upstream_busy") : tokenBody(c)),
    { random: () => 0.999999, maxAttempts: 6 });
  const p = m.requestToken();
  await clock.advance(60_000);
  await p;
  const gaps = server.calls.slice(1, 6).map((c, i) => Math.round(c.at - server.calls[i].at));
  eq(gaps, [1000, 2000, 4000, 8000, 10000], "waits between attempts");
  const errs = events.filter((x) => x.e === "tokenError").map((x) => x.arg);
  eq(errs.map((e) => [e.name, e.code, e.status, e.attempt, e instanceof TokenError]),
    [1, 2, 3, 4, 5].map((a) => ["TokenError", "upstream_busy", 503, a, true]), "tokenError events");
  m.destroy();
});

test("backoff is random between zero and the ceiling", async () => {
  const { m, server, clock } = setup((req, n, c) => (n <= 3 ? { status: 502, body: {} } : tokenBody(c)),
    { random: () => 0.25 });
  const p = m.requestToken();
  await clock.advance(60_000);
  await p;
  const gaps = server.calls.slice(1, 4).map((c, i) => c.at - server.calls[i].at);
  eq(gaps, [250, 500, 1000], "waits");
  m.destroy();
});

test("Retry-After from the body or the header is honoured", async () => {
  for (const answer of [fail(429, "rate_limited", { retryAfter: 7 }), { status: 503, body: {}, headers: { "Retry-After": "7" } }]) {
    const { m, server, clock, events } = setup((req, n, c) => (n === 1 ? answer : tokenBody(c)), { random: () => 0 });
    const p = m.requestToken();
    await clock.advance(6_999);
    eq(server.calls.length, 1, "before Retry-After");
    await clock.advance(1);
    eq(server.calls.length, 2, "at Retry-After");
    await p;
    eq(events[0].arg.retryAfter, 7, "retryAfter");
    m.destroy();
  }
});

test("no retry on what cannot succeed", async () => {
  for (const [status, code] of [[400, "invalid_request"], [401, "unauthorized"], [403, "origin_not_allowed"],
    [403, "blocked"], [403, "forbidden"], [404, "not_found"], [405, "method_not_allowed"]]) {
    const { m, server, clock, count } = setup(() => fail(status, code));
    const p = m.requestToken();
    const check = rejects(p, (e) => eq([e.name, e.code, e.status, e.attempt, e.retryable],
      ["TokenError", code, status, 1, false], `${status} ${code}`), `${status} ${code}`);
    await clock.advance(60_000);
    await check;
    eq(server.calls.length, 1, `${status} ${code}: requests`);
    eq(count("tokenError"), 1, "tokenError events");
    m.destroy();
  }
});

test("attempts run out", async () => {
  const { m, server, clock } = setup(() => { throw new TypeError("Failed to fetch"); });
  const p = m.requestToken();
  const check = rejects(p, (e) => eq([e.code, e.status, e.attempt, e.retryable], ["network_error", 0, 5, true], "error"), "network");
  await clock.advance(60_000);
  await check;
  eq(server.calls.length, 5, "requests");
  m.destroy();
});

test("a request that hangs times out and is retried", async () => {
  const { m, server, clock, events } = setup((req, n, c) => (n === 1 ? HANG : tokenBody(c)), { requestTimeoutMs: 3_000 });
  const p = m.requestToken();
  await clock.advance(3_000);
  ok(server.calls[0].init.signal.aborted, "the hung request was aborted");
  await clock.advance(1);
  await p;
  eq(events[0].arg.code, "timeout", "code");
  eq(server.calls.length, 2, "requests");
  m.destroy();
});

test("a malformed success answer is an error", async () => {
  const { m, clock } = setup(() => ({ status: 200, body: { success: true, token: "", sessionId: "s1", expiresIn: 60 } }),
    { maxAttempts: 1 });
  await rejects(m.requestToken(), (e) => eq([e.code, e.status], ["bad_response", 502], "error"), "bad");
  await clock.advance(0);
  m.destroy();
});

for (const [status, code] of [[404, "session_not_found"], [403, "refresh_limit_reached"], [401, "session_revoked"],
  [403, "session_mismatch"]]) {
  test(`${code}: a new session at once`, async () => {
    const { m, server, clock, events } = setup((req, n, c) => {
      if (req.path.endsWith("/refresh-token")) return fail(status, code);
      return tokenBody(c, { sid: `s${n}` });
    });
    await m.requestToken();
    await clock.advance(30_000);
    eq(server.calls.map((c) => [c.path.slice(16), c.at - server.calls[0].at]),
      [["/token", 0], ["/refresh-token", 30_000], ["/token", 30_000]], "requests");
    eq(events.map((x) => x.e), ["tokenRefreshed", "tokenError", "tokenRefreshed"], "events");
    eq(events[1].arg.code, code, "code");
    eq(m.getToken().sessionId, "s3", "new session");
    m.destroy();
  });
}

test("while refreshes fail the token stays until it expires, then tokenExpired", async () => {
  let down = false;
  const { m, clock, events, count } = setup((req, n, c) => {
    if (down) throw new TypeError("Failed to fetch");
    return tokenBody(c);
  });
  const t = await m.requestToken();
  down = true;
  await clock.advance(59_999);
  eq(m.getToken()?.token, t.token, "token just before expiry");
  eq(count("tokenExpired"), 0, "tokenExpired before expiry");
  ok(count("tokenError") >= 5, `tokenError events: ${count("tokenError")}`);
  await clock.advance(1);
  eq(m.getToken(), null, "token at expiry");
  eq(count("tokenExpired"), 1, "tokenExpired");
  eq(events.find((x) => x.e === "tokenExpired").arg, { sessionId: "s1", expiredAt: t.expiresAt }, "event");
  const errorsAtExpiry = count("tokenError");
  await clock.advance(120_000);
  eq(count("tokenError"), errorsAtExpiry, "no retries once expired");
  // The session outlives the token: the next request refreshes it.
  down = false;
  await m.requestToken();
  eq(m.getToken().sessionId, "s1", "same session");
  m.destroy();
});

test("destroy aborts the request in flight and rejects its callers", async () => {
  const { m, server, clock, events } = setup(() => HANG);
  const p = m.requestToken();
  const check = rejects(p, (e) => eq([e.name, e.code], ["TokenError", "destroyed"], "rejection"), "destroy");
  await flush();
  m.destroy();
  await check;
  ok(server.calls[0].init.signal.aborted, "the request was aborted");
  eq(clock.timers.size, 0, "timers left");
  eq(events.length, 0, "events");
});

test("destroy cancels the refresh timer and a backoff wait", async () => {
  const { m, server, clock } = setup(tokenServer);
  await m.requestToken();
  ok(clock.timers.size > 0, "timers before destroy");
  m.destroy();
  eq(clock.timers.size, 0, "timers after destroy");
  await clock.advance(600_000);
  eq(server.calls.length, 1, "requests");

  const s = setup(() => fail(503, "upstream_error"));
  const p = s.m.requestToken();
  const check = rejects(p, (e) => eq(e.code, "destroyed", "code"), "backoff");
  await flush();
  eq(s.server.calls.length, 1, "first attempt");
  s.m.destroy();
  await check;
  await s.clock.advance(60_000);
  eq(s.server.calls.length, 1, "no attempt after destroy");
});

test("after destroy every call fails clearly", async () => {
  const { m } = setup(tokenServer);
  m.destroy();
  m.destroy(); // idempotent
  await rejects(m.requestToken(), (e) => eq(e.code, "destroyed", "requestToken"), "requestToken");
  for (const call of [() => m.getToken(), () => m.on("tokenError", () => {}), () => m.off("tokenError", () => {})]) {
    let err;
    try {
      call();
    } catch (e) {
      err = e;
    }
    ok(err instanceof TokenError && err.code === "destroyed" && /destroyed/.test(err.message), `threw ${err}`);
  }
});

test("a throwing listener does not stop the others or the manager", async () => {
  const { m, events } = setup(tokenServer, { enableAutoRefresh: false });
  const reported = [];
  const saved = globalThis.reportError;
  globalThis.reportError = (e) => reported.push(e);
  try {
    m.on("tokenRefreshed", () => { throw new Error("listener bug"); });
    await m.requestToken();
  } finally {
    globalThis.reportError = saved;
  }
  eq(events.length, 1, "other listener");
  eq(reported.map(String), ["Error: listener bug"], "reported");
  m.destroy();
});

test("on and off validate and remove", async () => {
  const { m, clock } = setup(tokenServer);
  let n = 0;
  const fn = () => n++;
  m.on("tokenRefreshed", fn);
  m.off("tokenRefreshed", fn);
  await m.requestToken();
  eq(n, 0, "removed listener calls");
  for (const bad of [() => m.on("refreshed", fn), () => m.on("tokenError", "x")]) {
    let err;
    try { bad(); } catch (e) { err = e; }
    ok(err instanceof TypeError, `want a TypeError, got ${err}`);
  }
  await clock.advance(0);
  m.destroy();
});

test("bad options are refused", async () => {
  for (const o of [{ baseUrl: "app.test" }, { baseUrl: "https://app.test/x" }, { basePath: "api" },
    { basePath: "/api/" }, { refreshThresholdSeconds: -1 }, { jitter: 2 }, { maxAttempts: 0 },
    { credentials: "yes" }, { enableAutoRefresh: "no" }, { retryBaseMs: 5000, retryCapMs: 1000 }]) {
    let err;
    try { new TokenManager(o); } catch (e) { err = e; }
    ok(err instanceof TypeError && /option/.test(err.message), `${JSON.stringify(o)}: got ${err}`);
  }
  eq(new TokenManager({}).getToken(), null, "defaults: baseUrl is the page's origin");
});

test("getTokenManager is a page-wide singleton", async () => {
  const clock = new FakeClock();
  const { fetch } = fakeServer(clock, () => tokenBody(clock));
  const opts = { fetch, clock, headers: { Authorization: "Bearer a" } };
  const a = getTokenManager(opts);
  eq(getTokenManager() === a, true, "no options: the same manager");
  eq(getTokenManager({ ...opts, headers: { Authorization: "Bearer a" } }) === a, true, "equal options");
  let err;
  try { getTokenManager({ ...opts, basePath: "/other" }); } catch (e) { err = e; }
  eq(err && err.code, "config_conflict", "other options");
  await a.requestToken();
  a.destroy();
  const b = getTokenManager(opts);
  ok(b !== a && !b.destroyed, "a new manager after destroy");
  b.destroy();
});

// startCall's fakes: a peer connection that records what it is asked, a
// stream with one track, and a relay that answers each request by handler.
class FakePC {
  log = [];
  closed = false;
  addTransceiver(kind, o) {
    this.log.push(`addTransceiver ${kind} ${o.direction}`);
    return { sender: { replaceTrack: async (t) => { this.log.push("replaceTrack " + t.kind); } } };
  }
  createDataChannel(label) { this.log.push("createDataChannel " + label); return { label }; }
  async createOffer() { return { type: "offer", sdp: "v=0\r\nm=audio offer\r\n" }; }
  async setLocalDescription(d) { this.log.push("local " + d.type); }
  async setRemoteDescription(d) { this.log.push(`remote ${d.type} ${d.sdp}`); }
  close() { this.closed = true; }
}
function fakeStream(tracks = 1) {
  const ts = Array.from({ length: tracks }, () => ({ kind: "audio", stopped: false, stop() { this.stopped = true; } }));
  return { tracks: ts, getAudioTracks: () => ts, getTracks: () => ts };
}
function relay(handler) {
  const reqs = [];
  const fetch = async (url, init) => {
    reqs.push({ url, method: init.method, headers: init.headers, body: init.body });
    const { status = 200, headers = {}, text = "", body } = handler(init.method, new URL(url).pathname);
    return { status, ok: status >= 200 && status < 300, headers: { get: (k) => headers[k] ?? null },
      text: async () => text, json: async () => { if (body === undefined) throw new SyntaxError("no JSON"); return body; } };
  };
  return { fetch, reqs };
}
const placed = (method) => method === "POST"
  ? { status: 201, headers: { Location: "/api/voice-agent/calls/rtc_1" }, text: "v=0\r\nanswer\r\n" }
  : { status: 204 };

test("startCall posts the offer, applies the answer, returns the call ID", async () => {
  const r = relay(placed);
  const pc = new FakePC();
  const stream = fakeStream();
  const call = await startCall({ baseUrl: "https://app.test", fetch: r.fetch, stream, newPeerConnection: () => pc,
    headers: { Authorization: "Bearer app" } });
  eq(call.callId, "rtc_1", "callId from Location");
  eq(r.reqs.length, 1, "one request");
  eq(r.reqs[0].url, "https://app.test/api/voice-agent/calls", "url");
  eq(r.reqs[0].method, "POST", "method");
  eq(r.reqs[0].headers, { Authorization: "Bearer app", "Content-Type": "application/sdp" }, "headers");
  eq(r.reqs[0].body, "v=0\r\nm=audio offer\r\n", "the offer as the body");
  eq(pc.log, ["addTransceiver audio sendrecv", "createDataChannel oai-events", "local offer", "remote answer v=0\r\nanswer\r\n",
    "replaceTrack audio"], "peer connection: the track once the call is placed");
  eq(call.dataChannel.label, "oai-events", "data channel");
  await call.destroy();
  await call.destroy();
  eq(r.reqs.map((q) => `${q.method} ${q.url}`), ["POST https://app.test/api/voice-agent/calls",
    "DELETE https://app.test/api/voice-agent/calls/rtc_1"], "destroy hangs up, once");
  ok(pc.closed, "destroy closes the connection");
  ok(!stream.tracks[0].stopped, "a stream the page passed is the page's");
});

test("startCall without a track still offers audio", async () => {
  const pc = new FakePC();
  await startCall({ baseUrl: "https://app.test", fetch: relay(placed).fetch, stream: fakeStream(0), newPeerConnection: () => pc });
  eq(pc.log[0], "addTransceiver audio sendrecv", "an audio transceiver");
  ok(!pc.log.includes("replaceTrack audio"), "no track to set");
});

test("a call placed but not completed is hung up", async () => {
  const r = relay(placed);
  const pc = new FakePC();
  pc.setRemoteDescription = async () => { throw new DOMException("bad answer", "InvalidAccessError"); };
  await rejects(startCall({ baseUrl: "https://app.test", fetch: r.fetch, stream: fakeStream(), newPeerConnection: () => pc }),
    (e) => eq(e.name, "InvalidAccessError", "the failure"), "a failed answer");
  await flush();
  eq(r.reqs.map((q) => q.method), ["POST", "DELETE"], "hung up");
  ok(pc.closed, "closed");
});

test("startCall rejects with the server's code and closes the connection", async () => {
  for (const [status, code] of [[429, "too_many_calls"], [501, "relay_unavailable"], [403, "origin_not_allowed"]]) {
    const pc = new FakePC();
    const r = relay(() => ({ status, body: { success: false, error: "no", code, retryAfter: status === 429 ? 3 : undefined } }));
    const e = await rejects(startCall({ baseUrl: "https://app.test", fetch: r.fetch, stream: fakeStream(), newPeerConnection: () => pc }),
      (e) => ok(e instanceof TokenError, "a TokenError"), code);
    eq([e.code, e.status], [code, status], code);
    ok(pc.closed, `${code}: the connection is closed`);
  }
  const pc = new FakePC();
  const e = await rejects(startCall({ baseUrl: "https://app.test", fetch: relay(() => ({ status: 201, text: "v=0" })).fetch,
    stream: fakeStream(), newPeerConnection: () => pc }), () => {}, "no Location");
  eq(e.code, "bad_response", "an answer without Location");
  ok(pc.closed, "closed");
  const down = async () => { throw new TypeError("Failed to fetch"); };
  const e2 = await rejects(startCall({ baseUrl: "https://app.test", fetch: down, stream: fakeStream(), newPeerConnection: () => new FakePC() }),
    () => {}, "network");
  eq(e2.code, "network_error", "no server");
});

test("destroy of a call the server no longer knows is no error", async () => {
  const r = relay((m) => (m === "POST" ? placed(m) : { status: 404, body: { success: false, error: "gone", code: "call_not_found" } }));
  const pc = new FakePC();
  const call = await startCall({ baseUrl: "https://app.test", fetch: r.fetch, stream: fakeStream(), newPeerConnection: () => pc });
  await call.destroy();
  ok(pc.closed, "closed");
  const r2 = relay((m) => (m === "POST" ? placed(m) : { status: 502, body: { success: false, error: "x", code: "upstream_error" } }));
  const pc2 = new FakePC();
  const call2 = await startCall({ baseUrl: "https://app.test", fetch: r2.fetch, stream: fakeStream(), newPeerConnection: () => pc2 });
  const e = await rejects(call2.destroy(), () => {}, "a failed hang-up");
  eq(e.code, "upstream_error", "reported");
  ok(pc2.closed, "closed all the same");
});

// Run the tests one by one and publish the results for the Go test.
const results = [];
const out = document.getElementById("out");
for (const t of tests) {
  out.textContent = `running ${t.name}`;
  try {
    await t.fn();
    results.push({ name: t.name, ok: true });
  } catch (e) {
    results.push({ name: t.name, ok: false, error: String(e && e.stack || e) });
  }
}
out.textContent = results.map((r) => `${r.ok ? "ok  " : "FAIL"} ${r.name}${r.ok ? "" : "\n" + r.error}`).join("\n");
window.unitResults = results;
