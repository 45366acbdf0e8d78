// SVG charts drawn by hand: a learning curve (lines with bands) and the latent map (scatter).
import { h, s } from "./dom.js";

const PALETTE = ["#1f6feb", "#d1242f", "#1a7f37", "#8250df", "#bc4c00", "#0a7b83", "#6e7781", "#bf3989", "#4d2d00"];

function scale(domain, range) {
  const [d0, d1] = domain;
  const [r0, r1] = range;
  const span = d1 - d0 || 1;
  return (v) => r0 + ((v - d0) / span) * (r1 - r0);
}

// series: [{name, points: [{x, y, lo?, hi?}], dashed?}]
export function lineChart(series, { width = 640, height = 300, xLabel = "labels", yLabel = "accuracy", title } = {}) {
  const pad = { l: 52, r: 140, t: 16, b: 40 };
  const all = series.flatMap((sr) => sr.points);
  const svg = s("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": title || "chart", class: "chart" });
  if (!all.length) {
    svg.append(s("text", { x: width / 2, y: height / 2, "text-anchor": "middle" }, "no data yet"));
    return svg;
  }
  const xs = all.map((p) => p.x);
  const ys = all.flatMap((p) => [p.y, p.lo ?? p.y, p.hi ?? p.y]);
  const x = scale([Math.min(...xs), Math.max(...xs)], [pad.l, width - pad.r]);
  const yMin = Math.max(0, Math.floor(Math.min(...ys) * 10) / 10);
  const y = scale([yMin, 1], [height - pad.b, pad.t]);
  for (let t = yMin; t <= 1.0001; t += 0.1) {
    svg.append(s("line", { x1: pad.l, x2: width - pad.r, y1: y(t), y2: y(t), class: "gridline" }),
      s("text", { x: pad.l - 6, y: y(t) + 4, "text-anchor": "end", class: "tick" }, `${Math.round(t * 100)}%`));
  }
  const xTicks = [...new Set(xs)].sort((a, b) => a - b);
  const step = Math.ceil(xTicks.length / 8);
  xTicks.filter((_, i) => i % step === 0).forEach((t) =>
    svg.append(s("text", { x: x(t), y: height - pad.b + 16, "text-anchor": "middle", class: "tick" }, String(Math.round(t)))));
  svg.append(s("text", { x: (pad.l + width - pad.r) / 2, y: height - 6, "text-anchor": "middle", class: "axis" }, xLabel),
    s("text", { x: 12, y: height / 2, transform: `rotate(-90 12 ${height / 2})`, "text-anchor": "middle", class: "axis" }, yLabel));
  series.forEach((sr, i) => {
    const color = sr.color || PALETTE[i % PALETTE.length];
    const pts = [...sr.points].sort((a, b) => a.x - b.x);
    if (pts.some((p) => p.lo !== undefined)) {
      const upper = pts.map((p) => `${x(p.x)},${y(p.hi ?? p.y)}`);
      const lower = pts.slice().reverse().map((p) => `${x(p.x)},${y(p.lo ?? p.y)}`);
      svg.append(s("polygon", { points: [...upper, ...lower].join(" "), fill: color, opacity: "0.15" }));
    }
    svg.append(s("polyline", {
      points: pts.map((p) => `${x(p.x)},${y(p.y)}`).join(" "), fill: "none", stroke: color, "stroke-width": "2",
      "stroke-dasharray": sr.dashed ? "5 4" : "none", class: "series", "data-series": sr.name,
    }));
    pts.forEach((p) => svg.append(s("circle", { cx: x(p.x), cy: y(p.y), r: "3", fill: color },
      s("title", {}, `${sr.name}: ${Math.round(p.x)} labels, ${(100 * p.y).toFixed(1)}%`))));
    svg.append(s("rect", { x: width - pad.r + 10, y: pad.t + i * 18, width: 12, height: 12, fill: color }),
      s("text", { x: width - pad.r + 28, y: pad.t + i * 18 + 10, class: "legend" }, sr.name));
  });
  return svg;
}

const STATUS_COLORS = { unlabelled: "#afb8c1", labelled: "#1f6feb", suggested: "#d1242f", synthetic: "#8250df" };

