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
// onPoint(point) makes the first series' points inspectable: hover, or focus the chart and use the
// arrow keys (one Tab stop); the caller shows the point's details.
export function lineChart(series, { width = 640, height = 300, xLabel = "labels", yLabel = "accuracy", title, onPoint } = {}) {
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
    pts.forEach((p) => {
      const dot = s("circle", { cx: x(p.x), cy: y(p.y), r: "3", fill: color, class: "point" },
        s("title", {}, `${sr.name}: ${Math.round(p.x)} labels, ${(100 * p.y).toFixed(1)}%`));
      svg.append(dot);
      if (onPoint && i === 0) {
        // A wider invisible target than the 3 px dot, so hovering does not need a steady hand.
        const hit = s("circle", { cx: x(p.x), cy: y(p.y), r: "10", fill: "transparent", class: "hit" });
        hit.addEventListener("mouseenter", () => inspect(pts.indexOf(p)));
        svg.append(hit);
      }
    });
    svg.append(s("rect", { x: width - pad.r + 10, y: pad.t + i * 18, width: 12, height: 12, fill: color }),
      s("text", { x: width - pad.r + 28, y: pad.t + i * 18 + 10, class: "legend" }, sr.name));
  });
  const inspected = [...series[0].points].sort((a, b) => a.x - b.x);
  let at = -1;
  function inspect(k) {
    at = (k + inspected.length) % inspected.length;
    const p = inspected[at];
    svg.querySelector(".cursor")?.remove();
    svg.append(s("circle", { cx: x(p.x), cy: y(p.y), r: "6", class: "cursor", fill: "none", stroke: "#24292f", "stroke-width": "2" }));
    onPoint(p);
  }
  if (onPoint && inspected.length) {
    svg.setAttribute("tabindex", "0");
    svg.setAttribute("aria-label", `${title || "chart"}. Arrow keys move between rounds; the details appear below the chart.`);
    svg.addEventListener("keydown", (e) => {
      if (["ArrowRight", "ArrowDown"].includes(e.key)) inspect(at + 1);
      else if (["ArrowLeft", "ArrowUp"].includes(e.key)) inspect(at - 1);
      else return;
      e.preventDefault();
    });
  }
  return svg;
}

const STATUS_COLORS = { unlabelled: "#afb8c1", labelled: "#1f6feb", suggested: "#d1242f", synthetic: "#8250df" };
// Ten classes get a categorical palette that stays apart for common colour-vision deficiencies
// (Tableau 10); more classes get evenly spaced hues.
const CLASS_PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#79706e"];
export function classColour(i, n) {
  return n <= CLASS_PALETTE.length ? CLASS_PALETTE[i] : `hsl(${Math.round((i * 360) / n)}, 65%, 48%)`;
}
const NONE = "#d0d7de";

const SPACE_TEXT = { simclr: "SimCLR", "pixels-pca": "pixel PCA", vae: "VAE" };
const LAYOUT_TEXT = {
  tsne: "t-SNE layout",
  pca: "PCA projection",
};

// The colour of a point and the legend category it belongs to, for each "colour by" choice.
function colouring(mode, classes) {
  const index = Object.fromEntries(classes.map((c, i) => [c, i]));
  if (mode === "label" || mode === "prediction") {
    const field = mode === "label" ? "label" : "predicted";
    const none = mode === "label" ? "no label" : "no prediction";
    return {
      category: (p) => p[field] ?? none,
      colour: (p) => (p[field] in index ? classColour(index[p[field]], classes.length) : NONE),
      categories: [...classes.map((c, i) => [c, classColour(i, classes.length)]), [none, NONE]],
    };
  }
  return { category: (p) => p.status, colour: (p) => STATUS_COLORS[p.status], categories: Object.entries(STATUS_COLORS) };
}

