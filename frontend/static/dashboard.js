// The engineer's project dashboard: rounds with live progress, trigger/cancel, learning curve,
// simulation bands, latent map, per-class counts and exports.
import { api } from "./api.js";
import { classColour, confusionTable, latentMap, lineChart } from "./charts.js";
import { fmtSeconds, h, pct, showError } from "./dom.js";

const ACTIVE = new Set(["queued", "training", "selecting"]);

export function dashboardView(root, project, me) {
  const roundsBody = h("tbody");
  const curve = h("div.curve");
  const simCurve = h("div.curve");
  const map = h("div");
  const curveDetail = h("div.curve-detail", { "aria-live": "polite" });
  const confusion = h("div.confusion-view");
  const selection = h("section.map-selection", { hidden: true, "aria-label": "Selected images" });
  const viewer = h("dialog.image-viewer", { "aria-labelledby": "viewer-title" });
  let mapMode = "status";
  let mapTimer = null;
  const classCounts = h("table.counts");
  const form = roundForm();
  let timer = null;
  // Refreshed with the class counts, so it never disagrees with the map drawn beside it.
  const summary = h("p.summary");
  const describeCounts = (c) => `${c.pool} pool images · ${c.validation} validation · ${c.labelled} labelled · ${c.synthetic} synthetic`;
  summary.textContent = describeCounts(project.counts);
  let lastStatuses = null;
  let countsAt = 0;  // null, not "": a project with no rounds yet still draws its sections once
  const representation = h("section.representation", { "aria-labelledby": "representation-title" });
  let representationTimer = null;

  root.replaceChildren(h("section.dashboard", {},
    h("h1", {}, `Dashboard: ${project.name}`),
    summary,
    representation,
    h("div.columns", {},
      h("div", {},
        h("h2", {}, "Rounds"),
        h("table.rounds", {}, h("thead", {}, h("tr", {}, ["#", "strategy", "status", "progress", "duration", "labels", "val. accuracy", ""].map((t) => h("th", { scope: "col" }, t)))), roundsBody),
        me.role !== "annotator" ? form : null),
      h("div", {}, h("h2", {}, "Labels per class"), classCounts,
        me.role !== "annotator" ? h("p.exports", {},
          h("a.button", { href: `/api/v1/projects/${project.id}/export?format=csv`, download: "" }, "Export CSV"), " ",
          h("a.button", { href: `/api/v1/projects/${project.id}/export?format=json`, download: "" }, "Export JSON"), " ",
          h("a.button", { href: `/api/v1/projects/${project.id}/export?format=jsonl`, download: "" }, "JSON Lines"), " ",
          h("a.button", { href: `/api/v1/projects/${project.id}/export?format=imagefolder`, download: "" }, "ImageFolder zip")) : null)),
    h("h2", {}, "Learning curve"), h("div.curve-row", {}, curve, curveDetail),
    h("h2", {}, "Confusion matrix"), confusion,
    h("h2", {}, "Simulated strategies"), me.role !== "annotator" ? simulationForm() : null, simCurve,
    h("h2", {}, "Latent map"), map, selection, viewer));

  // Which strategy fits this data? An oracle simulation on the pool's uploaded labels, with live
  // progress and cancel; it runs on its own queue, so rounds never wait behind it.
  function simulationForm() {
    const picks = h("fieldset.strategies", {}, h("legend", {}, "Strategies"));
    const num = (id, value, label) => [h("label", { for: id }, label), h("input", { id, type: "number", min: "1", value })];
    const [initialLabel, initial] = num("sim-initial", "20", "Initial labels");
    const [batchLabel, batchSize] = num("sim-batch", "20", "Batch");
    const [roundsLabel, roundsIn] = num("sim-rounds", "10", "Rounds");
    const [seedsLabel, seeds] = num("sim-seeds", "3", "Seeds");
    const status = h("div.sim-status", { role: "status" });
    const submit = h("button", { type: "submit" }, "Start simulation");
    api("/strategies").then((res) => picks.append(...res.data.filter((st) => st.name !== "si").map((st) => h("label.check", {},
      h("input", { type: "checkbox", name: "sim-strategy", value: st.name, checked: ["auto", "random", "margin"].includes(st.name) }), ` ${st.name}`))))
      .catch(showError);
    let simTimer = null;
    async function watch(id) {
      clearTimeout(simTimer);
      let sim;
      try { sim = await api(`/simulations/${id}`); } catch (e) { showError(e); return; }
      const active = sim.status === "queued" || sim.status === "running";
      status.replaceChildren(...[h("span", {}, `Simulation ${sim.id}: ${sim.status} ${Math.round(sim.progress * 100)}%`),
        sim.error ? h("span.round-error", {}, ` ${sim.error}`) : null,
        active ? h("button", { type: "button", "aria-label": `Cancel simulation ${sim.id}`, onclick: async () => {
          try { await api(`/simulations/${sim.id}/cancel`, { method: "POST" }); await watch(sim.id); } catch (e) { showError(e); }
        } }, "Cancel") : null].filter(Boolean));
      submit.disabled = active;
      if (active) simTimer = setTimeout(() => watch(id), 1500);
      else if (sim.status === "ready") drawSimulations();
    }
    api(`/projects/${project.id}/simulations`).then((res) => { const last = res.data.at(-1); if (last) watch(last.id); }).catch(() => {});
    return h("form.round-form.sim-form", {
      onsubmit: async (e) => {
        e.preventDefault();
        showError(null);
        const strategies = [...picks.querySelectorAll("input:checked")].map((c) => c.value);
        try {
          const sim = await api(`/projects/${project.id}/simulations`, { method: "POST", body: {
            strategies, initial: Number(initial.value), batch: Number(batchSize.value), rounds: Number(roundsIn.value), seeds: Number(seeds.value) } });
          await watch(sim.id);
        } catch (err) { showError(err); }
      },
    }, h("h3", {}, "New simulation (on the pool's uploaded labels)"), picks, initialLabel, initial, batchLabel, batchSize,
      roundsLabel, roundsIn, seedsLabel, seeds, submit, status);
  }

  // The self-supervised representation rounds select in: learned by a background job after a pool
  // upload, so its progress (and a failure) must be visible here, not only through REST.
  async function drawRepresentation() {
    clearTimeout(representationTimer);
    let rows;
    try { rows = (await api(`/projects/${project.id}/representations`)).data; } catch (e) { showError(e); return; }
    const newest = rows[0];
    const active = newest && (newest.status === "queued" || newest.status === "training");
    const used = rows.find((r) => r.status === "ready");
    const lines = [];
    if (project.settings.representation === "none") {
      lines.push(h("p", {}, "Off in this project's settings: rounds select on the pixels' principal components or the VAE's latents."));
    } else if (!newest) {
      lines.push(h("p", {}, "None yet. It is learned in the background after a pool upload; until then rounds select on the pixels' principal components."));
    }
    if (active) {
      const share = Math.round(newest.progress * 100);
      // A queued job may be holding until an upload in several requests has arrived whole.
      const label = newest.status === "queued" ? (newest.phase && newest.phase !== "queued" ? newest.phase : "queued") : `${newest.phase} ${share}%`;
      lines.push(h("div.progress.small", { role: "progressbar", "aria-label": "Representation progress", "aria-valuenow": String(share), "aria-valuemin": "0", "aria-valuemax": "100" },
        h("div.bar", { style: `width:${share}%` }), h("span.progress-text", {}, label)),
      h("p.muted", {}, `Learning #${newest.id} on ${newest.pool_size || "the"} pool images. Rounds do not wait for it`
        + (used ? `; they select in #${used.id} meanwhile.` : "; they select on the pixels' principal components meanwhile.")));
    }
    if (newest && newest.status === "failed") {
      lines.push(h("p.round-error", {}, `#${newest.id} failed: ${newest.error || "no reason recorded"}`
        + (used ? `. Rounds still select in #${used.id}.` : ".")));
    }
    if (used) {
      const m = used.metrics || {};
      // Fractional when the job's time budget stopped it part way through a large pool.
      const passes = m.passes ?? m.epochs ?? "?";
      const took = used.finished_at && used.started_at ? (new Date(used.finished_at) - new Date(used.started_at)) / 1000 : null;
      lines.push(h("p.representation-ready", {}, `#${used.id} ready: SimCLR${m.patches ? " with patch features" : ""}, `
        + `${m.feature_dim ?? "?"} features per image over ${used.pool_size} pool images, `
        + `${passes} pass${passes === 1 ? "" : "es"} over them on ${m.device ?? "?"} in ${fmtSeconds(took)}. Rounds select in it.`));
    }
    if (me.role !== "annotator" && project.settings.representation !== "none") {
      lines.push(h("button", {
        type: "button", disabled: active,
        onclick: async () => {
          showError(null);
          try { await api(`/projects/${project.id}/representations`, { method: "POST" }); } catch (e) { showError(e); }
          await drawRepresentation();
        },
      }, "Learn it again now"));
    }
    representation.replaceChildren(h("h2", { id: "representation-title" }, "Representation"), ...lines);
    // Idle, it still looks every 4 s: an upload from another tab or the API queues a job by itself.
    representationTimer = setTimeout(drawRepresentation, active ? 1000 : 4000);
  }

  function roundForm() {
    const strategy = h("select", { id: "strategy", name: "strategy" });
    const batch = h("input", { id: "batch", name: "batch_size", type: "number", min: "1", value: "20" });
    const params = h("textarea", { id: "params", name: "params", rows: "2", placeholder: '{"alpha": 1.0}' });
    const submit = h("button", { type: "submit" }, "Start round");
    // The params box shows what the chosen strategy takes, with its defaults, so a typo is not a guess.
    const defaults = new Map();
    const hint = () => {
      const taken = defaults.get(strategy.value);
      params.placeholder = taken && Object.keys(taken).length ? JSON.stringify(taken) : "this strategy takes no params";
    };
    strategy.addEventListener("change", hint);
    api("/strategies").then((res) => {
      res.data.forEach((st) => defaults.set(st.name, st.params));
      strategy.replaceChildren(...res.data.map((st) =>
        h("option", { value: st.name, title: st.description, selected: st.name === "auto" }, st.name)));
      hint();
    }).catch(showError);
    return h("form.round-form", {
      onsubmit: async (e) => {
        e.preventDefault();
        showError(null);
        let parsed = {};
        try { parsed = params.value.trim() ? JSON.parse(params.value) : {}; } catch { showError(new Error("params must be JSON, e.g. {\"alpha\": 1.0}")); return; }
        submit.disabled = true;
        try {
          const body = { strategy: strategy.value, batch_size: Number(batch.value), params: parsed };
          try {
            await api(`/projects/${project.id}/rounds`, { method: "POST", body });
          } catch (err) {
            // The open batch still has pending items: starting anyway closes it once the new one is ready.
            if (!(err.status === 409 && /close_open/.test(err.message))) throw err;
            if (!window.confirm(`${err.message}\n\nStart anyway? Annotators keep the open round until the new one is ready; then it closes.`)) return;
            await api(`/projects/${project.id}/rounds`, { method: "POST", body: { ...body, close_open: true } });
          }
          await refresh();
        } catch (err) { showError(err); } finally { submit.disabled = false; }
      },
    }, h("h3", {}, "New round"), h("label", { for: "strategy" }, "Strategy"), strategy,
      h("label", { for: "batch" }, "Batch size"), batch, h("label", { for: "params" }, "Params (JSON)"), params, submit);
  }

  function roundRow(r) {
    const m = r.metrics || {};
    const active = ACTIVE.has(r.status);
    const duration = r.finished_at && r.started_at ? (new Date(r.finished_at) - new Date(r.started_at)) / 1000 : null;
    const bar = h("div.progress.small", { role: "progressbar", "aria-label": `Round ${r.index} progress`, "aria-valuenow": String(Math.round(r.progress * 100)), "aria-valuemin": "0", "aria-valuemax": "100" },
      h("div.bar", { style: `width:${Math.round(r.progress * 100)}%` }), h("span.progress-text", {}, `${r.phase || r.status} ${Math.round(r.progress * 100)}%`));
    const strategy = m.effective_strategy && m.effective_strategy !== r.strategy ? `${r.strategy} (${m.effective_strategy})` : r.strategy;
    return h("tr", { dataset: { status: r.status } },
      h("td", {}, r.index), h("td", {}, strategy),
      h("td", {}, h("span", { class: `status ${r.status}`, title: r.error || "" }, r.status), r.error ? h("div.round-error", {}, r.error) : null,
        r.waiting_behind ? h("div.round-waiting", {}, r.waiting_behind) : null),
      h("td", {}, bar), h("td", {}, fmtSeconds(duration)), h("td", {}, m.labels ?? ""), h("td", {}, pct(m.accuracy)),
      h("td", {}, active && me.role !== "annotator" ? h("button", {
        type: "button", "aria-label": `Cancel round ${r.index}`,
        onclick: async () => { try { await api(`/rounds/${r.id}/cancel`, { method: "POST" }); await refresh(); } catch (e) { showError(e); } },
      }, "Cancel") : ""));
  }

  async function refresh() {
    let rounds;
    try { rounds = (await api(`/projects/${project.id}/rounds`)).data; } catch (e) { showError(e); return; }
    roundsBody.replaceChildren(...rounds.slice().reverse().map(roundRow));
    const statuses = rounds.map((r) => `${r.id}:${r.status}`).join(",");
    if (statuses !== lastStatuses) {
      lastStatuses = statuses;
      await Promise.all([drawCurve(rounds), drawCounts(), drawMap()]);
    } else if (Date.now() - countsAt > 5000) {
      await drawCounts();  // labels arrive between rounds too; counting them is not free, so every 5 s
    }
    clearTimeout(timer);
    timer = setTimeout(refresh, rounds.some((r) => ACTIVE.has(r.status)) ? 1000 : 5000);
  }

  async function drawCurve(rounds) {
    const measured = rounds.filter((r) => r.metrics && r.metrics.accuracy !== null && r.metrics.accuracy !== undefined);
    const points = measured.map((r) => ({ x: r.metrics.labels, y: r.metrics.accuracy, round: r }));
    curve.replaceChildren(points.length
      ? lineChart([{ name: "this project", points }], { title: "Validation accuracy vs labels", onPoint: (p) => showRound(p.round) })
      : h("p.muted", {}, "Validation accuracy per round appears here once a round has trained on labels (upload a labelled validation split to measure it)."));
    if (points.length) showRound(measured.at(-1));
    else curveDetail.replaceChildren();
    drawConfusion(measured);
  }

  // A round's accuracy per class, beside the curve: what hovering or arrowing to a point shows.
  function showRound(r) {
    const perClass = r.metrics.per_class || {};
    // What auto did with this round's batch, so a switch to random is visible, not silent.
    const auto = r.metrics.auto ? [h("p.auto-rule", {}, `auto picked this batch with ${r.metrics.auto.picked_by}: ${r.metrics.auto.rule}`)] : [];
    const space = r.metrics.representation ? [h("p.round-space", {}, `Selected in: ${spaceName(r.metrics.representation)}`)] : [];
    curveDetail.replaceChildren(h("h3", {}, `Round ${r.index}: ${r.metrics.labels} labels, ${pct(r.metrics.accuracy)}`), ...auto, ...space,
      ...taskModel(r.metrics.learner),
      h("table.per-class", {}, h("caption.visually-hidden", {}, `Validation accuracy per class, round ${r.index}`),
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "class"), h("th", { scope: "col" }, "accuracy"))),
        h("tbody", {}, project.classes.map((c) => h("tr", {}, h("th", { scope: "row" }, c),
          h("td", {}, perClass[c] === null || perClass[c] === undefined ? "no validation images"
            : h("span.bar-cell", {}, h("span.class-bar", { style: `width:${(perClass[c] * 6).toFixed(2)}rem`, "aria-hidden": "true" }), pct(perClass[c]))))))));
  }

  function spaceName(rep) {
    const why = rep.why ? ` (${rep.why})` : "";
    if (rep.kind === "simclr") return `the learned representation #${rep.id}`;
    if (rep.kind === "pixels-pca") return `the pixels' principal components${why}`;
    return rep.kind === "vae" ? `the VAE's latents${why}` : rep.kind;
  }

  // Which model predicted, and what the challenge between the head and the CNN said (README).
  function taskModel(learner) {
    if (!learner || !learner.mode) return [];
    const c = learner.challenge;
    const verdict = c ? `; ${c.chosen} predicts: ${Object.entries(c.scores).map(([k, v]) => `${k} ${pct(v)}`).join(", ")}`
      + ` balanced accuracy on the ${c.held_out === "validation" ? "validation split" : "held-out labels"}`
      + (c.fitted_on ? `, its networks trained on ${c.fitted_on} labels` : "") : "";
    return [h("p.task-model", {}, `Task model: ${learner.mode}${verdict}`)];
  }

  function drawConfusion(measured) {
    const withMatrix = measured.filter((r) => Array.isArray(r.metrics.confusion));
    if (!withMatrix.length) {
      confusion.replaceChildren(h("p.muted", {}, "Each round's confusion matrix on the validation split appears here once a round has trained on labels."));
      return;
    }
    const picker = h("select", { id: "confusion-round" }, withMatrix.slice().reverse().map((r) => h("option", { value: String(r.id) }, `Round ${r.index}`)));
    const table = h("div");
    const show = () => {
      const r = withMatrix.find((x) => String(x.id) === picker.value);
      table.replaceChildren(confusionTable(project.classes, r.metrics.confusion,
        `Round ${r.index}: rows are the true class, columns the prediction (${pct(r.metrics.accuracy)} correct)`));
    };
    picker.addEventListener("change", show);
    confusion.replaceChildren(h("p.inline", {}, h("label", { for: "confusion-round" }, "Round"), picker), table);
    show();
  }

  // What the simulated curves learned with (README, "Which strategy fits my data?").
  function simulatedLearner(summary) {
    const rep = summary.representation;
    if (summary.learner === "cnn") return [h("p.muted.sim-learner", {}, "Learner: a CNN from scratch on the labels (this project turned representations off).")];
    if (!rep) return [];
    if (rep.kind === "project") {
      const encoded = rep.encoded_now ? `, ${rep.encoded_now} images it had not seen encoded for the simulation` : "";
      return [h("p.muted.sim-learner", {}, `Learner: a head on this project's representation #${rep.id}${encoded}.`)];
    }
    return [h("p.muted.sim-learner", {}, `Learner: a head on a representation learned for this simulation (${rep.why || rep.kind}).`)];
  }

  async function drawSimulations() {
    try {
      const sims = (await api(`/projects/${project.id}/simulations`)).data.filter((x) => x.status === "ready");
      const latest = sims.at(-1);
      if (!latest) { simCurve.replaceChildren(h("p.muted", {}, "No finished simulation yet: start one above (it needs a pool uploaded with a labels CSV).")); return; }
      const series = Object.entries(latest.summary.strategies).map(([name, st]) => ({
        name, points: st.labels.map((x, i) => ({ x, y: st.mean_accuracy[i], lo: st.mean_accuracy[i] - st.std_accuracy[i], hi: st.mean_accuracy[i] + st.std_accuracy[i] })),
      }));
      series.push({ name: "full pool", dashed: true, color: "#000", points: series[0].points.map((p) => ({ x: p.x, y: latest.summary.full_pool_accuracy })) });
      simCurve.replaceChildren(lineChart(series, { title: "Simulated accuracy vs labels (band: ±1 sd over seeds)" }), ...simulatedLearner(latest.summary));
    } catch (e) { if (e.status !== 403) showError(e); simCurve.replaceChildren(); }
  }

  async function drawCounts() {
    try {
      countsAt = Date.now();
      const fresh = await api(`/projects/${project.id}`);
      summary.textContent = describeCounts(fresh.counts);
      classCounts.replaceChildren(h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "class"), h("th", { scope: "col" }, "labels"))),
        h("tbody", {}, fresh.classes.map((c) => h("tr", {}, h("td", {}, c), h("td", {}, fresh.counts.per_class[c] || 0)))));
    } catch (e) { showError(e); }
  }

  async function drawMap() {
    clearTimeout(mapTimer);
    let res;
    try { res = await api(`/projects/${project.id}/latent-map`); } catch (e) { showError(e); return; }
    map.replaceChildren(latentMap(res, {
      mode: mapMode,
      onMode: (m) => { mapMode = m; drawMap().then(() => document.getElementById("map-colour")?.focus()); },
      onOpen: openImage,
      onSelect: showSelection,
    }));
    // The t-SNE layout is built after the first request; the map redraws once it is there.
    if (res.layout_pending) mapTimer = setTimeout(drawMap, 2000);
  }

  // A region or legend category of the map, opened as a grid of thumbnails in the page.
  const SHOWN = 120;
  function showSelection(points, title) {
    selection.hidden = false;
    const caption = (p) => p.label ?? (p.predicted ? `${p.predicted}?` : p.status);
    const tiles = points.slice(0, SHOWN).map((p) => h("li", {}, h("button.tile", {
      type: "button", "aria-label": `${caption(p)}: open image ${p.image_id}`, onclick: () => openImage(p),
    }, h("img", { src: `/api/v1/images/${p.image_id}/thumbnail`, alt: "", width: "72", height: "72", loading: "lazy" }),
    h("span.tile-text", {}, caption(p)))));
    const heading = h("h3", { tabindex: "-1" }, title);
    selection.replaceChildren(...[heading,
      points.length > SHOWN ? h("p.muted", {}, `Showing the first ${SHOWN}.`) : null,
      points.length ? h("ul.tiles", {}, tiles) : h("p.muted", {}, "No points there."),
      h("button", { type: "button", onclick: () => { selection.hidden = true; document.querySelector(".latent-map svg")?.focus(); } }, "Close selection")].filter(Boolean));
    heading.focus();
  }

  // One image at full size in a modal dialog (Escape closes it), with its labelling history for
  // engineers and admins.
  async function openImage(p) {
    const colour = p.label && project.classes.includes(p.label) ? classColour(project.classes.indexOf(p.label), project.classes.length) : null;
    const history = h("div");
    viewer.replaceChildren(h("h3", { id: "viewer-title" }, `Image #${p.image_id}`),
      h("img.viewer-image", { src: `/api/v1/images/${p.image_id}/file`, alt: `image ${p.image_id}`, width: "224", height: "224" }),
      h("dl", {}, h("dt", {}, "status"), h("dd", {}, p.status),
        h("dt", {}, "label"), h("dd", {}, colour ? h("span.swatch", { style: `background:${colour}`, "aria-hidden": "true" }) : null, ` ${p.label ?? "none"}`),
        p.predicted ? [h("dt", {}, "prediction"), h("dd", {}, `${p.predicted} (${Math.round(p.confidence * 100)}% confident)`)] : null),
      history,
      h("form", { method: "dialog" }, h("button", { type: "submit" }, "Close")));
    if (!viewer.open) viewer.showModal();
    if (me.role === "annotator" || !p.label) return;
    try {
      const rows = (await api(`/images/${p.image_id}/annotations`)).data;
      history.replaceChildren(h("h4", {}, "Labelling history"), h("ol", {}, rows.map((a) => h("li", {},
        `${a.label} by ${a.annotator ?? "an upload"}, ${new Date(a.created_at).toLocaleString()}${a.current ? " (current)" : ""}`))));
    } catch (e) { if (e.status !== 404) showError(e); }
  }

  refresh();
  drawRepresentation();
  drawSimulations();
  return () => { clearTimeout(timer); clearTimeout(mapTimer); clearTimeout(representationTimer); };
}
