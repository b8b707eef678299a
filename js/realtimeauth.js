// realtimeauth browser client: keeps an OpenAI Realtime ephemeral key (ek_…)
// from a realtimeauth server valid, in memory only, or makes a WebRTC call
// through the server's relay, with no key in the page at all. No
// dependencies.
//
//   import { getTokenManager, startCall } from "/api/voice-agent/client.js";
//   const tm = getTokenManager();
//   tm.on("tokenRefreshed", (t) => use(t.token));
//   const { token } = await tm.requestToken();
//
//   const call = await startCall({ audioElement: document.querySelector("audio") });
//   call.dataChannel.send(JSON.stringify({ type: "response.create" }));
//   await call.destroy(); // hangs up

const EVENTS = ["tokenRefreshed", "tokenExpired", "tokenError"];

// Statuses worth another attempt; anything else will fail the same way again.
const RETRYABLE_STATUS = new Set([408, 425, 429, 499, 500, 502, 503, 504]);

// Answers to a refresh that mean the session is gone: start a new one.
const SESSION_GONE = new Set(["session_not_found", "refresh_limit_reached", "session_revoked", "session_mismatch"]);

/** TokenError is every failure the manager reports or rejects with. */
export class TokenError extends Error {
  constructor(message, { code, status = 0, retryAfter, attempt = 0, cause } = {}) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = "TokenError";
    this.code = code;
    this.status = status;
    this.retryAfter = retryAfter;
    this.attempt = attempt;
  }

  /** retryable reports whether the same request may succeed later. */
  get retryable() {
    return this.status === 0 ? this.code !== "destroyed" && this.code !== "aborted" : RETRYABLE_STATUS.has(this.status);
  }
}

const realClock = {
  now: () => performance.timeOrigin + performance.now(), // monotonic, epoch-based
  setTimeout: (fn, ms) => globalThis.setTimeout(fn, ms),
  clearTimeout: (id) => globalThis.clearTimeout(id),
};

function defaultBaseUrl() {
  return globalThis.location ? globalThis.location.origin : undefined;
}

function resolveOptions(o) {
  const opt = {
    baseUrl: o.baseUrl ?? defaultBaseUrl(),
    basePath: o.basePath ?? "/api/voice-agent",
    refreshThresholdSeconds: o.refreshThresholdSeconds ?? 30,
    enableAutoRefresh: o.enableAutoRefresh ?? true,
    jitter: o.jitter ?? 0.1,
    minValiditySeconds: o.minValiditySeconds ?? 5,
    retryBaseMs: o.retryBaseMs ?? 1000,
    retryCapMs: o.retryCapMs ?? 10000,
    maxAttempts: o.maxAttempts ?? 5,
    requestTimeoutMs: o.requestTimeoutMs ?? 15000,
    headers: { ...(o.headers ?? {}) },
    credentials: o.credentials ?? "same-origin",
    tokenRequestBody: o.tokenRequestBody,
    fetch: o.fetch ?? ((...a) => globalThis.fetch(...a)),
    clock: o.clock ?? realClock,
    random: o.random ?? Math.random,
  };
  const bad = (name, want) => {
    throw new TypeError(`realtimeauth: option ${name}=${String(o[name])}: want ${want}`);
  };
  if (typeof opt.baseUrl !== "string" || !/^https?:\/\/[^/]+$/.test(opt.baseUrl.replace(/\/$/, ""))) {
    bad("baseUrl", 'an origin like "https://app.example.com" (no default outside a page)');
  }
  opt.baseUrl = opt.baseUrl.replace(/\/$/, "");
  if (typeof opt.basePath !== "string" || !opt.basePath.startsWith("/") || opt.basePath.endsWith("/")) {
    bad("basePath", 'a path like "/api/voice-agent"');
  }
  const num = (name, lo, hi) => {
    const v = opt[name];
    if (typeof v !== "number" || !(v >= lo && v <= hi)) bad(name, `a number in ${lo}..${hi}`);
  };
  num("refreshThresholdSeconds", 0, 86400);
  num("jitter", 0, 1);
  num("minValiditySeconds", 0, 3600);
  num("retryBaseMs", 1, 3600000);
  num("retryCapMs", opt.retryBaseMs, 3600000);
  num("maxAttempts", 1, 100);
  num("requestTimeoutMs", 1, 3600000);
  if (!["omit", "same-origin", "include"].includes(opt.credentials)) bad("credentials", '"omit", "same-origin" or "include"');
  if (typeof opt.enableAutoRefresh !== "boolean") bad("enableAutoRefresh", "true or false");
  return opt;
}

