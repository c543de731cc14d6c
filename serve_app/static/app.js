/* citysight operations map: cameras with health, live alerts, dispatch actions.
 *
 * Plain JS, no build step. State lives in a few Maps; every WebSocket message updates only
 * the DOM nodes and markers it concerns (no full re-render), and messages are applied in
 * batches once per animation frame so bursts of hundreds of messages stay cheap.
 */
"use strict";

const TOKEN_KEY = "citysight.token";
const SEVERITY_RANK = { info: 0, low: 1, medium: 2, high: 3, critical: 4 };
const OPEN_STATES = new Set(["raised", "assigned", "acknowledged"]);
const HEALTH_COLOURS = { running: "#2e9d4f", stalled: "#e0a21b", offline: "#d43c3c", failed: "#8a8f98" };
// Client-side hint of which actions make sense in a state (mirrors serve_app/store/lifecycle.py);
// the server stays the authority and answers 409 otherwise.
const NEXT_ACTIONS = {
  raised: ["assigned", "acknowledged", "false_alarm"],
  assigned: ["acknowledged", "false_alarm"],
  acknowledged: ["resolved", "false_alarm"],
  resolved: ["closed"],
  feedback: ["closed"],
  false_alarm: ["closed"],
  closed: [],
};

// Inline SVG icons, one per alert kind (24×24 viewBox, drawn in currentColor).
const KIND_SVG = {
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
};

const state = {
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
  filters: { kind: "", department: "", state: "" },
  selected: null,
  criticalCount: 0,
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

const $ = (sel, root = document) => root.querySelector(sel);
const tid = (id, root = document) => root.querySelector(`[data-testid="${id}"]`);

// -- HTTP --------------------------------------------------------------------------------

async function api(path, opts = {}) {
  const headers = Object.assign({ Authorization: `Bearer ${state.token}` }, opts.headers || {});
  if (opts.json !== undefined) {
    headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(opts.json);
  }
  const res = await fetch(path, { method: opts.method || "GET", headers, body: opts.body });
  if (!res.ok) {
    let detail = res.statusText;
    try { detail = (await res.json()).detail || detail; } catch (_) { /* not JSON */ }
    if (detail && typeof detail === "object") detail = detail.message || JSON.stringify(detail);
    const err = new Error(`${res.status}: ${detail}`);
    err.status = res.status;
    throw err;
  }
  return opts.raw ? res : res.json();
}

function hasScope(scope) {
  return !!(state.me && (state.me.scopes || []).includes(scope));
}

// -- login -------------------------------------------------------------------------------

async function login(token) {
  state.token = token;
  const me = await api("/api/me");
  state.me = me;
  sessionStorage.setItem(TOKEN_KEY, token);
  tid("login").hidden = true;
  const v = tid("viewer");
  v.hidden = false;
  v.textContent = `${me.name} · ${me.role} · ${me.department === "*" ? "all departments" : me.department}`;
  v.dataset.role = me.role;
  tid("logout").hidden = false;
  await start();
}

function logout() {
  sessionStorage.removeItem(TOKEN_KEY);
  location.reload();
}

function setupLogin() {
  tid("login-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    ensureAudio();  // a user gesture: the only moment browsers allow creating audio
    tid("login-error").textContent = "";
    try {
      await login(tid("token-input").value.trim());
    } catch (err) {
      state.token = null;
      tid("login-error").textContent = err.status === 401 || err.status === 403
        ? "Token not accepted." : `Sign-in failed: ${err.message}`;
    }
  });
  tid("logout").addEventListener("click", logout);
  const saved = sessionStorage.getItem(TOKEN_KEY);
  if (saved) login(saved).catch(() => sessionStorage.removeItem(TOKEN_KEY));
}

// -- map ---------------------------------------------------------------------------------

