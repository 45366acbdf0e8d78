// The annotator's labelling view: one large image, class hotkeys, skip/undo, arrows, grid mode.
import { api } from "./api.js";
import { h, showError } from "./dom.js";

// g, s and z are kept for grid, skip and undo.
const RESERVED = new Set(["g", "s", "z"]);
const SPARE = "1234567890abcdefhijklmnopqrtuvwxy";
// A class's key: the project's own hotkey if it set one, else the class name itself when that is a
// single character (class "1" is key 1), else the first spare digit or letter.
export function hotkeys(classes, custom = {}) {
  const taken = new Set(RESERVED);
  const keys = classes.map((c) => {
    const k = (custom[c] || "").toLowerCase();
    if (k && !taken.has(k)) { taken.add(k); return k; }
    return null;
  });
  classes.forEach((c, i) => {
    const k = c.toLowerCase();
    if (!keys[i] && [...c].length === 1 && k.trim() && !taken.has(k)) { keys[i] = k; taken.add(k); }
  });
  classes.forEach((c, i) => {
    if (keys[i]) return;
    const k = [...SPARE].find((x) => !taken.has(x));
    if (k) { keys[i] = k; taken.add(k); }
  });
  return keys;
}

const PREFETCH = 6;

export function labelView(root, project) {
  const keys = hotkeys(project.classes, project.settings?.hotkeys || {});
  const keyToClass = Object.fromEntries(keys.map((k, i) => [k, project.classes[i]]).filter(([k]) => k));
  const state = {
    queue: [], index: 0, history: [], round: null, message: null, grid: false,
    selected: new Set(), shownAt: performance.now(), busy: false, loading: true,
  };

  const progressBar = h("div.bar");
  const progressText = h("span.progress-text");
  const progress = h("div.progress", { role: "progressbar", "aria-label": "Round progress", "aria-valuemin": "0" },
    progressBar, progressText);
  const img = h("img.subject", { alt: "", width: "448", height: "448", decoding: "async" });
  const badges = h("div.badges");
  const stage = h("figure.stage", {}, img, badges);
  const grid = h("div.grid", { role: "listbox", "aria-label": "Suggested images", "aria-multiselectable": "true" });
  const empty = h("div.empty", { role: "status" });
  const classButtons = h("div.classes", { role: "group", "aria-label": "Classes" },
    project.classes.map((c, i) => h("button.class", {
      // The name is the class (what the button shows); the key is announced as its shortcut.
      type: "button", "aria-keyshortcuts": keys[i] || null, title: keys[i] ? `Label ${c} (key ${keys[i]})` : `Label ${c}`,
      onclick: () => labelWith(c),
    }, keys[i] ? h("kbd", { "aria-hidden": "true" }, keys[i]) : null, " ", c)));
  const controls = h("div.controls", {},
    // Visible text is the accessible name (WCAG 2.5.3); keys are announced as shortcuts.
    h("button", { type: "button", onclick: () => move(-1), "aria-keyshortcuts": "ArrowLeft", title: "Previous image (left arrow)" }, h("span", { "aria-hidden": "true" }, "← "), "Previous"),
    h("button", { type: "button", onclick: () => skip(), "aria-keyshortcuts": "S", title: "Skip (S)" }, h("kbd", { "aria-hidden": "true" }, "S"), " Skip"),
    h("button", { type: "button", onclick: () => undo(), "aria-keyshortcuts": "Z", title: "Undo the last label or skip (Z)" }, h("kbd", { "aria-hidden": "true" }, "Z"), " Undo"),
    h("button", { type: "button", onclick: () => toggleGrid(), "aria-keyshortcuts": "G", title: "Toggle grid mode (G)" }, h("kbd", { "aria-hidden": "true" }, "G"), " Grid"),
    h("button", { type: "button", onclick: () => move(1), "aria-keyshortcuts": "ArrowRight", title: "Next image (right arrow)" }, "Next", h("span", { "aria-hidden": "true" }, " →")));
  const notice = h("p.notice", { role: "status" });
  const help = h("p.help", {}, "Keys: the key on each class button labels · ",
    "S skip · Z/Backspace undo · ←/→ move · G grid (arrows move, Space selects, a class key labels the selection)");
  root.replaceChildren(h("section.label-view", {},
    h("h1", {}, `Label: ${project.name}`), notice, progress, stage, grid, empty, classButtons, controls, help));

  const current = () => state.queue[state.index];

  // Undo history outlives a reload (like Prodigy's): labels and skips, newest last, per project.
  const historyKey = `suggestlab.history.${project.id}`;
  try { state.history = JSON.parse(localStorage.getItem(historyKey) || "[]"); } catch { state.history = []; }
  function remember(entry) {
    const { prefetched, ...item } = entry.item;  // the prefetching Image object does not serialise
    state.history.push({ ...entry, item });
    saveHistory();
  }
  function saveHistory() {
    try { localStorage.setItem(historyKey, JSON.stringify(state.history.slice(-100))); } catch { /* storage full or off */ }
  }

  function prefetch() {
    for (const item of state.queue.slice(state.index + 1, state.index + 1 + PREFETCH)) {
      if (!item.prefetched) { item.prefetched = new Image(); item.prefetched.src = item.file_url; }
    }
  }

  function render() {
    const r = state.round;
    const done = r ? r.done : 0;
    const total = r ? r.batch_size : 0;
    progressBar.style.width = total ? `${(100 * done) / total}%` : "0%";
    progress.setAttribute("aria-valuemax", String(total));
    progress.setAttribute("aria-valuenow", String(done));
    progressText.textContent = r ? `${done} / ${total}, round ${r.index}` : "no open round";
    const item = current();
    const nothing = !item && !state.loading;
    empty.hidden = !nothing;
    empty.textContent = nothing ? `Nothing to label right now: ${state.message || "all items are done"}.` : "";
    stage.hidden = state.grid || !item;
    grid.hidden = !state.grid || !item;
    classButtons.hidden = controls.hidden = !item;
    if (item && !state.grid) {
      if (img.dataset.id !== String(item.image_id)) {
        img.src = item.file_url;
        img.dataset.id = String(item.image_id);
        img.alt = `Image ${item.image_id} to label${item.synthetic ? " (synthetic)" : ""}`;
        state.shownAt = performance.now();
      }
      badges.replaceChildren(...[
        item.synthetic ? h("span.badge.synthetic", {}, "synthetic (generated)") : null,
        item.model_guess ? h("span.badge.guess", {}, `model guess: ${item.model_guess}`) : null,
        h("span.badge.position", {}, `${state.index + 1} of ${state.queue.length} leased`),
      ].filter(Boolean));
    }
    if (state.grid) renderGrid();
    prefetch();
  }

  function renderGrid() {
    grid.replaceChildren(...state.queue.map((item, i) => h("button.cell", {
      type: "button", role: "option",
      "aria-selected": state.selected.has(item.suggestion_id) ? "true" : "false",
      "aria-label": `Image ${item.image_id}${item.synthetic ? " (synthetic)" : ""}`,
      class: `cell${i === state.index ? " focused" : ""}${state.selected.has(item.suggestion_id) ? " selected" : ""}`,
      onclick: () => { state.index = i; toggleSelect(item); },
    }, h("img", { src: item.thumbnail_url, alt: "", width: "120", height: "120" }),
       item.synthetic ? h("span.badge.synthetic", {}, "syn") : null)));
    grid.children[state.index]?.focus({ preventScroll: false });
  }

  async function fetchMore() {
    try {
      const res = await api(`/projects/${project.id}/next`, { method: "POST", body: { limit: 20 } });
      const known = new Set(state.queue.map((q) => q.suggestion_id));
      for (const item of res.data) if (!known.has(item.suggestion_id)) state.queue.push(item);
      state.round = res.round;
      state.message = res.message;
    } catch (e) { showError(e); }
    state.loading = false;
    render();
  }

  async function guarded(fn) {
    if (state.busy) return;
    state.busy = true;
    showError(null);
    try { await fn(); } catch (e) { showError(e); } finally { state.busy = false; render(); }
    if (state.queue.length - state.index < 5 || !current()) await fetchMore();
  }

  function labelWith(label) {
    if (state.grid && state.selected.size) return labelSelection(label);
    const item = current();
    if (!item) return;
    return guarded(async () => {
      const annotation = await api(`/images/${item.image_id}/annotations`, {
        method: "POST", body: { label, duration_ms: Math.round(performance.now() - state.shownAt) },
      });
      remember({ kind: "label", annotationId: annotation.id, item, at: state.index });
      state.queue.splice(state.index, 1);
      state.index = Math.min(state.index, Math.max(0, state.queue.length - 1));
      if (state.round) state.round.done += 1;
    });
  }

  function labelSelection(label) {
    return guarded(async () => {
      const chosen = state.queue.filter((q) => state.selected.has(q.suggestion_id));
      for (const item of chosen) {
        const annotation = await api(`/images/${item.image_id}/annotations`, { method: "POST", body: { label } });
        remember({ kind: "label", annotationId: annotation.id, item, at: state.queue.indexOf(item) });
        state.queue.splice(state.queue.indexOf(item), 1);
        state.selected.delete(item.suggestion_id);
        if (state.round) state.round.done += 1;
      }
      state.index = Math.min(state.index, Math.max(0, state.queue.length - 1));
    });
  }

  function skip() {
    const item = current();
    if (!item) return;
    return guarded(async () => {
      await api(`/suggestions/${item.suggestion_id}/skip`, { method: "POST" });
      remember({ kind: "skip", item, at: state.index });
      state.queue.splice(state.index, 1);
      state.index = Math.min(state.index, Math.max(0, state.queue.length - 1));
      if (state.round) state.round.done += 1;
    });
  }

  function undo() {
    const last = state.history.pop();
    saveHistory();
    if (!last) { notice.textContent = "Nothing to undo."; return; }
    return guarded(async () => {
      if (last.kind === "skip") await api(`/suggestions/${last.item.suggestion_id}/skip`, { method: "DELETE" });
      else await api(`/annotations/${last.annotationId ?? last.annotation?.id}`, { method: "DELETE" });
      notice.textContent = last.kind === "skip" ? "Skip undone." : "Label undone.";
      const known = state.queue.findIndex((q) => q.suggestion_id === last.item.suggestion_id);
      if (known >= 0) state.queue.splice(known, 1);
      const at = Math.min(last.at, state.queue.length);
      state.queue.splice(at, 0, last.item);
      state.index = at;
      if (state.round) state.round.done = Math.max(0, state.round.done - 1);
    });
  }

  function move(delta) {
    if (!state.queue.length) return;
    state.index = Math.max(0, Math.min(state.queue.length - 1, state.index + delta));
    render();
  }

  function toggleGrid() { state.grid = !state.grid; render(); }
  function toggleSelect(item) {
    if (state.selected.has(item.suggestion_id)) state.selected.delete(item.suggestion_id);
    else state.selected.add(item.suggestion_id);
    render();
  }

  function onKey(event) {
    if (event.target.closest?.("input, textarea, select")) return;
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const key = event.key.toLowerCase();
    let handled = true;
    if (keyToClass[key]) labelWith(keyToClass[key]);
    else if (key === "s") skip();
    else if (key === "z" || key === "backspace") undo();
    else if (key === "g") toggleGrid();
    else if (key === "arrowright" || (state.grid && key === "arrowdown")) move(state.grid && key === "arrowdown" ? 4 : 1);
    else if (key === "arrowleft" || (state.grid && key === "arrowup")) move(state.grid && key === "arrowup" ? -4 : -1);
    else if (state.grid && key === " " && current()) toggleSelect(current());
    else handled = false;
    if (handled) event.preventDefault();
  }
  // A new round replaces the open one while the page is open: follow it instead of answering
  // every key with an error until a reload.
  async function followOpenRound() {
    if (document.hidden || state.busy) return;
    let open;
    try { open = await api(`/projects/${project.id}/open-round`); } catch { return; }
    if (!open || (state.round && open.id === state.round.id)) return;
    const moved = state.round !== null;
    Object.assign(state, { queue: [], index: 0, history: [], round: null, loading: true });
    saveHistory();  // the old round's labels and skips can no longer be undone from here
    state.selected.clear();
    notice.textContent = moved ? `Round ${open.index} is open now; moved to it.` : `Round ${open.index} is ready.`;
    await fetchMore();
  }
  const watcher = setInterval(followOpenRound, 4000);
  document.addEventListener("keydown", onKey);
  render();
  fetchMore();
  return () => { document.removeEventListener("keydown", onKey); clearInterval(watcher); };
}