/**
 * TokenManager holds one token and its session, refreshing it before it
 * expires. Use getTokenManager() for the page-wide one, or construct your
 * own for an independent manager.
 */
export class TokenManager {
  #o;
  #listeners = new Map(EVENTS.map((e) => [e, new Set()]));
  #token = null; // { data, lifeMs, expiresMono }
  #sessionId = null;
  #inflight = null;
  #refreshTimer = null;
  #expiryTimer = null;
  #controllers = new Set();
  #sleeps = new Set();
  #destroyed = false;

  constructor(options = {}) {
    this.#o = resolveOptions(options);
  }

  /** on adds a listener for "tokenRefreshed", "tokenExpired" or "tokenError". */
  on(event, fn) {
    this.#alive();
    this.#listenerSet(event, fn).add(fn);
    return this;
  }

  /** off removes a listener added with on. */
  off(event, fn) {
    this.#alive();
    this.#listenerSet(event, fn).delete(fn);
    return this;
  }

  /**
   * requestToken resolves to a token valid for at least minValiditySeconds
   * (at most a quarter of its life): the current one, a refreshed one, or a
   * new session's. Concurrent calls share one request.
   */
  requestToken() {
    if (this.#destroyed) return Promise.reject(destroyedError());
    const t = this.#token;
    if (t && t.expiresMono - this.#o.clock.now() > this.#margin(t)) {
      return Promise.resolve({ ...t.data });
    }
    return this.#obtain();
  }

  /** getToken returns the current token's data, or null when there is none or it has expired. */
  getToken() {
    this.#alive();
    const t = this.#token;
    return t && t.expiresMono > this.#o.clock.now() ? { ...t.data } : null;
  }

  /** destroy cancels timers and requests and forgets the token; later calls throw. Idempotent. */
  destroy() {
    if (this.#destroyed) return;
    this.#destroyed = true;
    this.#clearTimers();
    for (const c of this.#controllers) c.abort();
    this.#controllers.clear();
    for (const s of this.#sleeps) s.cancel();
    this.#sleeps.clear();
    this.#token = null;
    this.#sessionId = null;
    for (const set of this.#listeners.values()) set.clear();
    if (singleton === this) singleton = null;
  }

  /** destroyed reports whether destroy was called. */
  get destroyed() {
    return this.#destroyed;
  }

  #alive() {
    if (this.#destroyed) throw destroyedError();
  }

  #listenerSet(event, fn) {
    const set = this.#listeners.get(event);
    if (!set) throw new TypeError(`realtimeauth: unknown event ${JSON.stringify(event)}; want one of ${EVENTS.join(", ")}`);
    if (typeof fn !== "function") throw new TypeError("realtimeauth: listener must be a function");
    return set;
  }

  #emit(event, arg) {
    for (const fn of [...this.#listeners.get(event)]) {
      try {
        fn(arg);
      } catch (err) {
        // A listener's bug must not break the manager; still show it.
        if (typeof globalThis.reportError === "function") globalThis.reportError(err);
        else globalThis.setTimeout(() => { throw err; });
      }
    }
  }

  #margin(t) {
    return Math.min(this.#o.minValiditySeconds * 1000, t.lifeMs / 4);
  }

  #obtain() {
    if (!this.#inflight) {
      this.#inflight = this.#run().finally(() => {
        this.#inflight = null;
      });
    }
    return this.#inflight;
  }

  // #run tries to get a token: refresh while there is a session, a new
  // session otherwise, with backoff between attempts.
  async #run() {
    const o = this.#o;
    let fellBack = false;
    for (let attempt = 1; ; attempt++) {
      const refresh = this.#sessionId !== null;
      let data;
      try {
        data = await this.#request(refresh, attempt);
      } catch (err) {
        if (this.#destroyed) throw destroyedError();
        this.#emit("tokenError", err);
        if (refresh && SESSION_GONE.has(err.code) && !fellBack) {
          // The session is over, not the client's right to one.
          fellBack = true;
          this.#sessionId = null;
          attempt--;
          continue;
        }
        if (!err.retryable || attempt >= o.maxAttempts) throw err;
        await this.#sleep(this.#backoff(attempt, err.retryAfter));
        continue;
      }
      return data;
    }
  }

  // #backoff is full jitter, unless the server said when to come back.
  #backoff(attempt, retryAfter) {
    const o = this.#o;
    if (retryAfter > 0) return retryAfter * 1000 + o.random() * o.retryBaseMs;
    return o.random() * Math.min(o.retryCapMs, o.retryBaseMs * 2 ** (attempt - 1));
  }