/** Lat/lon lines drawn per tile on a canvas: the default base layer (no tile server). */
const Graticule = L.GridLayer.extend({
  createTile(coords) {
    const tile = document.createElement("canvas");
    const size = this.getTileSize();
    tile.width = size.x; tile.height = size.y;
    const ctx = tile.getContext("2d");
    const map = this._map;
    const nw = coords.scaleBy(size);
    const topLeft = map.unproject(nw, coords.z);
    const botRight = map.unproject(nw.add(size), coords.z);
    // Pick a spacing that leaves at least ~90 px between lines at this zoom.
    const degPerPx = (botRight.lng - topLeft.lng) / size.x;
    const steps = [30, 10, 5, 2, 1, 0.5, 0.2, 0.1, 0.05, 0.02, 0.01, 0.005, 0.002, 0.001, 0.0005];
    let step = steps[0];
    for (const s of steps) if (s / degPerPx >= 90) step = s;
    ctx.strokeStyle = "rgba(80, 110, 140, 0.35)";
    ctx.fillStyle = "rgba(60, 80, 100, 0.75)";
    ctx.font = "10px sans-serif";
    ctx.lineWidth = 1;
    const dec = Math.max(0, -Math.floor(Math.log10(step)));
    for (let lon = Math.ceil(topLeft.lng / step) * step; lon <= botRight.lng; lon += step) {
      const x = map.project([0, lon], coords.z).x - nw.x;
      ctx.beginPath(); ctx.moveTo(x + 0.5, 0); ctx.lineTo(x + 0.5, size.y); ctx.stroke();
      // Labels on every third tile row/column only, so they do not repeat every 256 px.
      if (coords.y % 3 === 0) ctx.fillText(`${lon.toFixed(dec)}°`, x + 3, 11);
    }
    for (let lat = Math.ceil(botRight.lat / step) * step; lat <= topLeft.lat; lat += step) {
      const y = map.project([lat, 0], coords.z).y - nw.y;
      ctx.beginPath(); ctx.moveTo(0, y + 0.5); ctx.lineTo(size.x, y + 0.5); ctx.stroke();
      if (coords.x % 3 === 0) ctx.fillText(`${lat.toFixed(dec)}°`, 3, y - 3);
    }
    return tile;
  },
});

function clusterIcon(cluster) {
  // Neutral disc with the camera count; a badge counts cameras that are not running
  // (amber when only stalled ones, red when any is offline or failed).
  let stalled = 0, down = 0;
  const children = cluster.getAllChildMarkers();
  for (const m of children) {
    const h = m.options.health;
    if (h === "stalled") stalled += 1; else if (h !== "running") down += 1;
  }
  const bad = stalled + down;
  const badge = bad ? `<i class="${down ? "down" : "stalled"}">${bad}</i>` : "";
  return L.divIcon({
    html: `<span>${children.length}</span>${badge}`,
    className: `cam-cluster${bad ? "" : " cam-cluster-ok"}`,
    iconSize: L.point(36, 36),
  });
}

async function setupMap() {
  const cfg = await api("/api/config/map");
  const map = L.map("map", { preferCanvas: true, zoomControl: true, worldCopyJump: true });
  state.map = map;
  if (cfg.tile_url) {
    L.tileLayer(cfg.tile_url, { maxZoom: 19, attribution: cfg.attribution || "" }).addTo(map);
  } else {
    document.getElementById("map").classList.add("plain");
    new Graticule({ maxZoom: 22 }).addTo(map);
  }
  const overlays = {};
  state.overlays = overlays;
  await Promise.all((cfg.overlays || []).map(async (ov) => {
    try {
      // Overlays come inline (geojson) or as a URL of the API (fetched with the bearer).
      const data = ov.geojson || ov.data || (ov.url ? await api(ov.url) : null);
      if (!data) return;
      overlays[ov.name || "overlay"] = L.geoJSON(data, {
        style: { color: "#3b6ea5", weight: 2, fillOpacity: 0.05 },
        onEachFeature: (f, layer) => {
          const name = f.properties && (f.properties.name || f.properties.id);
          if (name) layer.bindTooltip(String(name));
        },
      }).addTo(map);
    } catch (err) { console.warn("overlay", ov.name, err); }
  }));
  // The view must exist before the cluster joins the map: only then does markercluster
  // load markers in chunks (short tasks) instead of one long blocking pass.
  const cams = cfg.cameras || [];
  if (cams.length) {
    map.fitBounds(L.latLngBounds(cams.map((c) => [c.latitude, c.longitude])).pad(0.1));
  } else {
    map.setView(cfg.center ? [cfg.center.lat, cfg.center.lon] : [0, 0], cfg.center ? 12 : 2);
  }
  state.cluster = L.markerClusterGroup({
    // Cluster split/merge animations force a synchronous layout per zoom; with thousands of
    // cameras that is most of a zoom's cost, so clusters switch without animating.
    animate: false,
    chunkedLoading: true,
    chunkInterval: 40,
    chunkDelay: 5,
    chunkProgress: (done, total) => {
      if (done === total && state.onClustered) { state.onClustered(); state.onClustered = null; }
    },
    showCoverageOnHover: false,
    disableClusteringAtZoom: 17,
    maxClusterRadius: 60,
    iconCreateFunction: clusterIcon,
  });
  state.alertLayer = L.layerGroup();
  map.addLayer(state.cluster);
  map.addLayer(state.alertLayer);
  L.control.layers(null, Object.assign({ Cameras: state.cluster, Alerts: state.alertLayer }, overlays),
    { collapsed: true }).addTo(map);
  L.control.scale().addTo(map);

  await addCameras(cams);
}

