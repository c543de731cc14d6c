/* citysight operations map — Live view of a camera in its popup: fragmented MP4 over a
   WebSocket (WS /ws/live/{id}) played through Media Source Extensions. */

import { api, t } from "./core.js";

// Close codes of WS /ws/live (serve_app/api/live.py) worth telling the user about.
const CLOSE_KEYS = {
  4008: "live.close_slow",
  4401: "live.close_expired",
  4403: "live.close_forbidden",
  4404: "live.close_not_found",
  4429: "live.close_camera_cap",
  4501: "live.close_unavailable",
  4503: "live.close_capacity",
  4504: "live.close_no_video",
};

/** A live-view panel for ``cam`` (a button; the player appears when pressed). */
export function livePanel(cam) {
  const el = document.createElement("div");
  el.className = "live-panel";
  el.dataset.testid = "live-panel";
  const btn = document.createElement("button");
  btn.type = "button";
  btn.dataset.testid = "live-button";
  btn.textContent = t("live.watch");
  const status = document.createElement("div");
  status.className = "live-status";
  status.dataset.testid = "live-status";
  el.append(btn, status);
  let player = null;
  btn.addEventListener("click", () => {
    if (player) { player.stop(); player = null; btn.textContent = t("live.watch"); return; }
    player = startLive(cam, el, status);
    btn.textContent = t("live.stop");
  });
  return el;
}

function startLive(cam, el, status) {
  const video = document.createElement("video");
  video.muted = true; video.autoplay = true; video.playsInline = true;
  video.dataset.testid = "live-video";
  video.className = "live-video";
  el.insertBefore(video, el.firstChild);
  status.textContent = t("live.connecting");
  let ws = null;
  let ms = null;
  let sb = null;
  let queue = [];
  let stopped = false;
  // Stop when the popup closes (the panel leaves the document).
  const watch = setInterval(() => { if (!el.isConnected) stop(); }, 1000);

  function pump() {
    if (!sb || sb.updating || !queue.length) return;
    try {
      sb.appendBuffer(queue.shift());
    } catch (err) {
      if (err.name === "QuotaExceededError") { trim(true); return; }
      status.textContent = t("live.failed");
      stop();
    }
  }

  function trim(force) {
    if (!sb || sb.updating || !video.buffered.length) return;
    const start = video.buffered.start(0);
    const keep = force ? 2 : 20;
    if (video.currentTime - start > keep) sb.remove(start, video.currentTime - keep / 2);
  }

  function chaseLiveEdge() {
    // Stay near the newest frame: the fast start replays the last GOP, and a stall in the
    // network must not leave the picture behind for good.
    const b = video.buffered;
    if (!b.length) return;
    const end = b.end(b.length - 1);
    if (end - video.currentTime > 1.0) video.currentTime = Math.max(b.start(b.length - 1), end - 0.2);
    if (video.paused) video.play().catch(() => {});
  }

  function reset(mime) {
    if (!window.MediaSource || !MediaSource.isTypeSupported(mime)) {
      status.textContent = t("live.unsupported");
      stop();
      return;
    }
    queue = [];
    sb = null;
    ms = new MediaSource();
    video.src = URL.createObjectURL(ms);
    ms.addEventListener("sourceopen", () => {
      sb = ms.addSourceBuffer(mime);
      sb.mode = "segments";
      sb.addEventListener("updateend", () => { chaseLiveEdge(); trim(false); pump(); });
      pump();
    }, { once: true });
  }

  async function open() {
    let ticket;
    try {
      ticket = (await api("/api/ws-tickets", { method: "POST" })).ticket;
    } catch (err) {
      status.textContent = t("live.failed");
      return;
    }
    if (stopped) return;
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    ws = new WebSocket(`${proto}//${location.host}${cam.live_url}`, ["citysight-v1", `ticket.${ticket}`]);
    ws.binaryType = "arraybuffer";
    ws.onmessage = (ev) => {
      if (typeof ev.data === "string") {
        const msg = JSON.parse(ev.data);
        if (msg.type === "init") {
          reset(msg.mime);
          status.textContent = t("live.playing");
          status.dataset.state = "playing";
        }
        return;
      }
      queue.push(ev.data);
      if (queue.length > 300) queue.splice(0, queue.length - 300);
      pump();
    };
    ws.onclose = (ev) => {
      if (stopped) return;
      status.textContent = CLOSE_KEYS[ev.code] ? t(CLOSE_KEYS[ev.code]) : t("live.ended");
      status.title = ev.reason || "";
      status.dataset.closeCode = String(ev.code);
      status.dataset.state = "closed";
    };
  }

  function stop() {
    stopped = true;
    clearInterval(watch);
    if (ws && ws.readyState <= 1) ws.close(1000);
    ws = null;
    if (video.src) URL.revokeObjectURL(video.src);
    video.remove();
  }

  open();
  return { stop, video };
}
