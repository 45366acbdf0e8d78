// Hash router and the small views: sign-in and the project list.
import { adminView } from "./admin.js";
import { api, signIn, signOut, token } from "./api.js";
import { dashboardView } from "./dashboard.js";
import { h, showError } from "./dom.js";
import { labelView } from "./label.js";

const view = document.getElementById("view");
let cleanup = () => {};
let me = null;

async function whoAmI() {
  if (!token.get()) return null;
  try { return await api("/me"); } catch { token.clear(); return null; }
}

function nav() {
  const links = me ? [h("a", { href: "#/projects" }, "Projects"), me.role === "admin" ? h("a", { href: "#/admin" }, "Admin") : null] : [];
  document.getElementById("nav").replaceChildren(...links.filter(Boolean));
  document.getElementById("who").replaceChildren(me ? h("span", {}, `${me.name} (${me.role}) `,
    h("button", { type: "button", onclick: async () => { await signOut(); me = null; location.hash = "#/login"; } }, "Sign out")) : "");
}

function loginView() {
  const input = h("input", { id: "token", type: "password", autocomplete: "current-password", required: true, placeholder: "sl_…" });
  const form = h("form.card.login", {
    onsubmit: async (e) => {
      e.preventDefault();
      showError(null);
      try { me = await signIn(input.value.trim()); location.hash = "#/projects"; } catch (err) { showError(err); }
    },
  }, h("h1", {}, "Sign in"), h("label", { for: "token" }, "Access token"), input, h("button", { type: "submit" }, "Sign in"),
    h("p.muted", {}, "Ask an admin for a token (suggestlab create-user prints one)."));
  view.replaceChildren(form);
  input.focus();
}

async function projectsView() {
  const { data } = await api("/projects");
  const rows = data.map((p) => h("li.project", {},
    h("h2", {}, p.name),
    h("p", {}, `${p.counts.pool} pool images, ${p.counts.labelled} labelled, ${p.counts.rounds} rounds`),
    p.open_round ? h("a.button.primary", { href: `#/label/${p.id}` }, `Label round ${p.open_round.index}`) : h("span.muted", {}, "no open round "),
    " ", h("a.button", { href: `#/dashboard/${p.id}` }, "Dashboard")));
  view.replaceChildren(h("section", {}, h("h1", {}, "Projects"),
    data.length ? h("ul.projects", {}, rows) : h("p", {}, "You are not a member of any project yet.")));
}

async function route() {
  cleanup();
  cleanup = () => {};
  showError(null);
  me = me || (await whoAmI());
  nav();
  const [, page, id] = (location.hash || "#/projects").split("/");
  if (!me && page !== "login") { location.hash = "#/login"; return; }
  try {
    if (page === "login") loginView();
    else if (page === "label") cleanup = labelView(view, await api(`/projects/${id}`));
    else if (page === "dashboard") cleanup = dashboardView(view, await api(`/projects/${id}`), me);
    else if (page === "admin" && me.role !== "admin") view.replaceChildren(h("section", {}, h("h1", {}, "Admins only"), h("p", {}, "This page needs the admin role.")));
    else if (page === "admin") cleanup = adminView(view, (await api("/projects")).data);
    else await projectsView();
  } catch (e) { showError(e); }
  // A view that focused its own field (the sign-in token) keeps that focus.
  if (!view.contains(document.activeElement)) view.focus({ preventScroll: true });
}

window.addEventListener("hashchange", route);
route();
