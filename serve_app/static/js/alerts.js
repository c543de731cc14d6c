/* citysight operations map — Alert list and alert markers: sorted in place, filtered, one marker per incident; sound. */

import {
  OPEN_STATES, PANES, SEVERITY_RANK, departmentName, fmtTime, kindIcon, kindIconNode, state, t, tEnum, tid,
} from "./core.js";
import { openAlert, renderDetail } from "./detail.js";

// On a phone (the layout's breakpoint) alert icons are finger-sized: 44 px, not 28.
const PHONE = typeof matchMedia === "function" && matchMedia("(max-width: 700px)").matches;

export function alertIcon(a) {
  const size = PHONE ? 44 : 28;
  return L.divIcon({
    className: alertMarkerClass(a),
    html: kindIcon(a.kind),
    iconSize: [size, size],
    // Drawn above its camera, pointing down at it (bottom edge 10 px above the point, clear
    // of the 14 px camera dot): the camera's health dot stays visible and clickable.
    iconAnchor: [size / 2, size + 10],
  });
}

/** Negative when a sorts before b: severity first, then newest first, then id. */
export function compareAlerts(a, b) {
  const s = (SEVERITY_RANK[b.severity] || 0) - (SEVERITY_RANK[a.severity] || 0);
  if (s) return s;
  const t = Date.parse(b.started_at) - Date.parse(a.started_at);
  if (t) return t;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

export function orderIndex(alert) {
  // Binary search of the insertion point in state.order.
  let lo = 0, hi = state.order.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (compareAlerts(state.alerts.get(state.order[mid]).alert, alert) < 0) lo = mid + 1; else hi = mid;
  }
  return lo;
}

export function matchesFilters(a) {
  const f = state.filters;
  if (f.kind && a.kind !== f.kind) return false;
  if (f.department && !alertDepartments(a).includes(f.department)) return false;
  if (f.state === "open") return OPEN_STATES.has(a.state);
  if (f.state && a.state !== f.state) return false;
  return true;
}

/** The owning department, then those the alert was escalated to (escalation only adds). */
export function alertDepartments(a) {
  return [a.department, ...(a.escalated_to || []).filter((d) => d !== a.department)];
}

export const ITEM_TEMPLATE = document.createElement("template");
ITEM_TEMPLATE.innerHTML = `<li data-testid="alert-item"><span class="kind-icon"></span>
  <span class="body"><span class="t"></span><span class="s"></span></span>
  <span class="badge" data-testid="alert-state"></span></li>`;

export function newItem(a) {
  const li = ITEM_TEMPLATE.content.firstElementChild.cloneNode(true);
  li.dataset.alertId = a.id;
  li._parts = { icon: li.children[0], t: li.children[1].children[0], s: li.children[1].children[1], badge: li.children[2] };
  return li;
}

/** Update one list item in place (only the fields that changed touch the DOM). */
export function renderItem(li, a, prev) {
  const p = li._parts;
  li.className = `alert-item sev-${a.severity} st-${a.state}${a.escalated ? " escalated" : ""}${state.selected === a.id ? " selected" : ""}`;
  li.dataset.state = a.state;
  li.dataset.kind = a.kind;
  li.dataset.severity = a.severity;
  li.dataset.department = a.department;
  if (!prev || prev.kind !== a.kind) {
    p.icon.className = `kind-icon kind-${a.kind}`;
    p.icon.replaceChildren(kindIconNode(a.kind));
  }
  if (!prev || prev.summary !== a.summary || prev.camera_id !== a.camera_id || prev.kind !== a.kind) {
    p.t.textContent = alertTitle(a);
  }
  if (!prev || prev.severity !== a.severity || prev.department !== a.department || prev.escalated !== a.escalated ||
      prev.started_at !== a.started_at || prev.plate_text !== a.plate_text || prev.camera_id !== a.camera_id) {
    p.s.textContent = [tEnum("severity", a.severity), alertDepartments(a).map(departmentName).join(" + "),
      a.camera_id, a.plate_text, fmtTime(a.started_at)].filter(Boolean).join(" · ");
  }
  p.badge.textContent = tEnum("state", a.state);
  li.hidden = !matchesFilters(a);
}

/** An alert's title: the catalogue's "alert.title" pattern (summary, kind, camera name). */
export function alertTitle(a) {
  const cam = state.cameras.get(a.camera_id);
  const camera = (cam && cam.cam.name) || a.camera_id;
  const kind = tEnum("kind", a.kind);
  return a.summary ? t("alert.title", { summary: a.summary, kind, camera })
    : t("alert.title_no_summary", { kind, camera });
}

