// Thin REST client: bearer token from localStorage, JSON in and out, API errors surfaced as Error(detail).

const TOKEN_KEY = "suggestlab.token";

export const token = {
  get: () => localStorage.getItem(TOKEN_KEY),
  set: (value) => localStorage.setItem(TOKEN_KEY, value),
  clear: () => localStorage.removeItem(TOKEN_KEY),
};

export class ApiError extends Error {
  constructor(status, detail) {
    super(typeof detail === "string" ? detail : JSON.stringify(detail));
    this.status = status;
  }
}

function describe(detail) {
  if (Array.isArray(detail)) {
    // FastAPI validation errors: [{loc, msg}, ...]
    return detail.map((d) => `${(d.loc || []).slice(1).join(".") || "request"}: ${d.msg}`).join("; ");
  }
  return detail;
}

export async function api(path, { method = "GET", body, form } = {}) {
  const headers = {};
  const t = token.get();
  if (t) headers.Authorization = `Bearer ${t}`;
  let payload;
  if (form) payload = form;
  else if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  const response = await fetch(`/api/v1${path}`, { method, headers, body: payload });
  if (response.status === 204) return null;
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  if (!response.ok) throw new ApiError(response.status, describe(data?.detail ?? response.statusText));
  return data;
}

// Upload with progress (fetch has no upload progress events).
// With `onRun`, the server streams JSON lines as it stores each run of images (`progress=true`):
// onRun gets each run's counts, and the promise resolves with the final report.
export function upload(path, form, onProgress, onRun) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", `/api/v1${path}${onRun ? "?progress=true" : ""}`);
    const t = token.get();
    if (t) xhr.setRequestHeader("Authorization", `Bearer ${t}`);
    xhr.upload.onprogress = (e) => e.lengthComputable && onProgress(e.loaded / e.total);
    let parsed = 0;
    let last = null;
    const readLines = () => {
      const text = xhr.responseText;
      const end = text.lastIndexOf("\n") + 1;
      const fresh = text.slice(parsed, end).split("\n").filter(Boolean);
      parsed = end;
      for (const line of fresh) {
        let value = null;
        try { value = JSON.parse(line); } catch { continue; }
        if (value.processed !== undefined) onRun(value);
        else last = value;
      }
    };
    if (onRun) xhr.onprogress = () => { if (xhr.status === 200) readLines(); };
    xhr.onload = () => {
      if (onRun && xhr.status === 200) {
        readLines();
        if (last?.done) resolve(last.report);
        else reject(new ApiError(500, last?.error ?? "the upload stopped before its report"));
        return;
      }
      let data = null;
      try { data = JSON.parse(xhr.responseText); } catch { /* not JSON */ }
      if (xhr.status >= 200 && xhr.status < 300) resolve(data);
      else reject(new ApiError(xhr.status, describe(data?.detail ?? xhr.statusText)));
    };
    xhr.onerror = () => reject(new ApiError(0, "network error during upload"));
    xhr.send(form);
  });
}

export async function signIn(value) {
  const user = await fetch("/api/v1/session", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ token: value }),
  });
  const data = await user.json();
  if (!user.ok) throw new ApiError(user.status, data.detail);
  // Keep only the session token, which sign-out ends; the long-lived token is never stored.
  token.set(data.token);
  return data;
}

export async function signOut() {
  const t = token.get();
  await fetch("/api/v1/session", { method: "DELETE", headers: t ? { Authorization: `Bearer ${t}` } : {} });
  token.clear();
}