const CAMERA_ICONS = new Map();

/** Camera dot coloured by health, with a view cone when the heading is known (icons shared). */
function cameraIcon(health, heading) {
  const h = heading == null ? "" : Math.round(heading / 5) * 5;
  const key = `${health}|${h}`;
  let icon = CAMERA_ICONS.get(key);
  if (!icon) {
    const cone = h === "" ? "" : `<i class="cone" style="transform: rotate(${h}deg)"></i>`;
    icon = L.divIcon({ className: `cam cam-${health}`, iconSize: [14, 14], html: cone });
    CAMERA_ICONS.set(key, icon);
  }
  return icon;
}

/** Add camera markers (chunked); resolves when they are all clustered. */
function addCameras(cams) {
  const markers = [];
  for (const cam of cams) {
    if (state.cameras.has(cam.id) || cam.latitude == null) continue;
    // Start with the health the listing carries, so the first paint needs no cluster refresh.
    const health = healthState(cam.health || (cam.state ? { state: cam.state } : null));
    const marker = L.marker([cam.latitude, cam.longitude], {
      icon: cameraIcon(health, cam.heading_deg), health, title: cam.name || cam.id, keyboard: false,
    });
    marker.bindPopup(() => cameraPopup(cam.id), { maxWidth: 280 });
    marker.on("add", (e) => { if (e.target._icon) e.target._icon.dataset.cameraId = cam.id; });
    state.cameras.set(cam.id, { cam, health: cam.health || (cam.state ? { state: cam.state } : null), marker });
    markers.push(marker);
  }
  document.body.dataset.cameras = String(state.cameras.size);
  if (!markers.length) return Promise.resolve();
  if (!state.cluster._map) { state.cluster.addLayers(markers); return Promise.resolve(); }  // hidden layer: no chunks
  // Resolves once markercluster has placed every marker (its last chunk).
  const done = new Promise((resolve) => { state.onClustered = resolve; });
  state.cluster.addLayers(markers);
  return done;
}

function healthState(h) {
  if (!h) return "offline";
  const s = h.state || (h.health && h.health.state) || "offline";
  if (s === "starting" || s === "stopped") return s === "starting" ? "stalled" : "offline";
  return HEALTH_COLOURS[s] ? s : "offline";
}

function setCameraHealth(id, health) {
  const entry = state.cameras.get(id);
  if (!entry) return;
  entry.health = Object.assign(entry.health || {}, health);
  const s = healthState(entry.health);
  if (entry.marker.options.health !== s) {
    entry.marker.options.health = s;
    entry.marker.setIcon(cameraIcon(s, entry.cam.heading_deg));
    state.clusterRefresh.add(entry.marker);
  }
}

async function refreshCameras() {
  try {
    const list = await api("/api/cameras");
    const cams = Array.isArray(list) ? list : list.cameras || [];
    addCameras(cams.filter((c) => !state.cameras.has(c.id)));
    for (const c of cams) {
      const entry = state.cameras.get(c.id);
      if (entry) entry.cam = Object.assign({}, entry.cam, c);
      setCameraHealth(c.id, c.health || { state: c.state });
    }
    flushClusterRefresh();
  } catch (err) {
    console.warn("cameras", err);
  }
}

