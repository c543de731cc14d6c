/* citysight operations map — Timeline extras: camera re-check verdicts, report and feedback photos. */
import { api, t } from "./core.js";

/** Label and photo thumbnails of one timeline event (a no-op for plain transitions). */
export function decorateEvent(li, ev) {
  if (!ev.action) return;
  li.dataset.action = ev.action;
  const tag = document.createElement("span");
  tag.className = `tl-action tl-${ev.action}`;
  tag.dataset.testid = "timeline-action";
  tag.textContent = t(`timeline.${ev.action}`);
  li.insertBefore(tag, li.children[1] || null);
  if (!ev.evidence || !ev.evidence.length) return;
  const box = document.createElement("div");
  box.className = "tl-photos";
  li.appendChild(box);
  for (const item of ev.evidence) {
    const img = document.createElement("img");
    img.dataset.testid = "timeline-photo";
    img.alt = t(`timeline.${ev.action}`);
    box.appendChild(img);
    // Redacted like every evidence view (faces blurred on the server).
    api(`/api/alerts/${encodeURIComponent(ev.alert_id)}/evidence/${encodeURIComponent(item)}`, { raw: true })
      .then((res) => res.blob())
      .then((blob) => { img.src = URL.createObjectURL(blob); })
      .catch(() => { img.alt = t("timeline.photo_unavailable"); });
  }
}
