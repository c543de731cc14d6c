/* citysight operations map — Shared state, constants, HTTP helper and small formatting helpers. */

import { language } from "./i18n.js";

export const TOKEN_KEY = "citysight.token";
export const SEVERITY_RANK = { info: 0, low: 1, medium: 2, high: 3, critical: 4 };
export const OPEN_STATES = new Set(["raised", "assigned", "acknowledged"]);
// Map panes, bottom to top: cluster discs, alert icons, camera dots (Leaflet's markerPane is
// 600, popups 700). Camera dots stay above alert icons so their health colour is never hidden
// and they keep their clicks; alert icons stay above cluster discs.
export const PANES = { clusters: "cs-clusters", alerts: "cs-alerts", cameras: "cs-cameras" };
export const PANE_Z = { clusters: 590, alerts: 600, cameras: 610 };
export const HEALTH_COLOURS = { running: "#2e9d4f", stalled: "#e0a21b", offline: "#d43c3c", failed: "#8a8f98" };
// Client-side hint of which actions make sense in a state (mirrors serve_app/store/lifecycle.py);
// the server stays the authority and answers 409 otherwise.
export const NEXT_ACTIONS = {
  raised: ["assigned", "acknowledged", "false_alarm"],
  assigned: ["acknowledged", "false_alarm"],
  acknowledged: ["resolved", "false_alarm"],
  resolved: ["closed"],
  feedback: ["closed"],
  false_alarm: ["closed"],
  closed: [],
};

// Inline SVG icons, one per alert kind (24×24 viewBox, drawn in currentColor).
export const KIND_SVG = {
  fire: '<path d="M12 2c1 4 5 6 5 11a5 5 0 0 1-10 0c0-3 2-4 2-7 2 1 3 3 3 5 1-2 1-5 0-9z"/>',
  smoke: '<path d="M6 18a4 4 0 0 1 0-8 5 5 0 0 1 9.5-1.5A4 4 0 1 1 18 18z"/>',
  face: '<circle cx="12" cy="12" r="9" fill="none" stroke="currentColor" stroke-width="2.4"/>' +
    '<circle cx="9" cy="10" r="1.5"/><circle cx="15" cy="10" r="1.5"/>' +
    '<path d="M8 15q4 3 8 0" fill="none" stroke="currentColor" stroke-width="2"/>',
  plate: '<rect x="2" y="7" width="20" height="10" rx="2" fill="none" stroke="currentColor" stroke-width="2.4"/>' +
    '<rect x="5" y="10.5" width="3" height="3"/><rect x="10" y="10.5" width="3" height="3"/><rect x="15" y="10.5" width="3" height="3"/>',
  vending: '<path d="M3 9l2-5h14l2 5z"/><rect x="5" y="10" width="14" height="9" fill="none" stroke="currentColor" stroke-width="2.4"/>',
  camera_offline: '<rect x="2" y="7" width="14" height="10" rx="2"/><path d="M16 11l6-3v8l-6-3z"/>' +
    '<path d="M3 3l18 18" stroke="currentColor" stroke-width="2.6"/>',
  // Field-report kinds (no camera rule raises them).
  road_damage: '<path d="M8 2h8l6 20H2z"/><path d="M12 5l-2 5 3 3-2 6" fill="none" stroke="#fff" stroke-width="1.8"/>',
  other: '<circle cx="12" cy="12" r="10"/><path d="M11 6h2v8h-2zM11 16h2v2h-2z" fill="#fff"/>',
};

export const state = {
  token: null,
  me: null,
  map: null,
  cluster: null,
  alertLayer: null,
  cameras: new Map(),      // id -> {cam, health, marker}
  alerts: new Map(),       // id -> {alert, li, marker}
  incidents: new Map(),    // incident_id -> Set of alert ids (one marker per incident)
  order: [],               // alert ids in list order (severity desc, started_at desc)
  departments: new Set(),
  departmentInfo: new Map(), // id -> {id, name, names} from /api/config/map
  mapConfig: null,
  filters: { kind: "", department: "", state: "" },
  selected: null,
  openCritical: new Set(), // ids of open critical alerts in scope: the topbar counter
  lastId: null,
  ws: null,
  wsBackoffMs: 500,
  wsTimer: null,
  pending: [],
  flushScheduled: false,
  clusterRefresh: new Set(),
  audio: null,
  evidenceUrl: null,
};

export const $ = (sel, root = document) => root.querySelector(sel);
export const tid = (id, root = document) => root.querySelector(`[data-testid="${id}"]`);

// -- HTTP --------------------------------------------------------------------------------

export async function api(path, opts = {}) {
  // Accept-Language: the API answers errors with a ``message`` in the page's language.
  const headers = Object.assign({ Authorization: `Bearer ${state.token}`, "Accept-Language": language() },
    opts.headers || {});
  if (opts.json !== undefined) {
    headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(opts.json);
  }
  const res = await fetch(path, { method: opts.method || "GET", headers, body: opts.body });
  if (!res.ok) {
    let detail = res.statusText;
    let code = null;
    try {
      const body = await res.json();
      code = body.code || null;
      // The localized ``message`` when the server sent one, its English ``detail`` otherwise.
      detail = body.message || body.detail || detail;
    } catch (_) { /* not JSON */ }
    if (detail && typeof detail === "object") detail = detail.message || JSON.stringify(detail);
    const err = new Error(`${res.status}: ${detail}`);
    err.status = res.status;
    err.code = code;
    throw err;
  }
  return opts.raw ? res : res.json();
}

/** A department's display name in the current language (configured names, else its id). */
export function departmentName(id) {
  const d = state.departmentInfo.get(id);
  if (!d) return id;
  const names = d.names || {};
  const lang = language();
  return names[lang] || names[lang.split("-")[0]] || d.name || id;
}

export function hasScope(scope) {
  return !!(state.me && (state.me.scopes || []).includes(scope));
}


export function logout() {
  sessionStorage.removeItem(TOKEN_KEY);
  location.reload();
}

// Messages and times live in i18n.js; re-exported here so modules keep one import.
export { fmtDateTime, fmtTime, language, setTimeZone, t, tEnum } from "./i18n.js";

export const KIND_TEMPLATES = {};

/** A fresh copy of a kind's icon (cloned from a parsed template: no HTML parsing per use). */
export function kindIconNode(kind) {
  let t = KIND_TEMPLATES[kind];
  if (!t) {
    t = KIND_TEMPLATES[kind] = document.createElement("template");
    t.innerHTML = kindIcon(kind);
  }
  return t.content.cloneNode(true);
}

export function kindIcon(kind) {
  return `<svg viewBox="0 0 24 24" fill="currentColor" aria-hidden="true">${KIND_SVG[kind] || KIND_SVG.camera_offline}</svg>`;
}
