/* citysight operations map — The WebSocket feed: ticket, resume by last_id, reconnect with backoff, batched apply. */

import { updateCounts, upsertAlert } from "./alerts.js";
import { api, logout, state, t, tid } from "./core.js";
import { appendTimeline } from "./detail.js";
import { flushClusterRefresh, removeCamera, setCameraHealth } from "./map.js";

// -- WebSocket ---------------------------------------------------------------------------

export function setWsStatus(s) {
  const el = tid("ws-status");
  el.dataset.state = s;
  el.textContent = t(`ws.${s}`);
}

/** Re-label the connection state after a language change. */
export function rerenderWsStatus() {
  setWsStatus(tid("ws-status").dataset.state || "offline");
}

export async function connectWs() {
  clearTimeout(state.wsTimer);
  setWsStatus("connecting");
  let ticket;
  try {
    ticket = (await api("/api/ws-tickets", { method: "POST" })).ticket;
  } catch (err) {
    if (err.status === 401) return logout();
    return scheduleReconnect();
  }
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  // The one-time ticket rides in the Sec-WebSocket-Protocol header, not the URL: URLs end
  // up in proxy and access logs.
  let url = `${proto}//${location.host}/ws`;
  if (state.lastId) url += `?last_id=${encodeURIComponent(state.lastId)}`;
  const ws = new WebSocket(url, ["citysight-v1", `ticket.${ticket}`]);
  state.ws = ws;
  let lastSeen = Date.now();
  const watchdog = setInterval(() => {
    // Heartbeats arrive every few seconds; silence means a dead connection.
    if (Date.now() - lastSeen > 45000) ws.close();
  }, 5000);
  ws.onopen = () => { setWsStatus("live"); state.wsBackoffMs = 500; };
  ws.onmessage = (ev) => {
    lastSeen = Date.now();
    let msg;
    try { msg = JSON.parse(ev.data); } catch (_) { return; }
    if (msg.type === "heartbeat") return;
    if (msg.id) state.lastId = msg.id;
    state.pending.push(msg);
    scheduleFlush();
  };
  ws.onclose = () => {
    clearInterval(watchdog);
    if (state.ws === ws) { state.ws = null; setWsStatus("reconnecting"); scheduleReconnect(); }
  };
}

export function scheduleReconnect() {
  clearTimeout(state.wsTimer);
  state.wsTimer = setTimeout(connectWs, state.wsBackoffMs);
  state.wsBackoffMs = Math.min(state.wsBackoffMs * 2, 15000);
}

export function scheduleFlush() {
  if (state.flushScheduled) return;
  state.flushScheduled = true;
  // rAF batches bursts into one DOM pass; the timeout covers hidden tabs (rAF paused).
  const run = () => { if (state.flushScheduled) flush(); };
  requestAnimationFrame(run);
  setTimeout(run, 250);
}

export function flush() {
  state.flushScheduled = false;
  const msgs = state.pending;
  state.pending = [];
  for (const msg of msgs) {
    try { handleMessage(msg); } catch (err) { console.error("message", msg, err); }
  }
  flushClusterRefresh();
  updateCounts();
  document.body.dataset.applied = String(Number(document.body.dataset.applied || 0) + msgs.length);
}

export function handleMessage(msg) {
  if (msg.type === "alert") {
    upsertAlert(msg.alert, { live: true });
  } else if (msg.type === "alert_event") {
    if (msg.alert) upsertAlert(msg.alert, { live: true });
    const ev = msg.event;
    if (ev && state.selected === ev.alert_id) {
      appendTimeline(ev);
      if (!msg.alert) api(`/api/alerts/${encodeURIComponent(ev.alert_id)}`).then((a) => upsertAlert(a)).catch(() => {});
    } else if (ev && !msg.alert && state.alerts.has(ev.alert_id)) {
      const a = Object.assign({}, state.alerts.get(ev.alert_id).alert, { state: ev.to_state, updated_at: ev.at });
      if (ev.unit) a.assigned_unit = ev.unit;
      if (ev.outcome) a.outcome = ev.outcome;
      upsertAlert(a);
    }
  } else if (msg.type === "camera_status") {
    const st = msg.camera_status || msg.status || msg.camera || msg.payload || {};
    if (st.camera_id) setCameraHealth(st.camera_id, Object.assign({}, st, { last_frame_age_s: st.last_frame_age_s }));
  } else if (msg.type === "camera_removed") {
    if (msg.camera_id) removeCamera(msg.camera_id);
  }
}
