// Runs before the page's module. When the client module cannot load, most
// often because this page's origin is not in the server's ALLOWED_ORIGINS
// (the handler then refuses the script), the page says so instead of
// staying at "loading the client…".
"use strict";
window.addEventListener("error", async (e) => {
  const el = e.target;
  if (!(el instanceof HTMLScriptElement) || el.type !== "module") return;
  const status = document.getElementById("status");
  const note = document.getElementById("note");
  const say = (state, text, detail) => {
    status.dataset.state = state;
    status.textContent = text;
    note.hidden = !detail;
    note.textContent = detail || "";
  };
  try {
    const res = await fetch("/demo/origin", { method: "POST" }); // a POST carries Origin
    const o = await res.json();
    if (!o.allowed) {
      const open = (o.allowedOrigins || []).filter((a) => !a.includes("*")).map((a) => a + "/");
      say("refused", `this page's origin (${o.origin || location.origin}) is not allowed: the server refused the client`,
        `The server's ALLOWED_ORIGINS does not list ${o.origin || location.origin}, so it refuses this page ` +
        "its client module and would refuse its token requests too. " +
        (open.length ? `Open ${open.join(" or ")} instead, or add` : "Add") +
        ` ${o.origin || location.origin} to ALLOWED_ORIGINS and restart the server.`);
      return;
    }
    say("error", "the client module did not load", "The server allows this origin, so see the browser console and the server log.");
  } catch (err) {
    say("error", "the client module did not load, and the server could not be asked why", String(err));
  }
}, true);