  #sleep(ms) {
    return new Promise((resolve, reject) => {
      const s = {
        id: this.#o.clock.setTimeout(() => {
          this.#sleeps.delete(s);
          resolve();
        }, ms),
        cancel: () => {
          this.#o.clock.clearTimeout(s.id);
          reject(destroyedError());
        },
      };
      this.#sleeps.add(s);
    });
  }

  async #request(refresh, attempt) {
    const o = this.#o;
    const path = refresh ? "/refresh-token" : "/token";
    const headers = { ...o.headers };
    let body;
    if (refresh) body = JSON.stringify({ sessionId: this.#sessionId });
    else if (o.tokenRequestBody !== undefined) body = JSON.stringify(o.tokenRequestBody);
    if (body !== undefined) headers["Content-Type"] = "application/json";

    const ctl = new AbortController();
    this.#controllers.add(ctl);
    let timedOut = false;
    const timer = o.clock.setTimeout(() => {
      timedOut = true;
      ctl.abort();
    }, o.requestTimeoutMs);
    // The token's life is counted from before the request was sent: the
    // server's clock read serverTime after that, so the local expiry is
    // never later than the real one, whatever the two clocks say.
    const sentAt = o.clock.now();
    let res, json;
    try {
      res = await o.fetch(o.baseUrl + o.basePath + path, {
        method: "POST",
        headers,
        body,
        credentials: o.credentials,
        cache: "no-store",
        signal: ctl.signal,
      });
      try {
        json = await res.json();
      } catch {
        json = undefined;
      }
    } catch (err) {
      if (this.#destroyed) throw destroyedError();
      if (timedOut) throw new TokenError(`no answer from ${path} within ${o.requestTimeoutMs} ms`, { code: "timeout", attempt, cause: err });
      throw new TokenError(`could not reach ${path}: ${err && err.message}`, { code: "network_error", attempt, cause: err });
    } finally {
      o.clock.clearTimeout(timer);
      this.#controllers.delete(ctl);
    }
    if (this.#destroyed) throw destroyedError();

    if (!res.ok || !json || json.success !== true) {
      const code = json && typeof json.code === "string" ? json.code : `http_${res.status}`;
      const msg = json && typeof json.error === "string" ? json.error : `HTTP ${res.status}`;
      throw new TokenError(`${path}: ${msg}`, {
        code,
        status: res.ok ? 502 : res.status,
        retryAfter: retryAfterSeconds(json, res),
        attempt,
      });
    }
    const remainingMs = typeof json.expiresAt === "number" && typeof json.serverTime === "number"
      ? json.expiresAt - json.serverTime
      : json.expiresIn * 1000;
    if (typeof json.token !== "string" || json.token === "" || typeof json.sessionId !== "string" ||
        !(remainingMs > 0)) {
      throw new TokenError(`${path}: malformed token answer`, { code: "bad_response", status: 502, attempt });
    }
    return this.#install(json, remainingMs, sentAt);
  }

  #install(json, remainingMs, sentAt) {
    const data = {
      token: json.token,
      expiresAt: Math.floor(sentAt + remainingMs), // on this page's clock
      expiresIn: Math.floor(remainingMs / 1000),
      sessionId: json.sessionId,
    };
    this.#sessionId = json.sessionId;
    this.#token = { data, lifeMs: remainingMs, expiresMono: sentAt + remainingMs };
    this.#schedule();
    this.#emit("tokenRefreshed", { ...data });
    return { ...data };
  }

  #clearTimers() {
    this.#o.clock.clearTimeout(this.#refreshTimer);
    this.#o.clock.clearTimeout(this.#expiryTimer);
    this.#refreshTimer = this.#expiryTimer = null;
  }

  // #schedule sets the expiry timer and, with auto-refresh, the refresh:
  // lead time before expiry, at most half the token's life, less up to
  // jitter×lead so that many clients spread out.
  #schedule() {
    const o = this.#o;
    const t = this.#token;
    this.#clearTimers();
    const now = o.clock.now();
    this.#expiryTimer = o.clock.setTimeout(() => this.#expire(t), Math.max(0, t.expiresMono - now));
    if (!o.enableAutoRefresh) return;
    const lead = Math.min(o.refreshThresholdSeconds * 1000, t.lifeMs / 2);
    const at = t.expiresMono - lead + o.random() * o.jitter * lead;
    this.#refreshTimer = o.clock.setTimeout(() => this.#autoRefresh(t), Math.max(0, at - now));
  }

  #autoRefresh(t) {
    this.#refreshTimer = null;
    if (this.#destroyed || this.#token !== t) return;
    this.#obtain().catch(() => {
      // Every attempt was reported as tokenError. Keep trying while the
      // token lives; its expiry timer reports the end.
      if (this.#destroyed || this.#token !== t) return;
      const left = t.expiresMono - this.#o.clock.now();
      if (left <= 0) return;
      const wait = Math.min(this.#o.retryCapMs, Math.max(this.#o.retryBaseMs, left / 2));
      this.#refreshTimer = this.#o.clock.setTimeout(() => this.#autoRefresh(t), wait);
    });
  }

  #expire(t) {
    this.#expiryTimer = null;
    if (this.#destroyed || this.#token !== t) return;
    this.#token = null;
    this.#o.clock.clearTimeout(this.#refreshTimer);
    this.#refreshTimer = null;
    this.#emit("tokenExpired", { sessionId: t.data.sessionId, expiredAt: t.data.expiresAt });
  }
}

