// The district map, drawn as SVG from the reference data: no tile server, no internet.
// Jurisdiction polygons (one per office) and devices as points coloured by their worst
// firing alert. Clicking a polygon or a point filters the alert list.

const NS = "http://www.w3.org/2000/svg";
const W = 600;
const H = 420;
const PAD = 16;
const RANK = { critical: 4, major: 3, minor: 2, info: 1 };

function el(name, attrs, parent) {
  const e = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (parent) parent.appendChild(e);
  return e;
}

function rings(geometry) {
  if (!geometry) return [];
  if (geometry.type === "Polygon") return [geometry.coordinates];
  if (geometry.type === "MultiPolygon") return geometry.coordinates;
  return [];
}

/** Whether [lon, lat] lies inside a GeoJSON polygon or multipolygon (even-odd rule). */
export function contains(geometry, lon, lat) {
  let inside = false;
  for (const polygon of rings(geometry)) {
    for (const ring of polygon) {
      for (let i = 0, j = ring.length - 1; i < ring.length; j = i++) {
        const [xi, yi] = ring[i];
        const [xj, yj] = ring[j];
        if (yi > lat !== yj > lat && lon < ((xj - xi) * (lat - yi)) / (yj - yi) + xi)
          inside = !inside;
      }
    }
  }
  return inside;
}

/** The device an alert is about, as `kind:id`, from its labels. */
export function deviceOf(labels) {
  if (!labels) return null;
  if (labels.elevator_id) return "elevator:" + labels.elevator_id;
  if (labels.kitchen_id) return "kitchen:" + labels.kitchen_id;
  if (labels.market_id) return "market:" + labels.market_id;
  return null;
}

/**
 * Draws `data` (from /api/v1/map) into `svg`, colouring devices by `alerts` (firing ones).
 * `selected` is the current filter ({area, device}); `onPick({area?, device?})` is called on
 * a click.
 */
export function drawMap(svg, data, alerts, selected, onPick) {
  svg.replaceChildren();
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  const features = (data.jurisdictions && data.jurisdictions.features) || [];
  const devices = [
    ...data.elevators.map((d) => ({ ...d, kind: "elevator" })),
    ...data.kitchens.map((d) => ({ ...d, kind: "kitchen" })),
    ...data.markets.map((d) => ({ ...d, kind: "market" })),
  ];
  const xs = [];
  const ys = [];
  for (const f of features)
    for (const polygon of rings(f.geometry))
      for (const ring of polygon)
        for (const [x, y] of ring) {
          xs.push(x);
          ys.push(y);
        }
  for (const d of devices) {
    xs.push(d.lon);
    ys.push(d.lat);
  }
  if (!xs.length) {
    el("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "map-empty" }, svg)
      .textContent = "—";
    return;
  }
  const [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  const [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  // Equirectangular, with longitude shrunk by cos(latitude) so shapes keep their proportions.
  const k = Math.cos((((y0 + y1) / 2) * Math.PI) / 180);
  const scale = Math.min(
    (W - 2 * PAD) / Math.max((x1 - x0) * k, 1e-9),
    (H - 2 * PAD) / Math.max(y1 - y0, 1e-9),
  );
  const px = (lon) => PAD + (lon - x0) * k * scale;
  const py = (lat) => H - PAD - (lat - y0) * scale;

  const worst = new Map();
  for (const a of alerts) {
    const d = deviceOf(a.labels);
    if (!d) continue;
    const s = a.labels && a.labels.rule === "elevator.offline" ? "offline" : a.severity;
    const prev = worst.get(d);
    if (!prev || (RANK[s] || 0) > (RANK[prev] || 0)) worst.set(d, s);
  }

  for (const f of features) {
    const id = (f.properties && f.properties.office_id) || "";
    const path = rings(f.geometry)
      .map((polygon) =>
        polygon
          .map((ring) => "M" + ring.map(([x, y]) => `${px(x).toFixed(1)},${py(y).toFixed(1)}`).join("L") + "Z")
          .join(""),
      )
      .join("");
    const p = el("path", {
      d: path,
      class: "area" + (selected.area === id ? " selected" : ""),
      "data-area": id,
    }, svg);
    p.addEventListener("click", () => onPick({ area: selected.area === id ? null : id }));
    const all = rings(f.geometry).flat(2);
    const cx = all.reduce((s, c) => s + c[0], 0) / Math.max(all.length, 1);
    const cy = all.reduce((s, c) => s + c[1], 0) / Math.max(all.length, 1);
    el("text", { x: px(cx), y: py(cy), class: "area-name", "text-anchor": "middle" }, svg)
      .textContent = (f.properties && f.properties.name) || id;
  }

  for (const d of devices) {
    const key = d.kind + ":" + d.id;
    const state = worst.get(key) || "ok";
    const cls = `dev dev-${d.kind} st-${state}` + (selected.device === key ? " selected" : "");
    const x = px(d.lon);
    const y = py(d.lat);
    let shape;
    if (d.kind === "elevator") shape = el("circle", { cx: x, cy: y, r: 4.5, class: cls }, svg);
    else if (d.kind === "kitchen")
      shape = el("rect", { x: x - 5, y: y - 5, width: 10, height: 10, class: cls }, svg);
    else
      shape = el("path", { d: `M${x},${y - 7}L${x + 7},${y}L${x},${y + 7}L${x - 7},${y}Z`, class: cls }, svg);
    shape.setAttribute("data-device", key);
    el("title", {}, shape).textContent = `${d.id} ${d.name || ""}`;
    shape.addEventListener("click", (e) => {
      e.stopPropagation();
      onPick({ device: selected.device === key ? null : key });
    });
  }
}

/** The office whose polygon holds a device, for the area filter. */
export function areaIndex(data) {
  const features = (data.jurisdictions && data.jurisdictions.features) || [];
  const index = new Map();
  const all = [
    ...data.elevators.map((d) => ["elevator:" + d.id, d]),
    ...data.kitchens.map((d) => ["kitchen:" + d.id, d]),
    ...data.markets.map((d) => ["market:" + d.id, d]),
  ];
  for (const [key, d] of all) {
    const f = features.find((f) => contains(f.geometry, d.lon, d.lat));
    if (f) index.set(key, (f.properties && f.properties.office_id) || "");
  }
  return index;
}
