// The demo page's script. By default it calls through the server's relay
// (startCall: no key ever reaches the page); with ?via=token it gets an
// ephemeral key from the token manager and calls OpenAI with it. In dev
// mode (no OPENAI_API_KEY) the relay answers 501 relay_unavailable, and the
// page shows the token manager at work with fake tokens instead.
import { getTokenManager, startCall as startRelayCall } from "/api/voice-agent/client.js";

const DEV_PREFIX = "ek_dev_";
const $ = (id) => document.getElementById(id);
const ui = {
  connect: $("connect"), disconnect: $("disconnect"), status: $("status"), token: $("token"),
  remaining: $("remaining"), bar: $("bar"), session: $("session"), refreshes: $("refreshes"),
  note: $("note"), events: $("events"), call: $("call"),
};
const viaToken = new URLSearchParams(location.search).get("via") === "token";

let manager = null;
let call = null; // { pc, mic } for a direct call
let relayCall = null; // a RealtimeCall
let current = null; // TokenData
let refreshes = 0;
let lastError = null; // the manager's last tokenError

function setStatus(state, text) {
  ui.status.dataset.state = state;
  ui.status.textContent = text;
}

function note(text) {
  ui.note.hidden = !text;
  ui.note.textContent = text || "";
}

function logEvent(name, detail) {
  const li = document.createElement("li");
  li.dataset.event = name;
  li.textContent = `${new Date().toLocaleTimeString()} ${name}${detail ? " " + detail : ""}`;
  ui.events.prepend(li);
}

// Only a prefix of the token is shown: enough to see it change.
const shortToken = (t) => t.slice(0, t.startsWith(DEV_PREFIX) ? 12 : 8) + "…";

function showToken(t) {
  current = t;
  ui.token.textContent = t ? shortToken(t.token) : "—";
  ui.session.textContent = t ? t.sessionId : "—";
}

function tick() {
  if (current) {
    const left = Math.max(0, current.expiresAt - Date.now());
    ui.remaining.textContent = (left / 1000).toFixed(1) + " s";
    ui.bar.style.width = Math.min(100, (100 * left) / (current.expiresIn * 1000)) + "%";
  } else {
    ui.remaining.textContent = "—";
    ui.bar.style.width = "0";
  }
  requestAnimationFrame(tick);
}

function newManager() {
  const m = getTokenManager({ refreshThresholdSeconds: 30, enableAutoRefresh: true });
  m.on("tokenRefreshed", (t) => {
    lastError = null;
    const first = !current || current.sessionId !== t.sessionId;
    if (!first) ui.refreshes.textContent = String(++refreshes);
    showToken(t);
    logEvent("tokenRefreshed", `${first ? "new session" : "refresh"}, expires in ${t.expiresIn} s`);
  });
  m.on("tokenExpired", () => {
    showToken(null);
    logEvent("tokenExpired", "the token ran out with no replacement");
    // A server that answered and refused is not one that could not be reached.
    setStatus("expired", lastError && lastError.status
      ? `token expired: the server refused a new one (${lastError.code}, ${lastError.status})`
      : "token expired: the server could not be reached in time");
    ui.connect.disabled = false;
  });
  m.on("tokenError", (e) => {
    lastError = e;
    logEvent("tokenError", `${e.code}${e.status ? " (" + e.status + ")" : ""}, attempt ${e.attempt}` +
      (e.retryAfter ? `, retry after ${e.retryAfter} s` : ""));
  });
  return m;
}

async function connect() {
  ui.connect.disabled = true;
  ui.disconnect.disabled = false;
  note("");
  if (!viaToken) {
    const done = await connectThroughRelay();
    if (done) return;
  }
  setStatus("connecting", "getting a token…");
  manager ??= newManager();
  let t;
  try {
    t = await manager.requestToken();
  } catch (e) {
    if (e.code === "destroyed") return;
    setStatus("error", `no token: ${e.message}`);
    ui.connect.disabled = false;
    return;
  }
  if (t.token.startsWith(DEV_PREFIX)) {
    setStatus("token", "token obtained (dev mode)");
    note((viaToken ? "" : "The relay answered 501 relay_unavailable: in dev mode no upstream can answer the " +
      "browser's WebRTC offer, so the page shows the token flow instead. ") +
      "Dev mode: the server has no OPENAI_API_KEY, so its tokens (" + DEV_PREFIX +
      "…) are fake and OpenAI would refuse them. The page stops here, but keeps the token " +
      "fresh so you can watch it refresh. Set OPENAI_API_KEY and restart the server to talk.");
    return;
  }
  try {
    setStatus("connecting", "asking for the microphone…");
    call = await startDirectCall(t.token);
    setStatus("connected", "connected to OpenAI: speak");
  } catch (e) {
    hangUp();
    setStatus("error", `WebRTC failed: ${e.message}`);
    ui.connect.disabled = false;
  }
}

