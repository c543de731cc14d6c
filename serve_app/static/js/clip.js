/* citysight operations map — The evidence clip of the alert detail: the face-blurred MP4,
   fetched with the bearer token into a blob URL (like the snapshot), the snapshot as its
   poster while the clip is still being written. */

import { api, fmtTime, state, t, tid } from "./core.js";

const POLL_MS = 2000;
const POLL_MAX = 300; // ~10 minutes of "pending" / "redacting" before giving up
let clipUrl = null;
let timer = null;

/** Forget the clip on screen (closing or switching alerts). */
export function resetClip() {
  if (timer) { clearTimeout(timer); timer = null; }
  const video = tid("clip-video");
  if (video) { video.pause(); video.removeAttribute("src"); video.removeAttribute("poster"); video.load(); }
  if (clipUrl) { URL.revokeObjectURL(clipUrl); clipUrl = null; }
}

/** Show alert ``a``'s clip; polls while it is being written. */
export async function loadClip(a, attempt = 0) {
  if (attempt === 0) resetClip();
  const panel = tid("clip");
  const video = tid("clip-video");
  const msg = tid("clip-msg");
  if (!panel || state.selected !== a.id) return;
  panel.hidden = false;
  panel.dataset.state = "loading";
  if (attempt === 0) msg.textContent = t("clip.loading");
  try {
    const res = await api(`/api/alerts/${encodeURIComponent(a.id)}/clip`, { raw: true });
    if (state.selected !== a.id) return;
    if (res.status === 202) {
      const body = await res.json();
      const redacting = body.clip && body.clip.state === "redacting";
      panel.dataset.state = redacting ? "redacting" : "pending";
      msg.textContent = t(redacting ? "clip.redacting" : "clip.pending");
      if (state.evidenceUrl) video.poster = state.evidenceUrl; // the snapshot meanwhile
      video.hidden = !state.evidenceUrl;
      if (attempt >= POLL_MAX) { msg.textContent = t("clip.gave_up"); return; }
      const wait = Math.max(POLL_MS, 1000 * Number(res.headers.get("Retry-After") || 0));
      timer = setTimeout(() => loadClip(a, attempt + 1), wait);
      return body;
    }
    const blob = await res.blob();
    if (state.selected !== a.id) return;
    clipUrl = URL.createObjectURL(blob);
    video.src = clipUrl;
    video.hidden = false;
    panel.dataset.state = "ready";
    // The record on the alert names the clip's real span (it starts at a keyframe).
    let clip = a.clip && a.clip.start_at ? a.clip : null;
    if (!clip) {
      try { clip = (await api(`/api/alerts/${encodeURIComponent(a.id)}`)).clip; } catch (_) { clip = null; }
    }
    if (state.selected !== a.id) return;
    if (clip && clip.start_at) {
      // Unix seconds, shown in the site's zone with its label (e.g. "14:03:22 UTC+8").
      msg.textContent = t("clip.ready", { from: fmtTime(clip.start_at), to: fmtTime(clip.start_at + clip.duration_s) });
    } else {
      msg.textContent = t("clip.ready", { from: "", to: "" });
    }
  } catch (err) {
    if (state.selected !== a.id) return;
    panel.dataset.state = "none";
    video.hidden = true;
    if (err.status === 503) msg.textContent = t("clip.redaction");
    else if (err.status === 404) msg.textContent = t("clip.none", { reason: err.message.replace(/^404: /, "") });
    else msg.textContent = t("clip.error", { reason: err.message });
  }
}
