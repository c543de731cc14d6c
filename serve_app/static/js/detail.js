/* citysight operations map — The alert detail panel: snapshot with boxes, unredacted reveal, timeline, actions. */

import { alertDepartments, alertTitle, upsertAlert } from "./alerts.js";
import {
  $, NEXT_ACTIONS, api, departmentName, fmtDateTime, fmtTime, hasScope, kindIcon, state, t, tEnum, tid,
} from "./core.js";
import { showCamera } from "./map.js";
import { decorateEvent } from "./timeline_extras.js";

// -- alert detail ------------------------------------------------------------------------

export async function openAlert(id) {
  state.selected = id;
  const entry = state.alerts.get(id);
  for (const li of document.querySelectorAll(".alert-item.selected")) li.classList.remove("selected");
  if (entry) entry.li.classList.add("selected");
  tid("alert-detail").hidden = false;
  tid("alert-detail").dataset.alertId = id;
  document.body.dataset.detail = "open";  // the phone layout shows the detail sheet
  tid("action-error").textContent = "";
  tid("alert-timeline").innerHTML = "";
  let a = entry && entry.alert;
  try {
    a = await api(`/api/alerts/${encodeURIComponent(id)}`);
    upsertAlert(a);
  } catch (err) {
    if (!a) { tid("detail-title").textContent = t("detail.unavailable", { error: err.status || err.message }); return; }
  }
  if (state.selected !== id) return;
  renderDetail(a);
  if (entry && entry.marker && state.map) state.map.panTo(entry.marker.getLatLng());
  loadEvidence(a, false);
  try {
    const events = await api(`/api/alerts/${encodeURIComponent(id)}/events`);
    if (state.selected !== id) return;
    tid("alert-timeline").innerHTML = "";
    for (const ev of (Array.isArray(events) ? events : events.events || [])) appendTimeline(ev);
  } catch (err) { /* timeline stays empty */ }
}

export function renderDetail(a) {
  const panel = tid("alert-detail");
  panel.dataset.state = a.state;
  $("[data-role=icon]", panel).innerHTML = kindIcon(a.kind);
  $("[data-role=icon]", panel).className = `kind-icon kind-${a.kind}`;
  tid("detail-title").textContent = alertTitle(a);
  tid("detail-state").textContent = tEnum("state", a.state);
  tid("detail-severity").textContent = a.escalated
    ? t("detail.severity_escalated", { severity: tEnum("severity", a.severity) }) : tEnum("severity", a.severity);
  tid("detail-department").textContent = alertDepartments(a).map(departmentName).join(" + ");
  tid("detail-summary").textContent = a.summary || "—";
  const cams = (a.camera_ids && a.camera_ids.length > 1) ? a.camera_ids.join(", ") : a.camera_id;
  const camName = state.cameras.get(a.camera_id);
  tid("detail-camera").textContent = camName && camName.cam.name ? `${camName.cam.name} (${cams})` : cams;
  tid("detail-camera").onclick = () => showCamera(a.camera_id);
  tid("detail-started").textContent = fmtDateTime(a.started_at);
  tid("detail-unit").textContent = a.assigned_unit || "—";
  tid("detail-outcome").textContent = a.outcome ? tEnum("outcome", a.outcome) : "—";
  const canDispatch = hasScope("alerts:dispatch");
  tid("actions").hidden = !canDispatch;
  const next = new Set(NEXT_ACTIONS[a.state] || []);
  for (const btn of tid("actions").querySelectorAll("button[data-to]")) {
    btn.disabled = !next.has(btn.dataset.to);
  }
  tid("reveal-form").hidden = !hasScope("evidence:unredacted") || !(a.evidence && a.evidence.length);
}

export function appendTimeline(ev) {
  const ol = tid("alert-timeline");
  const key = `${ev.seq}`;
  if (ol.querySelector(`[data-seq="${key}"]`)) return;
  const li = document.createElement("li");
  li.dataset.seq = key;
  li.dataset.testid = "timeline-event";
  li.dataset.toState = ev.to_state;
  const extra = [ev.unit && t("timeline.unit", { unit: ev.unit }),
    ev.outcome && t("timeline.outcome", { outcome: tEnum("outcome", ev.outcome) }), ev.note].filter(Boolean).join(" · ");
  li.innerHTML = "<time></time> <b></b> <span class='by'></span><div class='x'></div>";
  $("time", li).textContent = fmtTime(ev.at);
  $("b", li).textContent = `${ev.from_state ? tEnum("state", ev.from_state) : "—"} → ${tEnum("state", ev.to_state)}`;
  $(".by", li).textContent = t("timeline.by", { actor: ev.actor });
  $(".x", li).textContent = extra;
  decorateEvent(li, ev);
  // Keep sequence order even when a live event overtakes the initial fetch.
  const after = [...ol.children].find((x) => Number(x.dataset.seq) > Number(ev.seq));
  ol.insertBefore(li, after || null);
}

