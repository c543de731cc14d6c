/* citysight operations map — The Leaflet map: graticule base layer, overlays, camera markers (clustered) and popups. */

import { $, HEALTH_COLOURS, PANES, PANE_Z, api, fmtTime, hasScope, setTimeZone, state, t, tEnum } from "./core.js";
import { openAlert } from "./detail.js";
import { livePanel } from "./live.js";

// -- map ---------------------------------------------------------------------------------

/** Lat/lon lines drawn per tile on a canvas: the default base layer (no tile server). */
export const Graticule = L.GridLayer.extend({
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

export function clusterIcon(cluster) {
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

/** An element showing ``text`` as text (Leaflet tooltips and popups take HTML strings). */
function textNode(text) {
  const el = document.createElement("span");
  el.textContent = text;
  return el;
}

export async function setupMap() {
  const cfg = state.mapConfig || await api("/api/config/map");
  setTimeZone(cfg.timezone);
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
          // A DOM node, not a string: Leaflet renders string tooltips as HTML, and overlay
          // names come from operator-supplied files.
          if (name) layer.bindTooltip(textNode(String(name)));
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
  for (const [k, name] of Object.entries(PANES)) map.createPane(name).style.zIndex = String(PANE_Z[k]);
  state.cluster = L.markerClusterGroup({
    clusterPane: PANES.clusters,
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
  addLayerControl();
  L.control.scale().addTo(map);

  await addCameras(cams);
}

/** The layers control, labelled in the current language (rebuilt after a switch). */
export function addLayerControl() {
  if (!state.map) return;
  if (state.layerControl) state.layerControl.remove();
  const layers = { [t("map.layer_cameras")]: state.cluster, [t("map.layer_alerts")]: state.alertLayer };
  state.layerControl = L.control.layers(null, Object.assign(layers, state.overlays || {}), { collapsed: true })
    .addTo(state.map);
}

export const CAMERA_ICONS = new Map();

/** Camera dot coloured by health, with a view cone when the heading is known (icons shared). */
export function cameraIcon(health, heading) {
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
export function addCameras(cams) {
  const markers = [];
  for (const cam of cams) {
    if (state.cameras.has(cam.id) || cam.latitude == null) continue;
    // Start with the health the listing carries, so the first paint needs no cluster refresh.
    const health = healthState(cam.health || (cam.state ? { state: cam.state } : null));
    const marker = L.marker([cam.latitude, cam.longitude], {
      icon: cameraIcon(health, cam.heading_deg), health, title: cam.name || cam.id, keyboard: false,
      pane: PANES.cameras,
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

export function healthState(h) {
  if (!h) return "offline";
  const s = h.state || (h.health && h.health.state) || "offline";
  // A running reader whose frames are not analysed (inference down): detection has stopped
  // there, so the marker must not look healthy.
  const analysed = h.analysed !== undefined ? h.analysed : h.health && h.health.analysed;
  if (s === "running" && analysed === false) return "not_analysed";
  if (s === "starting" || s === "stopped") return s === "starting" ? "stalled" : "offline";
  return HEALTH_COLOURS[s] ? s : "offline";
}

export function setCameraHealth(id, health) {
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

/** Drop a deleted camera's marker (WebSocket ``camera_removed``). */
export function removeCamera(id) {
  const entry = state.cameras.get(id);
  if (!entry) return;
  state.clusterRefresh.delete(entry.marker);
  state.cluster.removeLayer(entry.marker);
  state.cameras.delete(id);
  document.body.dataset.cameras = String(state.cameras.size);
}

export async function refreshCameras() {
  try {
    const list = await api("/api/cameras");
    const cams = Array.isArray(list) ? list : list.cameras || [];
    addCameras(cams.filter((c) => !state.cameras.has(c.id)));
    const listed = new Set(cams.map((c) => c.id));
    for (const id of [...state.cameras.keys()]) if (!listed.has(id)) removeCamera(id);  // deleted meanwhile
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

export function flushClusterRefresh() {
  if (!state.clusterRefresh.size) return;
  state.cluster.refreshClusters([...state.clusterRefresh]);
  state.clusterRefresh.clear();
}

/** Zoom to a camera (out of its cluster) and open its popup. */
export function showCamera(id) {
  const entry = state.cameras.get(id);
  if (!entry) return;
  state.cluster.zoomToShowLayer(entry.marker, () => entry.marker.openPopup());
}

/** Seconds since the camera's last frame, from its last status (age then + time since). */
export function lastFrameAge(h) {
  const m = h.metrics || {};
  const base = m.last_frame_age_s != null ? m.last_frame_age_s : h.last_frame_age_s;
  if (base == null || base < 0) return null;
  return h.at ? base + Math.max(0, Date.now() / 1000 - h.at) : base;
}

export function cameraPopup(id) {
  const entry = state.cameras.get(id);
  const c = entry.cam;
  const h = entry.health || {};
  const p = c.profile || {};
  const el = document.createElement("div");
  el.className = "cam-popup";
  el.dataset.testid = "camera-popup";
  const age = lastFrameAge(h);
  const ageText = age == null ? t("camera.age_unknown")
    : age < 120 ? t("camera.age_s", { s: age.toFixed(1) }) : t("camera.age_min", { n: Math.round(age / 60) });
  const prof = [p.analytics_fps != null ? t("camera.fps", { fps: p.analytics_fps }) : null,
    p.keyframe_only ? t("camera.keyframes_only") : null,
    p.input_width ? `${p.input_width}×${p.input_height}` : null].filter(Boolean).join(", ");
  el.innerHTML = `<b></b><div class="sub"></div><table>
    <tr><th class="lh"></th><td class="h"></td></tr><tr><th class="lp"></th><td class="p"></td></tr>
    <tr><th class="la"></th><td class="a"></td></tr></table><div class="recent"><i></i><ul></ul></div>`;
  $(".lh", el).textContent = t("camera.health");
  $(".lp", el).textContent = t("camera.profile");
  $(".la", el).textContent = t("camera.last_frame");
  $(".recent i", el).textContent = t("camera.recent");
  $("b", el).textContent = c.name || c.id;
  $(".sub", el).textContent = [c.id, c.jurisdiction].filter(Boolean).join(" · ");
  $(".h", el).textContent = tEnum("health", healthState(h));
  $(".h", el).className = `h health-${healthState(h)}`;
  $(".p", el).textContent = prof || t("camera.profile_default");
  $(".a", el).textContent = ageText;
  const ul = $("ul", el);
  const recent = [...state.alerts.values()].map((e) => e.alert)
    .filter((a) => a.camera_id === id || (a.camera_ids || []).includes(id))
    .sort((a, b) => Date.parse(b.started_at) - Date.parse(a.started_at)).slice(0, 5);
  for (const a of recent) {
    const li = document.createElement("li");
    li.textContent = [tEnum("kind", a.kind), tEnum("severity", a.severity), tEnum("state", a.state),
      fmtTime(a.started_at)].join(" · ");
    li.addEventListener("click", () => openAlert(a.id));
    ul.appendChild(li);
  }
  if (!recent.length) {
    const li = document.createElement("li");
    li.className = "none";
    li.textContent = t("camera.recent_none");
    ul.appendChild(li);
  }
  if (c.live_url && hasScope("video:live")) el.appendChild(livePanel(c));
  return el;
}