/** Re-render every list item, marker title and count after a language change. */
export function rerenderAlerts() {
  for (const { alert, li, marker } of state.alerts.values()) {
    renderItem(li, alert, null);
    if (marker) marker.options.title = `${tEnum("kind", alert.kind)} ${tEnum("severity", alert.severity)}`;
  }
  for (const opt of tid("filter-department").options) if (opt.value) opt.textContent = departmentName(opt.value);
  updateCounts();
}

export function alertMarkerClass(a) {
  return `alert-marker kind-${a.kind} sev-${a.severity} st-${a.state}`;
}

export function upsertAlert(a, { live = false } = {}) {
  if (!a || !a.id) return;
  const list = state.listEl || (state.listEl = tid("alert-list"));
  let entry = state.alerts.get(a.id);
  const isNew = !entry;
  let prev = null;
  if (entry) {
    prev = entry.alert;
    // Events can arrive out of order across reconnects: keep the newer copy.
    if (prev.updated_at && a.updated_at && Date.parse(a.updated_at) < Date.parse(prev.updated_at)) return;
    const moved = compareAlerts(prev, a) !== 0;
    if (moved) state.order.splice(state.order.indexOf(a.id), 1);
    entry.alert = a;
    if (moved) placeItem(entry, list);
  } else {
    entry = { alert: a, li: newItem(a), marker: null };
    state.alerts.set(a.id, entry);
    placeItem(entry, list);
  }
  renderItem(entry.li, a, prev);
  // Marker.
  const ll = a.location ? [a.location.lat, a.location.lon] : null;
  if (ll) {
    if (!entry.marker) {
      entry.marker = L.marker(ll, { icon: alertIcon(a), zIndexOffset: 1000 + (SEVERITY_RANK[a.severity] || 0) * 100,
        title: `${tEnum("kind", a.kind)} ${tEnum("severity", a.severity)}`, pane: PANES.alerts });
      entry.marker.on("click", () => openAlert(a.id));
      entry.marker.on("add", (e) => tagMarker(e.target, a.id));
    } else {
      if (prev.location.lat !== a.location.lat || prev.location.lon !== a.location.lon) entry.marker.setLatLng(ll);
      if (prev.kind !== a.kind) {
        entry.marker.setIcon(alertIcon(a));
        tagMarker(entry.marker, a.id);
      } else if (alertMarkerClass(prev) !== alertMarkerClass(a)) {
        // Same picture, new state/severity: swap classes instead of rebuilding the icon DOM.
        entry.marker.options.icon = alertIcon(a);
        const el = entry.marker._icon;
        if (el) {
          el.classList.remove(...alertMarkerClass(prev).split(" "));
          el.classList.add(...alertMarkerClass(a).split(" "));
        }
      }
    }
    if (prev && prev.incident_id && prev.incident_id !== a.incident_id) {
      state.incidents.get(prev.incident_id)?.delete(a.id);
      syncIncident(prev.incident_id);
    }
    if (a.incident_id) {
      if (!state.incidents.has(a.incident_id)) state.incidents.set(a.incident_id, new Set());
      state.incidents.get(a.incident_id).add(a.id);
      syncIncident(a.incident_id);
    } else {
      setMarkerShown(entry, matchesFilters(a));
    }
  }
  for (const d of alertDepartments(a)) if (d && !state.departments.has(d)) addDepartment(d);
  if (isNew && live && a.severity === "critical" && OPEN_STATES.has(a.state)) {
    tid("critical-counter").classList.add("active");  // a new one: highlighted until clicked
    beep();
  }
  trackCritical(a);
  if (state.selected === a.id) renderDetail(a);
}

/** Count open critical alerts (the counter shows how many are open now, not arrivals). */
export function trackCritical(a) {
  const open = a.severity === "critical" && OPEN_STATES.has(a.state);
  if (open === state.openCritical.has(a.id)) return;
  if (open) state.openCritical.add(a.id); else state.openCritical.delete(a.id);
  renderCritical();
}

export function renderCritical() {
  const n = state.openCritical.size;
  tid("critical-count").textContent = String(n);
  tid("critical-counter").dataset.count = String(n);
  if (!n) tid("critical-counter").classList.remove("active");
}