// res: the latent-map response ({data, classes, layout, layout_pending, space, round_index}).
// onSelect(points, title) opens a set of points as a grid; onOpen(point) opens one image.
export function latentMap(res, { width = 640, height = 440, onOpen, onSelect, mode = "status", onMode } = {}) {
  const points = res.data || [];
  const classes = res.classes || [];
  const wrap = h("div.latent-map", { dataset: { layout: res.layout || "none" } });
  const hasPredictions = points.some((p) => p.predicted);
  const modes = [["status", "status"], ["label", "label"], ...(hasPredictions ? [["prediction", "prediction"]] : [])];
  if (!modes.some(([m]) => m === mode)) mode = "status";
  const colourBy = h("select", { id: "map-colour", onchange: (e) => onMode?.(e.target.value) },
    modes.map(([value, text]) => h("option", { value, selected: value === mode }, text)));
  const space = res.space ? ` of the ${SPACE_TEXT[res.space] || res.space} features` : "";
  const about = res.layout
    ? `${LAYOUT_TEXT[res.layout] || res.layout}${space}, round ${res.round_index}${res.layout_pending ? " (a neighbourhood-keeping layout is being built and replaces this by itself)" : ""}${res.layout_error ? ` (t-SNE failed: ${res.layout_error})` : ""}.`
    : "";
  wrap.append(h("div.map-toolbar", {}, h("label", { for: "map-colour" }, "Colour by"), colourBy,
    h("span.map-about", {}, about, points.length ? " Drag across the map to open a region as a grid." : "")));
  // One Tab stop for the whole map: arrow keys walk the labelled, suggested and synthetic points,
  // Enter opens one; the circles themselves are decoration for assistive technology.
  const svg = s("svg", {
    viewBox: `0 0 ${width} ${height}`, role: "img", class: "chart", tabindex: "0",
    "aria-label": "Latent map of the pool. Arrow keys move between labelled and suggested images, Enter opens one; the legend's buttons open a class or status as a grid.",
  });
  const tip = h("div.tip", { hidden: true }, h("img", { alt: "", width: "96", height: "96" }), h("span"));
  const spoken = h("p.visually-hidden", { "aria-live": "polite" });
  wrap.append(svg, tip, spoken);
  if (!points.length) {
    svg.append(s("text", { x: width / 2, y: height / 2, "text-anchor": "middle" }, "no latents yet: run a round first"));
    return wrap;
  }
  const paint = colouring(mode, classes);
  const pad = 12;
  const x = scale([Math.min(...points.map((p) => p.x)), Math.max(...points.map((p) => p.x))], [pad, width - pad]);
  const y = scale([Math.min(...points.map((p) => p.y)), Math.max(...points.map((p) => p.y))], [height - pad, pad]);
  // Unlabelled first so the interesting points are drawn on top.
  const order = { unlabelled: 0, labelled: 1, synthetic: 2, suggested: 3 };
  const describe = (p) => `image ${p.image_id}, ${p.status}${p.label ? `, label ${p.label}` : ""}${p.predicted ? `, predicted ${p.predicted} (${Math.round(p.confidence * 100)}%)` : ""}`;
  function showTip(p, left, top) {
    tip.hidden = false;
    tip.querySelector("img").src = `/api/v1/images/${p.image_id}/thumbnail`;
    tip.querySelector("span").textContent = `#${p.image_id} ${p.status}${p.label ? ` (${p.label})` : ""}${p.predicted ? `, predicted ${p.predicted}` : ""}`;
    tip.style.left = `${left}px`;
    tip.style.top = `${top}px`;
  }
  const dots = new Map();
  for (const p of [...points].sort((a, b) => order[a.status] - order[b.status])) {
    const dot = s("circle", {
      cx: x(p.x), cy: y(p.y), r: p.status === "unlabelled" ? "2.2" : "3.5", fill: paint.colour(p),
      class: `dot ${p.status}`, "aria-hidden": "true", "data-id": String(p.image_id),
    });
    if (p.status === "suggested" && mode !== "status") dot.setAttribute("stroke", "#24292f");
    dot.addEventListener("mouseenter", (e) => {
      const box = wrap.getBoundingClientRect();
      showTip(p, e.clientX - box.left + 12, e.clientY - box.top + 12);
    });
    dot.addEventListener("mouseleave", () => { tip.hidden = true; });
    dots.set(p, dot);
    svg.append(dot);
  }

  // Box selection: drag a rectangle; the points inside open as a grid. A press without a drag on a
  // point opens that one image.
  const band = s("rect", { class: "band", hidden: "" });
  svg.append(band);
  const toSvg = (e) => {
    const pt = svg.createSVGPoint();
    pt.x = e.clientX; pt.y = e.clientY;
    return pt.matrixTransform(svg.getScreenCTM().inverse());
  };
  let start = null;
  let pressed = null;  // the point under the press: pointer capture hides it from pointerup
  svg.addEventListener("pointerdown", (e) => {
    if (e.button !== 0) return;
    start = toSvg(e);
    const hit = e.target.closest?.("circle.dot");
    pressed = hit ? [...dots].find(([, d]) => d === hit)?.[0] : null;
    svg.setPointerCapture(e.pointerId);
  });
  svg.addEventListener("pointermove", (e) => {
    if (!start) return;
    const at = toSvg(e);
    band.removeAttribute("hidden");
    band.setAttribute("x", Math.min(start.x, at.x)); band.setAttribute("y", Math.min(start.y, at.y));
    band.setAttribute("width", Math.abs(at.x - start.x)); band.setAttribute("height", Math.abs(at.y - start.y));
  });
  svg.addEventListener("pointerup", (e) => {
    if (!start) return;
    const at = toSvg(e);
    const [x0, x1] = [Math.min(start.x, at.x), Math.max(start.x, at.x)];
    const [y0, y1] = [Math.min(start.y, at.y), Math.max(start.y, at.y)];
    start = null;
    band.setAttribute("hidden", "");
    if (x1 - x0 < 4 && y1 - y0 < 4) {
      if (pressed) onOpen?.(pressed);
      return;
    }
    const inside = points.filter((p) => x(p.x) >= x0 && x(p.x) <= x1 && y(p.y) >= y0 && y(p.y) <= y1);
    onSelect?.(inside, `${inside.length} images in the selected region`);
  });

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
    else if (e.key === "Enter" && at >= 0) onOpen?.(walk[at]);
    else if (e.key === "Escape") tip.hidden = true;
    else return;
    e.preventDefault();
    e.stopPropagation();
  });
  svg.addEventListener("blur", () => { tip.hidden = true; });
  // The legend doubles as a keyboard way to select: each category opens its points as a grid.
  const legend = h("ul.legend", { "aria-label": `Colour legend (${mode})` }, paint.categories.map(([name, colour]) => {
    const members = points.filter((p) => paint.category(p) === name);
    return h("li", {}, h("button.legend-item", {
      type: "button", disabled: !members.length, "data-category": name,
      "aria-label": `${name} (${members.length}): open as a grid`,
      onclick: () => onSelect?.(members, `${members.length} images: ${mode} ${name}`),
    }, h("span.swatch", { style: `background:${colour}`, "aria-hidden": "true" }), ` ${name} (${members.length})`));
  }));
  wrap.append(legend);
  return wrap;
}