function flushClusterRefresh() {
  if (!state.clusterRefresh.size) return;
  state.cluster.refreshClusters([...state.clusterRefresh]);
  state.clusterRefresh.clear();
}

/** Zoom to a camera (out of its cluster) and open its popup. */
function showCamera(id) {
  const entry = state.cameras.get(id);
  if (!entry) return;
  state.cluster.zoomToShowLayer(entry.marker, () => entry.marker.openPopup());
}

/** Seconds since the camera's last frame, from its last status (age then + time since). */
function lastFrameAge(h) {
  const m = h.metrics || {};
  const base = m.last_frame_age_s != null ? m.last_frame_age_s : h.last_frame_age_s;
  if (base == null || base < 0) return null;
  return h.at ? base + Math.max(0, Date.now() / 1000 - h.at) : base;
}

function cameraPopup(id) {
  const entry = state.cameras.get(id);
  const c = entry.cam;
  const h = entry.health || {};
  const p = c.profile || {};
  const el = document.createElement("div");
  el.className = "cam-popup";
  el.dataset.testid = "camera-popup";
  const age = lastFrameAge(h);
  const ageText = age == null ? "unknown" : age < 120 ? `${age.toFixed(1)} s` : `${Math.round(age / 60)} min`;
  const prof = [p.analytics_fps != null ? `${p.analytics_fps} fps` : null,
    p.keyframe_only ? "keyframes only" : null,
    p.input_width ? `${p.input_width}×${p.input_height}` : null].filter(Boolean).join(", ");
  el.innerHTML = `<b></b><div class="sub"></div><table>
    <tr><th>health</th><td class="h"></td></tr><tr><th>profile</th><td class="p"></td></tr>
    <tr><th>last frame</th><td class="a"></td></tr></table><div class="recent"><i>recent alerts</i><ul></ul></div>`;
  $("b", el).textContent = c.name || c.id;
  $(".sub", el).textContent = [c.id, c.jurisdiction].filter(Boolean).join(" · ");
  $(".h", el).textContent = healthState(h);
  $(".h", el).className = `h health-${healthState(h)}`;
  $(".p", el).textContent = prof || "default";
  $(".a", el).textContent = ageText;
  const ul = $("ul", el);
  const recent = [...state.alerts.values()].map((e) => e.alert)
    .filter((a) => a.camera_id === id || (a.camera_ids || []).includes(id))
    .sort((a, b) => Date.parse(b.started_at) - Date.parse(a.started_at)).slice(0, 5);
  for (const a of recent) {
    const li = document.createElement("li");
    li.textContent = `${a.kind} · ${a.severity} · ${a.state} · ${fmtTime(a.started_at)}`;
    li.addEventListener("click", () => openAlert(a.id));
    ul.appendChild(li);
  }
  if (!recent.length) ul.innerHTML = "<li class='none'>none</li>";
  return el;
}

// -- alerts: list and markers -------------------------------------------------------------

// One formatter: toLocaleTimeString() builds a new Intl formatter on every call (slow).
const TIME_FMT = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });

function fmtTime(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? "" : TIME_FMT.format(d);
}

const KIND_TEMPLATES = {};

/** A fresh copy of a kind's icon (cloned from a parsed template: no HTML parsing per use). */
function kindIconNode(kind) {
  let t = KIND_TEMPLATES[kind];
  if (!t) {
    t = KIND_TEMPLATES[kind] = document.createElement("template");
    t.innerHTML = kindIcon(kind);
  }
  return t.content.cloneNode(true);
}

function kindIcon(kind) {
  return `<svg viewBox="0 0 24 24" fill="currentColor" aria-hidden="true">${KIND_SVG[kind] || KIND_SVG.camera_offline}</svg>`;
}

function alertIcon(a) {
  return L.divIcon({
    className: alertMarkerClass(a),
    html: kindIcon(a.kind),
    iconSize: [28, 28],
  });
}