export async function loadEvidence(a, unredacted, reason = "") {
  const img = tid("snapshot-img");
  const msg = tid("snapshot-msg");
  const svg = tid("snapshot-boxes");
  svg.innerHTML = "";
  if (state.evidenceUrl) { URL.revokeObjectURL(state.evidenceUrl); state.evidenceUrl = null; }
  img.hidden = true;
  if (!a.evidence || !a.evidence.length) { msg.textContent = t("snapshot.none"); return; }
  msg.textContent = t("snapshot.loading");
  // The reason of an unredacted view goes in a POST body, never in the URL (logs keep URLs).
  const base = `/api/alerts/${encodeURIComponent(a.id)}/evidence`;
  try {
    const res = unredacted
      ? await api(`${base}/unredacted`, { method: "POST", json: { reason }, raw: true })
      : await api(base, { raw: true });
    const blob = await res.blob();
    if (state.selected !== a.id) return;
    state.evidenceUrl = URL.createObjectURL(blob);
    img.onload = () => {
      const w = img.naturalWidth, h = img.naturalHeight;
      svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
      svg.setAttribute("preserveAspectRatio", "none");
      const ref = a.evidence[0];
      for (const b of ref.boxes || []) {
        const r = document.createElementNS("http://www.w3.org/2000/svg", "rect");
        r.setAttribute("x", b[0]); r.setAttribute("y", b[1]);
        r.setAttribute("width", Math.max(1, b[2] - b[0])); r.setAttribute("height", Math.max(1, b[3] - b[1]));
        r.setAttribute("vector-effect", "non-scaling-stroke");
        svg.appendChild(r);
      }
      msg.textContent = unredacted ? t("snapshot.unredacted") : t("snapshot.redacted");
      tid("snapshot").dataset.unredacted = String(unredacted);
    };
    img.src = state.evidenceUrl;
    img.hidden = false;
  } catch (err) {
    msg.textContent = err.status === 404 ? t("snapshot.missing") : t("snapshot.unavailable", { error: err.message });
  }
}

/** Re-render the open detail (and its timeline) after a language change. */
export function rerenderDetail() {
  const entry = state.selected && state.alerts.get(state.selected);
  if (entry) openAlert(state.selected);
}

export function setupDetail() {
  tid("detail-close").addEventListener("click", () => {
    state.selected = null;
    tid("alert-detail").hidden = true;
    document.body.dataset.detail = "closed";
    for (const li of document.querySelectorAll(".alert-item.selected")) li.classList.remove("selected");
  });
  tid("actions").addEventListener("click", async (ev) => {
    const btn = ev.target.closest("button[data-to]");
    if (!btn || !state.selected) return;
    const id = state.selected;
    const to = btn.dataset.to;
    const body = { to };
    const note = tid("note-input").value.trim();
    if (note) body.note = note;
    if (to === "assigned") {
      const unit = tid("unit-input").value.trim();
      if (!unit) { tid("action-error").textContent = t("action.unit_required"); return; }
      body.unit = unit;
    }
    if (to === "resolved") body.outcome = tid("outcome-select").value;
    tid("action-error").textContent = "";
    btn.disabled = true;
    try {
      const a = await api(`/api/alerts/${encodeURIComponent(id)}/transitions`, { method: "POST", json: body });
      if (a && a.id) upsertAlert(a.alert || a);
      else if (a && a.alert) upsertAlert(a.alert);
      tid("note-input").value = "";
      const events = await api(`/api/alerts/${encodeURIComponent(id)}/events`);
      for (const e of (Array.isArray(events) ? events : events.events || [])) appendTimeline(e);
    } catch (err) {
      tid("action-error").textContent = err.status === 409
        ? t("action.conflict", { error: err.message }) : t("action.failed", { error: err.message });
      const entry = state.alerts.get(id);
      if (entry) renderDetail(entry.alert);
    }
  });
  tid("reveal-unredacted").addEventListener("click", () => {
    $(".reveal-reason", tid("reveal-form")).hidden = false;
    tid("reveal-reason").focus();
  });
  tid("reveal-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const reason = tid("reveal-reason").value.trim();
    const entry = state.alerts.get(state.selected);
    if (!reason || !entry) return;
    $(".reveal-reason", tid("reveal-form")).hidden = true;
    tid("reveal-reason").value = "";
    loadEvidence(entry.alert, true, reason);
  });
}
