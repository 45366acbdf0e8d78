// Admin: create projects, upload datasets by drag and drop with progress and a per-file report,
// manage users, roles, tokens and project members.
import { api, upload } from "./api.js";
import { h, showError } from "./dom.js";

export function adminView(root, projects) {
  const projectSelect = h("select", { id: "upload-project", name: "project" },
    projects.map((p) => h("option", { value: p.id }, p.name)));
  const report = h("div.report", { "aria-live": "polite" });
  const bar = h("div.bar");
  const progress = h("div.progress", { role: "progressbar", "aria-label": "Upload progress", hidden: true }, bar, h("span.progress-text"));
  const fileInput = h("input", { id: "upload-files", type: "file", multiple: true, accept: "image/*,.zip", "aria-label": "Images or zip archives" });
  const labelsInput = h("input", { id: "upload-labels", type: "file", accept: ".csv,text/csv", "aria-label": "Labels CSV (optional)" });
  const split = h("select", { id: "upload-split", name: "split" }, ["pool", "validation", "test"].map((v) => h("option", { value: v }, v)));
  const drop = h("div.dropzone", { tabindex: "0", role: "button" },
    "Drop images or .zip archives here, or click (or press Enter) to choose");
  drop.addEventListener("click", () => fileInput.click());
  drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); fileInput.click(); } });
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); send([...e.dataTransfer.files]); });
  fileInput.addEventListener("change", () => send([...fileInput.files]));

  async function send(files) {
    if (!files.length) return;
    if (!projectSelect.value) { showError(new Error("create a project first")); return; }
    showError(null);
    const form = new FormData();
    files.forEach((f) => form.append("files", f, f.name));
    form.append("split", split.value);
    if (labelsInput.files[0]) form.append("labels", labelsInput.files[0], labelsInput.files[0].name);
    progress.hidden = false;
    report.replaceChildren(h("p", {}, `Uploading ${files.length} file(s)…`));
    try {
      const text = progress.querySelector(".progress-text");
      const res = await upload(`/projects/${projectSelect.value}/images`, form, (f) => {
        bar.style.width = `${Math.round(f * 100)}%`;
        text.textContent = f < 1 ? `${Math.round(f * 100)}% sent` : "processing…";
      }, (run) => {
        // Each line is a run already stored: a long upload shows it is moving, file count by file count.
        text.textContent = `processing: ${run.processed} files checked, ${run.accepted} stored, ` +
          `${run.duplicates} duplicates, ${run.rejected} rejected`;
      });
      text.textContent = "done";
      report.replaceChildren(...[
        h("p.report-summary", {}, `${res.accepted.length} accepted · ${res.duplicates.length} duplicates · ${res.rejected.length} rejected`),
        res.unused_label_count ? h("p.report-unused", { role: "alert" },
          `${res.unused_label_count} labels CSV row(s) name no uploaded file and were not used: ${res.unused_labels.slice(0, 10).join(", ")}${res.unused_label_count > 10 ? ", …" : ""}`) : null,
        res.duplicates.length ? h("details", {}, h("summary", {}, "Duplicates"), h("ul", {}, res.duplicates.map((d) => h("li", {}, `${d.file} = image ${d.image_id}`)))) : null,
        res.rejected.length ? h("table.rejected", {}, h("caption", {}, "Rejected files"), h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "file"), h("th", { scope: "col" }, "reason"))),
          h("tbody", {}, res.rejected.map((r) => h("tr", {}, h("td", {}, r.file), h("td", {}, r.reason))))) : null,
      ].filter(Boolean));
    } catch (e) { showError(e); report.replaceChildren(); progress.hidden = true; }
    fileInput.value = "";
  }

  const name = h("input", { id: "project-name", name: "name", required: true });
  const classes = h("textarea", { id: "project-classes", name: "classes", rows: "2", required: true, placeholder: "cat, dog, bird" });
  const size = h("input", { id: "project-size", type: "number", value: "28", min: "8", step: "4" });
  const channels = h("select", { id: "project-channels" }, h("option", { value: "1" }, "grayscale"), h("option", { value: "3" }, "RGB"));
  const createProject = h("form.card", {
    onsubmit: async (e) => {
      e.preventDefault();
      showError(null);
      try {
        const body = { name: name.value.trim(), classes: classes.value.split(/[,\n]/).map((c) => c.trim()).filter(Boolean),
          settings: { image_size: Number(size.value), channels: Number(channels.value) } };
        const p = await api("/projects", { method: "POST", body });
        projectSelect.append(h("option", { value: p.id, selected: true }, p.name));
        memberProject.append(h("option", { value: p.id }, p.name));
        createProject.reset();
        created.textContent = `Created project ${p.name} (id ${p.id}).`;
      } catch (err) { showError(err); }
    },
  }, h("h2", {}, "New project"), h("label", { for: "project-name" }, "Name"), name,
    h("label", { for: "project-classes" }, "Classes (comma or newline separated, in hotkey order)"), classes,
    h("label", { for: "project-size" }, "Image size"), size, h("label", { for: "project-channels" }, "Colour"), channels,
    h("button", { type: "submit" }, "Create project"));
  const created = h("p", { role: "status" });

  const usersBody = h("tbody");
  const tokenOut = h("p.token", { role: "status" });
  const userName = h("input", { id: "user-name", required: true });
  const userRole = h("select", { id: "user-role" }, ["annotator", "engineer", "admin"].map((r) => h("option", { value: r }, r)));
  const memberProject = h("select", { id: "member-project", "aria-label": "Project for membership" }, projects.map((p) => h("option", { value: p.id }, p.name)));
  const membersBody = h("tbody");
  const tokensPanel = h("div.tokens", { "aria-live": "polite" });
  async function loadMembers() {
    const pid = memberProject.value;
    if (!pid) { membersBody.replaceChildren(); return; }
    try {
      const members = (await api(`/projects/${pid}/members`)).data;
      if (pid !== memberProject.value) return;  // the admin picked another project meanwhile
      membersBody.replaceChildren(...(members.length ? members.map((m) => h("tr", {}, h("td", {}, m.name), h("td", {}, m.role),
        h("td", {}, h("button", { type: "button", "aria-label": `Remove ${m.name} from the project`, onclick: async () => {
          try { await api(`/projects/${memberProject.value}/members/${m.user_id}`, { method: "DELETE" }); tokenOut.textContent = `${m.name} was removed from the project.`; await loadMembers(); } catch (e) { showError(e); }
        } }, "Remove")))) : [h("tr", {}, h("td", { colspan: "3" }, "No members yet: add users from the table below."))]));
    } catch (e) { showError(e); }
  }
  memberProject.addEventListener("change", loadMembers);
  async function showTokens(u) {
    try {
      const tokens = (await api(`/users/${u.id}/tokens`)).data;
      const when = (t) => (t ? new Date(t).toLocaleString() : "");
      tokensPanel.replaceChildren(h("h3", {}, `Tokens of ${u.name}`), tokens.length ? h("table.token-list", {},
        h("thead", {}, h("tr", {}, ["id", "kind", "created", "expires", "state", ""].map((t) => h("th", { scope: "col" }, t)))),
        h("tbody", {}, tokens.map((t) => h("tr", {}, h("td", {}, t.id), h("td", {}, t.kind), h("td", {}, when(t.created_at)), h("td", {}, when(t.expires_at)),
          h("td", {}, t.revoked_at ? `revoked ${when(t.revoked_at)}` : "active"),
          h("td", {}, t.revoked_at ? null : h("button", { type: "button", "aria-label": `Revoke token ${t.id} of ${u.name}`, onclick: async () => {
            try { await api(`/tokens/${t.id}`, { method: "DELETE" }); await showTokens(u); } catch (e) { showError(e); }
          } }, "Revoke")))))) : h("p", {}, "No tokens."));
    } catch (e) { showError(e); }
  }
  async function loadUsers() {
    try {
      const users = (await api("/users")).data;
      usersBody.replaceChildren(...users.map((u) => h("tr", {}, h("td", {}, u.id), h("td", {}, u.name),
        h("td", {}, h("select", { "aria-label": `Role of ${u.name}`, onchange: async (e) => {
          try { await api(`/users/${u.id}`, { method: "PATCH", body: { role: e.target.value } }); tokenOut.textContent = `${u.name} is now ${e.target.value}.`; await loadMembers(); } catch (err) { showError(err); await loadUsers(); }
        } }, ["annotator", "engineer", "admin"].map((r) => h("option", { value: r, selected: r === u.role }, r)))),
        h("td", {}, h("button", { type: "button", "aria-label": `New token for ${u.name}`, onclick: async () => {
          try { const t = await api(`/users/${u.id}/tokens`, { method: "POST" }); tokenOut.textContent = `Token for ${u.name} (shown once): ${t.token}`; } catch (e) { showError(e); }
        } }, "New token"), " ",
        h("button", { type: "button", "aria-label": `Add to project: ${u.name}`, onclick: async () => {
          try { const m = await api(`/projects/${memberProject.value}/members`, { method: "POST", body: { user_id: u.id } }); tokenOut.textContent = m.added ? `${u.name} is now a member.` : `${u.name} was already a member.`; await loadMembers(); } catch (e) { showError(e); }
        } }, "Add to project"), " ",
        h("button", { type: "button", "aria-label": `Show the tokens of ${u.name}`, onclick: () => showTokens(u) }, "Tokens")))));
    } catch (e) { showError(e); }
  }
  const createUser = h("form.inline", {
    onsubmit: async (e) => {
      e.preventDefault();
      try { await api("/users", { method: "POST", body: { name: userName.value.trim(), role: userRole.value } }); createUser.reset(); await loadUsers(); } catch (err) { showError(err); }
    },
  }, h("label", { for: "user-name" }, "Name"), userName, h("label", { for: "user-role" }, "Role"), userRole, h("button", { type: "submit" }, "Create user"));

  root.replaceChildren(h("section.admin", {}, h("h1", {}, "Admin"),
    h("div.columns", {}, h("div", {}, createProject, created),
      h("div.card", {}, h("h2", {}, "Upload images"), h("label", { for: "upload-project" }, "Project"), projectSelect,
        h("label", { for: "upload-split" }, "Split"), split, h("label", { for: "upload-labels" }, "Labels CSV (filename,label), optional"), labelsInput,
        drop, fileInput, progress, report)),
    h("div.card", {}, h("h2", {}, "Users"), createUser, h("label", { for: "member-project" }, "Project for “Add to project”"), memberProject, tokenOut,
      h("h3", {}, "Members of the selected project"),
      h("table.members", {}, h("thead", {}, h("tr", {}, ["name", "role", ""].map((t) => h("th", { scope: "col" }, t)))), membersBody),
      h("h3", {}, "All users"),
      h("table.users", {}, h("thead", {}, h("tr", {}, ["id", "name", "role", ""].map((t) => h("th", { scope: "col" }, t)))), usersBody),
      tokensPanel)));
  fileInput.hidden = true;
  loadUsers();
  loadMembers();
  return () => {};
}