/** Negative when a sorts before b: severity first, then newest first, then id. */
function compareAlerts(a, b) {
  const s = (SEVERITY_RANK[b.severity] || 0) - (SEVERITY_RANK[a.severity] || 0);
  if (s) return s;
  const t = Date.parse(b.started_at) - Date.parse(a.started_at);
  if (t) return t;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

function orderIndex(alert) {
  // Binary search of the insertion point in state.order.
  let lo = 0, hi = state.order.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (compareAlerts(state.alerts.get(state.order[mid]).alert, alert) < 0) lo = mid + 1; else hi = mid;
  }
  return lo;
}

function matchesFilters(a) {
  const f = state.filters;
  if (f.kind && a.kind !== f.kind) return false;
  if (f.department && a.department !== f.department) return false;
  if (f.state === "open") return OPEN_STATES.has(a.state);
  if (f.state && a.state !== f.state) return false;
  return true;
}

const ITEM_TEMPLATE = document.createElement("template");
ITEM_TEMPLATE.innerHTML = `<li data-testid="alert-item"><span class="kind-icon"></span>
  <span class="body"><span class="t"></span><span class="s"></span></span>
  <span class="badge" data-testid="alert-state"></span></li>`;

function newItem(a) {
  const li = ITEM_TEMPLATE.content.firstElementChild.cloneNode(true);
  li.dataset.alertId = a.id;
  li._parts = { icon: li.children[0], t: li.children[1].children[0], s: li.children[1].children[1], badge: li.children[2] };
  return li;
}

/** Update one list item in place (only the fields that changed touch the DOM). */
function renderItem(li, a, prev) {
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
  if (!prev || prev.summary !== a.summary || prev.camera_id !== a.camera_id) {
    p.t.textContent = a.summary || `${a.kind} at ${a.camera_id}`;
  }
  if (!prev || prev.severity !== a.severity || prev.department !== a.department ||
      prev.started_at !== a.started_at || prev.plate_text !== a.plate_text || prev.camera_id !== a.camera_id) {
    p.s.textContent = `${a.severity} · ${a.department} · ${a.camera_id}${a.plate_text ? " · " + a.plate_text : ""} · ${fmtTime(a.started_at)}`;
  }
  p.badge.textContent = a.state.replace("_", " ");
  li.hidden = !matchesFilters(a);
}

function alertMarkerClass(a) {
  return `alert-marker kind-${a.kind} sev-${a.severity} st-${a.state}`;
}

function upsertAlert(a, { live = false } = {}) {
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
        title: `${a.kind} ${a.severity}` });
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
  if (a.department && !state.departments.has(a.department)) addDepartment(a.department);
  if (isNew && live && a.severity === "critical" && OPEN_STATES.has(a.state)) {
    state.criticalCount += 1;
    tid("critical-count").textContent = String(state.criticalCount);
    tid("critical-counter").classList.add("active");
    beep();
  }
  if (state.selected === a.id) renderDetail(a);
}

function tagMarker(marker, id) {
  if (!marker._icon) return;
  marker._icon.dataset.testid = "alert-marker";
  marker._icon.dataset.alertId = id;
  marker._icon.dataset.count = marker.options.incidentCount > 1 ? String(marker.options.incidentCount) : "";
}

function setMarkerShown(entry, show) {
  const m = entry.marker;
  if (!m) return;
  if (show && !state.alertLayer.hasLayer(m)) state.alertLayer.addLayer(m);
  if (!show && state.alertLayer.hasLayer(m)) state.alertLayer.removeLayer(m);
}