export function tagMarker(marker, id) {
  if (!marker._icon) return;
  marker._icon.dataset.testid = "alert-marker";
  marker._icon.dataset.alertId = id;
  marker._icon.dataset.count = marker.options.incidentCount > 1 ? String(marker.options.incidentCount) : "";
}

export function setMarkerShown(entry, show) {
  const m = entry.marker;
  if (!m) return;
  if (show && !state.alertLayer.hasLayer(m)) state.alertLayer.addLayer(m);
  if (!show && state.alertLayer.hasLayer(m)) state.alertLayer.removeLayer(m);
}

/** One marker per cross-camera incident: its highest-ranked visible alert, with a count. */
export function syncIncident(incidentId) {
  const ids = state.incidents.get(incidentId);
  if (!ids) return;
  const members = [...ids].map((id) => state.alerts.get(id)).filter((e) => e && e.marker);
  const visible = members.filter((e) => matchesFilters(e.alert))
    .sort((x, y) => compareAlerts(x.alert, y.alert));
  const lead = visible[0];
  for (const e of members) {
    e.marker.options.incidentCount = e === lead ? visible.length : 0;
    setMarkerShown(e, e === lead);
    tagMarker(e.marker, e.alert.id);
  }
}

export function placeItem(entry, list) {
  const i = orderIndex(entry.alert);
  const before = i < state.order.length ? state.alerts.get(state.order[i]).li : null;
  state.order.splice(i, 0, entry.alert.id);
  list.insertBefore(entry.li, before);
}

export function addDepartment(dep) {
  state.departments.add(dep);
  const opt = document.createElement("option");
  opt.value = dep; opt.textContent = departmentName(dep);
  tid("filter-department").appendChild(opt);
}

export function applyFilters() {
  for (const { alert, li, marker } of state.alerts.values()) {
    const show = matchesFilters(alert);
    li.hidden = !show;
    if (marker && !alert.incident_id) setMarkerShown({ marker }, show);
  }
  for (const id of state.incidents.keys()) syncIncident(id);
  updateCounts();
}

export function updateCounts() {
  let n = 0;
  for (const { li } of state.alerts.values()) if (!li.hidden) n += 1;
  tid("open-count").textContent = t("topbar.alert_count", { n });
  tid("open-count").dataset.count = String(n);
}

export function setupFilters() {
  for (const sel of document.querySelectorAll("[data-filter]")) {
    sel.addEventListener("change", () => {
      state.filters[sel.dataset.filter] = sel.value;
      applyFilters();
    });
  }
  tid("alert-list").addEventListener("click", (ev) => {
    const li = ev.target.closest("[data-alert-id]");
    if (li) openAlert(li.dataset.alertId);
  });
  tid("list-toggle").addEventListener("click", () => {
    // Phone layout: fold the list sheet away (the whole map) or bring it back.
    document.body.dataset.sheet = document.body.dataset.sheet === "folded" ? "open" : "folded";
  });
  tid("critical-counter").addEventListener("click", () => {
    document.body.dataset.sheet = "open";
    // Seen: stop highlighting, and list the open alerts (critical ones sort first).
    tid("critical-counter").classList.remove("active");
    const sel = tid("filter-state");
    sel.value = "open";
    sel.dispatchEvent(new Event("change"));
    tid("alert-list").scrollTop = 0;
  });
}

// -- sound -------------------------------------------------------------------------------

export function ensureAudio() {
  try {
    if (!state.audio) state.audio = new (window.AudioContext || window.webkitAudioContext)();
    if (state.audio.state === "suspended") state.audio.resume();
  } catch (_) { state.audio = null; }
}

export function beep() {
  document.body.dataset.beeps = String(Number(document.body.dataset.beeps || 0) + 1);
  const ctx = state.audio;
  if (!ctx) return;
  const t = ctx.currentTime;
  const osc = ctx.createOscillator();
  const gain = ctx.createGain();
  osc.type = "square";
  osc.frequency.setValueAtTime(880, t);
  osc.frequency.setValueAtTime(660, t + 0.12);
  gain.gain.setValueAtTime(0.0001, t);
  gain.gain.exponentialRampToValueAtTime(0.15, t + 0.01);
  gain.gain.exponentialRampToValueAtTime(0.0001, t + 0.3);
  osc.connect(gain).connect(ctx.destination);
  osc.start(t);
  osc.stop(t + 0.32);
}