// Relative luminance (WCAG) of "#rrggbb", to pick a text colour a cell can be read on.
function luminance(hex) {
  const [r, g, b] = [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16) / 255)
    .map((c) => (c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4));
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
}

function shade(t) {
  const from = [255, 255, 255];
  const to = [9, 48, 105];
  return `#${from.map((f, i) => Math.round(f + (to[i] - f) * t).toString(16).padStart(2, "0")).join("")}`;
}

// A round's confusion matrix as a table: rows are the true class, columns the prediction; cells are
// shaded by the share of their row, with the count written in them.
export function confusionTable(classes, matrix, caption) {
  const head = h("tr", {}, h("th", { scope: "col" }, "true \\ predicted"), classes.map((c) => h("th", { scope: "col" }, c)));
  const rows = matrix.map((row, i) => {
    const total = row.reduce((a, b) => a + b, 0);
    return h("tr", {}, h("th", { scope: "row" }, `${classes[i]} (${total})`), row.map((count, j) => {
      const share = total ? count / total : 0;
      const bg = shade(share);
      const fg = (luminance(bg) + 0.05) / 0.05 >= 1.05 / (luminance(bg) + 0.05) ? "#000000" : "#ffffff";
      return h("td", {
        class: i === j ? "diagonal" : "", style: `background:${bg};color:${fg}`,
        title: `true ${classes[i]}, predicted ${classes[j]}: ${count} of ${total}`,
      }, String(count));
    }));
  });
  return h("table.confusion", {}, h("caption", {}, caption), h("thead", {}, head), h("tbody", {}, rows));
}