export function latentMap(points, { width = 640, height = 440, onOpen } = {}) {
  const wrap = h("div.latent-map");
  // One Tab stop for the whole map: arrow keys walk the labelled, suggested and synthetic points,
  // Enter opens one; the circles themselves are decoration for assistive technology.
  const svg = s("svg", {
    viewBox: `0 0 ${width} ${height}`, role: "img", class: "chart", tabindex: "0",
    "aria-label": "Latent map of the pool. Arrow keys move between labelled and suggested images, Enter opens one.",
  });
  const tip = h("div.tip", { hidden: true }, h("img", { alt: "", width: "96", height: "96" }), h("span"));
  const spoken = h("p.visually-hidden", { "aria-live": "polite" });
  wrap.append(svg, tip, spoken);
  if (!points.length) {
    svg.append(s("text", { x: width / 2, y: height / 2, "text-anchor": "middle" }, "no latents yet: run a round first"));
    return wrap;
  }
  const pad = 12;
  const x = scale([Math.min(...points.map((p) => p.x)), Math.max(...points.map((p) => p.x))], [pad, width - pad]);
  const y = scale([Math.min(...points.map((p) => p.y)), Math.max(...points.map((p) => p.y))], [height - pad, pad]);
  // Unlabelled first so the interesting points are drawn on top.
  const order = { unlabelled: 0, labelled: 1, synthetic: 2, suggested: 3 };
  const describe = (p) => `image ${p.image_id}, ${p.status}${p.label ? `, label ${p.label}` : ""}`;
  function showTip(p, left, top) {
    tip.hidden = false;
    tip.querySelector("img").src = `/api/v1/images/${p.image_id}/thumbnail`;
    tip.querySelector("span").textContent = `#${p.image_id} ${p.status}${p.label ? ` (${p.label})` : ""}`;
    tip.style.left = `${left}px`;
    tip.style.top = `${top}px`;
  }
  const dots = new Map();
  for (const p of [...points].sort((a, b) => order[a.status] - order[b.status])) {
    const dot = s("circle", {
      cx: x(p.x), cy: y(p.y), r: p.status === "unlabelled" ? "2" : "3.5", fill: STATUS_COLORS[p.status],
      class: `dot ${p.status}`, "aria-hidden": "true",
    });
    dot.addEventListener("mouseenter", (e) => {
      const box = wrap.getBoundingClientRect();
      showTip(p, e.clientX - box.left + 12, e.clientY - box.top + 12);
    });
    dot.addEventListener("mouseleave", () => { tip.hidden = true; });
    dot.addEventListener("click", () => onOpen?.(p.image_id));
    dots.set(p, dot);
    svg.append(dot);
  }
  // Keyboard order: left to right across the map.
  const walk = points.filter((p) => p.status !== "unlabelled").sort((a, b) => a.x - b.x || a.y - b.y);
  let at = -1;
  function focusPoint(i) {
    if (!walk.length) return;
    at = (i + walk.length) % walk.length;
    const p = walk[at];
    svg.querySelector(".dot.cursor")?.classList.remove("cursor");
    dots.get(p).classList.add("cursor");
    const box = wrap.getBoundingClientRect();
    const dotBox = dots.get(p).getBoundingClientRect();
    showTip(p, dotBox.left - box.left + 12, dotBox.top - box.top + 12);
    spoken.textContent = `${at + 1} of ${walk.length}: ${describe(p)}`;
  }
  svg.addEventListener("keydown", (e) => {
    if (["ArrowRight", "ArrowDown"].includes(e.key)) focusPoint(at + 1);
    else if (["ArrowLeft", "ArrowUp"].includes(e.key)) focusPoint(at - 1);
    else if (e.key === "Enter" && at >= 0) onOpen?.(walk[at].image_id);
    else if (e.key === "Escape") tip.hidden = true;
    else return;
    e.preventDefault();
    e.stopPropagation();
  });
  svg.addEventListener("blur", () => { tip.hidden = true; });
  const legend = h("ul.legend", {}, Object.entries(STATUS_COLORS).map(([k, c]) =>
    h("li", {}, h("span.swatch", { style: `background:${c}` }), ` ${k} (${points.filter((p) => p.status === k).length})`)));
  wrap.append(legend);
  return wrap;
}