function retryAfterSeconds(json, res) {
  if (json && typeof json.retryAfter === "number" && json.retryAfter >= 0) return json.retryAfter;
  const h = res.headers && res.headers.get ? res.headers.get("Retry-After") : null;
  if (!h) return undefined;
  if (/^\d+$/.test(h.trim())) return Number(h.trim());
  const when = Date.parse(h);
  return Number.isNaN(when) ? undefined : Math.max(0, Math.ceil((when - Date.now()) / 1000));
}

function destroyedError() {
  return new TokenError("realtimeauth: the token manager was destroyed", { code: "destroyed" });
}

let singleton = null;
let singletonOptions = null;

/**
 * getTokenManager returns the page's token manager, creating it on the
 * first call (as the original service's client did). A later call without
 * options, or with the same options, returns the same manager; a later
 * call with different options throws, since silently ignoring them would
 * hide a bug: destroy() the manager first, or construct a TokenManager.
 * After destroy(), the next call creates a new manager.
 */
export function getTokenManager(options) {
  if (singleton && !singleton.destroyed) {
    if (options !== undefined && !sameOptions(options, singletonOptions)) {
      throw new TokenError(
        "realtimeauth: getTokenManager was already called with other options; destroy() the manager first or use new TokenManager(options)",
        { code: "config_conflict" },
      );
    }
    return singleton;
  }
  singleton = new TokenManager(options ?? {});
  singletonOptions = { ...(options ?? {}) };
  return singleton;
}

function sameOptions(a, b) {
  const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
  for (const k of keys) {
    const x = a[k], y = b[k];
    if (x === y) continue;
    if (x && y && typeof x === "object" && typeof y === "object" && JSON.stringify(x) === JSON.stringify(y)) continue;
    return false;
  }
  return true;
}

/**
 * startCall makes a WebRTC call through the server's relay (POST
 * {basePath}/calls), so that no key ever reaches the page: it sets up an
 * RTCPeerConnection with the microphone (or options.stream) and the
 * "oai-events" data channel, posts the SDP offer, applies the server's
 * answer, and resolves to a RealtimeCall. call.destroy() hangs up (DELETE
 * {basePath}/calls/{callId}) and closes the connection. It rejects with a
 * TokenError: the server's code ("too_many_calls", "rate_limited",
 * "relay_unavailable" on a server without an OpenAI key, …) or the
 * client's ("network_error", "timeout", "bad_response").
 */