// connectThroughRelay calls through the server (POST /api/voice-agent/calls):
// the server adds its session and key and relays the offer to OpenAI. It
// reports whether the page is done (connected, or failed for good); false
// means dev mode, where the page goes on with the token flow.
async function connectThroughRelay() {
  setStatus("connecting", "calling through the server's relay…");
  const audio = new Audio();
  audio.autoplay = true;
  try {
    relayCall = await startRelayCall({ audioElement: audio });
  } catch (e) {
    relayCall = null;
    if (e.code === "relay_unavailable") {
      logEvent("relay", "501 relay_unavailable: dev mode");
      return false;
    }
    setStatus("error", `relay call failed: ${e.code}${e.status ? " (" + e.status + ")" : ""}`);
    ui.connect.disabled = false;
    return true;
  }
  ui.call.textContent = relayCall.callId;
  logEvent("call", `placed through the relay: ${relayCall.callId}`);
  relayCall.dataChannel.onmessage = (e) => {
    try {
      logEvent("openai", JSON.parse(e.data).type);
    } catch { /* not JSON */ }
  };
  relayCall.peerConnection.onconnectionstatechange = () => {
    const s = relayCall && relayCall.peerConnection.connectionState;
    if (s === "failed" || s === "disconnected") setStatus("error", `WebRTC ${s}`);
  };
  setStatus("connected", "connected through the relay: speak");
  return true;
}

// startDirectCall opens the WebRTC session with OpenAI itself: the key is
// needed only to set it up; the manager keeps a fresh one for the next call.
async function startDirectCall(token) {
  const pc = new RTCPeerConnection();
  const c = { pc, mic: null };
  try {
    const audio = new Audio();
    audio.autoplay = true;
    pc.ontrack = (e) => { audio.srcObject = e.streams[0]; };
    c.mic = await navigator.mediaDevices.getUserMedia({ audio: true });
    for (const track of c.mic.getTracks()) pc.addTrack(track, c.mic);
    const events = pc.createDataChannel("oai-events");
    events.onmessage = (e) => {
      try {
        logEvent("openai", JSON.parse(e.data).type);
      } catch { /* not JSON */ }
    };
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === "failed" || pc.connectionState === "disconnected") {
        setStatus("error", `WebRTC ${pc.connectionState}`);
      }
    };
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    const res = await fetch("https://api.openai.com/v1/realtime/calls", {
      method: "POST",
      body: offer.sdp,
      headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/sdp" },
    });
    if (!res.ok) throw new Error(`OpenAI answered ${res.status}`);
    await pc.setRemoteDescription({ type: "answer", sdp: await res.text() });
    return c;
  } catch (e) {
    pc.close();
    if (c.mic) for (const track of c.mic.getTracks()) track.stop();
    throw e;
  }
}

function hangUp() {
  if (relayCall) {
    const c = relayCall;
    relayCall = null;
    c.destroy().then(
      () => logEvent("call", `hung up: ${c.callId}`),
      (e) => logEvent("call", `hang-up failed: ${e.code}`),
    );
    ui.call.textContent = "—";
  }
  if (!call) return;
  call.pc.close();
  if (call.mic) for (const track of call.mic.getTracks()) track.stop();
  call = null;
}

function disconnect() {
  hangUp();
  if (manager) manager.destroy();
  manager = null;
  showToken(null);
  refreshes = 0;
  ui.refreshes.textContent = "0";
  note("");
  setStatus("disconnected", "disconnected");
  logEvent("disconnected", "token manager destroyed");
  ui.connect.disabled = false;
  ui.disconnect.disabled = true;
}

ui.connect.addEventListener("click", connect);
ui.disconnect.addEventListener("click", disconnect);
ui.connect.disabled = false;
setStatus("disconnected", "disconnected: press Connect");
requestAnimationFrame(tick);