/** One marker per cross-camera incident: its highest-ranked visible alert, with a count. */
function syncIncident(incidentId) {
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

function placeItem(entry, list) {
  const i = orderIndex(entry.alert);
  const before = i < state.order.length ? state.alerts.get(state.order[i]).li : null;
  state.order.splice(i, 0, entry.alert.id);
  list.insertBefore(entry.li, before);
}

function addDepartment(dep) {
  state.departments.add(dep);
  const opt = document.createElement("option");
  opt.value = dep; opt.textContent = dep;
  tid("filter-department").appendChild(opt);
}

function applyFilters() {
  for (const { alert, li, marker } of state.alerts.values()) {
    const show = matchesFilters(alert);
    li.hidden = !show;
    if (marker && !alert.incident_id) setMarkerShown({ marker }, show);
  }
  for (const id of state.incidents.keys()) syncIncident(id);
  updateCounts();
}

function updateCounts() {
  let n = 0;
  for (const { li } of state.alerts.values()) if (!li.hidden) n += 1;
  tid("open-count").textContent = `${n} alert${n === 1 ? "" : "s"}`;
  tid("open-count").dataset.count = String(n);
}

function setupFilters() {
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
  tid("critical-counter").addEventListener("click", () => {
    state.criticalCount = 0;
    tid("critical-count").textContent = "0";
    tid("critical-counter").classList.remove("active");
  });
}

// -- sound -------------------------------------------------------------------------------

function ensureAudio() {
  try {
    if (!state.audio) state.audio = new (window.AudioContext || window.webkitAudioContext)();
    if (state.audio.state === "suspended") state.audio.resume();
  } catch (_) { state.audio = null; }
}

function beep() {
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

// -- WebSocket ---------------------------------------------------------------------------

function setWsStatus(s) {
  const el = tid("ws-status");
  el.dataset.state = s;
  el.textContent = s;
}

async function connectWs() {
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
  let url = `${proto}//${location.host}/ws?ticket=${encodeURIComponent(ticket)}`;
  if (state.lastId) url += `&last_id=${encodeURIComponent(state.lastId)}`;
  const ws = new WebSocket(url);
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

function scheduleReconnect() {
  clearTimeout(state.wsTimer);
  state.wsTimer = setTimeout(connectWs, state.wsBackoffMs);
  state.wsBackoffMs = Math.min(state.wsBackoffMs * 2, 15000);
}

function scheduleFlush() {
  if (state.flushScheduled) return;
  state.flushScheduled = true;
  // rAF batches bursts into one DOM pass; the timeout covers hidden tabs (rAF paused).
  const run = () => { if (state.flushScheduled) flush(); };
  requestAnimationFrame(run);
  setTimeout(run, 250);
}

function flush() {
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

function handleMessage(msg) {
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
  }
}

// -- alert detail ------------------------------------------------------------------------

async function openAlert(id) {
  state.selected = id;
  const entry = state.alerts.get(id);
  for (const li of document.querySelectorAll(".alert-item.selected")) li.classList.remove("selected");
  if (entry) entry.li.classList.add("selected");
  tid("alert-detail").hidden = false;
  tid("alert-detail").dataset.alertId = id;
  tid("action-error").textContent = "";
  tid("alert-timeline").innerHTML = "";
  let a = entry && entry.alert;
  try {
    a = await api(`/api/alerts/${encodeURIComponent(id)}`);
    upsertAlert(a);
  } catch (err) {
    if (!a) { tid("detail-title").textContent = `alert unavailable (${err.status || err.message})`; return; }
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

function renderDetail(a) {
  const panel = tid("alert-detail");
  panel.dataset.state = a.state;
  $("[data-role=icon]", panel).innerHTML = kindIcon(a.kind);
  $("[data-role=icon]", panel).className = `kind-icon kind-${a.kind}`;
  tid("detail-title").textContent = a.summary || `${a.kind} at ${a.camera_id}`;
  tid("detail-state").textContent = a.state.replace("_", " ");
  tid("detail-severity").textContent = a.severity + (a.escalated ? " (escalated)" : "");
  tid("detail-department").textContent = a.department;
  const cams = (a.camera_ids && a.camera_ids.length > 1) ? a.camera_ids.join(", ") : a.camera_id;
  const camName = state.cameras.get(a.camera_id);
  tid("detail-camera").textContent = camName && camName.cam.name ? `${camName.cam.name} (${cams})` : cams;
  tid("detail-camera").onclick = () => showCamera(a.camera_id);
  tid("detail-started").textContent = new Date(a.started_at).toLocaleString();
  tid("detail-unit").textContent = a.assigned_unit || "—";
  tid("detail-outcome").textContent = a.outcome || "—";
  const canDispatch = hasScope("alerts:dispatch");
  tid("actions").hidden = !canDispatch;
  const next = new Set(NEXT_ACTIONS[a.state] || []);
  for (const btn of tid("actions").querySelectorAll("button[data-to]")) {
    btn.disabled = !next.has(btn.dataset.to);
  }
  tid("reveal-form").hidden = !hasScope("evidence:unredacted") || !(a.evidence && a.evidence.length);
}

function appendTimeline(ev) {
  const ol = tid("alert-timeline");
  const key = `${ev.seq}`;
  if (ol.querySelector(`[data-seq="${key}"]`)) return;
  const li = document.createElement("li");
  li.dataset.seq = key;
  li.dataset.testid = "timeline-event";
  li.dataset.toState = ev.to_state;
  const extra = [ev.unit && `unit ${ev.unit}`, ev.outcome && `outcome ${ev.outcome}`, ev.note].filter(Boolean).join(" · ");
  li.innerHTML = "<time></time> <b></b> <span class='by'></span><div class='x'></div>";
  $("time", li).textContent = fmtTime(ev.at);
  $("b", li).textContent = `${ev.from_state || "—"} → ${ev.to_state}`;
  $(".by", li).textContent = `by ${ev.actor}`;
  $(".x", li).textContent = extra;
  // Keep sequence order even when a live event overtakes the initial fetch.
  const after = [...ol.children].find((x) => Number(x.dataset.seq) > Number(ev.seq));
  ol.insertBefore(li, after || null);
}

async function loadEvidence(a, unredacted, reason = "") {
  const img = tid("snapshot-img");
  const msg = tid("snapshot-msg");
  const svg = tid("snapshot-boxes");
  svg.innerHTML = "";
  if (state.evidenceUrl) { URL.revokeObjectURL(state.evidenceUrl); state.evidenceUrl = null; }
  img.hidden = true;
  if (!a.evidence || !a.evidence.length) { msg.textContent = "no snapshot"; return; }
  msg.textContent = "loading snapshot…";
  let url = `/api/alerts/${encodeURIComponent(a.id)}/evidence`;
  if (unredacted) url += `?unredacted=true&reason=${encodeURIComponent(reason)}`;
  try {
    const res = await api(url, { raw: true });
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
      msg.textContent = unredacted ? "UNREDACTED (access audited)" : "faces blurred";
      tid("snapshot").dataset.unredacted = String(unredacted);
    };
    img.src = state.evidenceUrl;
    img.hidden = false;
  } catch (err) {
    msg.textContent = err.status === 404 ? "snapshot expired or missing" : `snapshot unavailable (${err.message})`;
  }
}

function setupDetail() {
  tid("detail-close").addEventListener("click", () => {
    state.selected = null;
    tid("alert-detail").hidden = true;
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
      if (!unit) { tid("action-error").textContent = "Enter a unit to assign."; return; }
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
        ? `Not allowed from this state (${err.message})` : `Failed: ${err.message}`;
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

// -- start -------------------------------------------------------------------------------

async function loadAlerts() {
  const list = await api("/api/alerts?limit=500");
  const alerts = Array.isArray(list) ? list : list.alerts || [];
  // Chunks of 100 with a yield between them keep main-thread tasks short on first load.
  for (let i = 0; i < alerts.length; i += 100) {
    for (const a of alerts.slice(i, i + 100)) upsertAlert(a);
    if (i + 100 < alerts.length) await new Promise((r) => setTimeout(r, 0));
  }
  updateCounts();
}

async function start() {
  await setupMap();
  // Feed first, listing second: nothing raised in between is missed, and the listing's
  // copies never overwrite newer ones from the feed (upsertAlert compares updated_at).
  connectWs();
  await Promise.all([refreshCameras(), loadAlerts().catch((e) => console.warn("alerts", e))]);
  setInterval(refreshCameras, 30000);
  document.body.dataset.ready = "true";
  performance.mark("citysight-ready");
}

// Exposed for tests and the benchmark (measure message application without a server).
window.citysight = {
  state, handleMessage, flush, upsertAlert, setCameraHealth, addCameras, connectWs, showCamera,
};

setupLogin();
setupFilters();
setupDetail();