export async function startCall(options = {}) {
  const o = resolveOptions(options);
  const newPC = options.newPeerConnection ?? (() => new RTCPeerConnection());
  const pc = newPC();
  let stream = options.stream;
  const own = !stream;
  let callId = "";
  try {
    // The microphone is asked for once the server has placed the call, so
    // that a refused call (a cap, dev mode) prompts for nothing: the offer
    // carries an audio transceiver, whose track is set afterwards.
    const audioSender = pc.addTransceiver("audio", { direction: "sendrecv" }).sender;
    const audio = options.audioElement;
    if (audio) pc.ontrack = (e) => { audio.srcObject = e.streams[0]; };
    const dataChannel = pc.createDataChannel("oai-events");
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    const res = await callRequest(o, "POST", "/calls", {
      body: offer.sdp,
      headers: { ...o.headers, "Content-Type": "application/sdp" },
    });
    const loc = res.headers.get("Location");
    callId = loc ? loc.split("/").pop() : "";
    if (!callId) {
      throw new TokenError("/calls: the answer has no Location (is the server's CORS exposing it?)", { code: "bad_response", status: res.status });
    }
    await pc.setRemoteDescription({ type: "answer", sdp: await res.text() });
    if (own) stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    const track = stream.getAudioTracks()[0];
    if (track) await audioSender.replaceTrack(track);
    return new RealtimeCall(o, callId, pc, dataChannel, own ? stream : null);
  } catch (err) {
    if (callId) {
      // Placed, then failed here (the microphone refused): hang it up.
      callRequest(o, "DELETE", "/calls/" + encodeURIComponent(callId), { headers: { ...o.headers } }).catch(() => {});
    }
    pc.close();
    if (own && stream) for (const t of stream.getTracks()) t.stop();
    throw err;
  }
}

/** RealtimeCall is a live call made by startCall. */
export class RealtimeCall {
  #o;
  #stream;
  #ended = null;

  constructor(o, callId, peerConnection, dataChannel, ownStream) {
    this.#o = o;
    this.#stream = ownStream;
    /** The upstream's call ID ("rtc_…"). */
    this.callId = callId;
    this.peerConnection = peerConnection;
    /** The "oai-events" data channel: send and receive Realtime events on it. */
    this.dataChannel = dataChannel;
  }

  /** destroy hangs the call up on the server, then closes the connection and the microphone. Idempotent; a call the server no longer knows is not an error. */
  destroy() {
    if (!this.#ended) {
      this.#ended = callRequest(this.#o, "DELETE", "/calls/" + encodeURIComponent(this.callId), { headers: { ...this.#o.headers } })
        .catch((err) => {
          if (err.code !== "call_not_found") throw err;
        })
        .finally(() => {
          this.peerConnection.close();
          if (this.#stream) for (const t of this.#stream.getTracks()) t.stop();
        });
    }
    return this.#ended;
  }
}

// callRequest makes one request of the relay within requestTimeoutMs and
// returns the answer, or throws a TokenError with the server's code.
async function callRequest(o, method, path, { body, headers }) {
  const ctl = new AbortController();
  let timedOut = false;
  const timer = o.clock.setTimeout(() => {
    timedOut = true;
    ctl.abort();
  }, o.requestTimeoutMs);
  let res;
  try {
    res = await o.fetch(o.baseUrl + o.basePath + path, { method, headers, body, credentials: o.credentials, cache: "no-store", signal: ctl.signal });
  } catch (err) {
    if (timedOut) throw new TokenError(`no answer from ${path} within ${o.requestTimeoutMs} ms`, { code: "timeout", cause: err });
    throw new TokenError(`could not reach ${path}: ${err && err.message}`, { code: "network_error", cause: err });
  } finally {
    o.clock.clearTimeout(timer);
  }
  if (res.ok) return res;
  let json;
  try {
    json = await res.json();
  } catch {
    json = undefined;
  }
  const code = json && typeof json.code === "string" ? json.code : `http_${res.status}`;
  const msg = json && typeof json.error === "string" ? json.error : `HTTP ${res.status}`;
  throw new TokenError(`${path}: ${msg}`, { code, status: res.status, retryAfter: retryAfterSeconds(json, res) });
}
