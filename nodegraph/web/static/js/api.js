// The server's public HTTP API (docs/server.md), with the token when the server has one.
// The token lives in sessionStorage (or comes from the page address's #token=...), never in a URL sent
// to the server except where a browser cannot set headers (EventSource, <img>): ?access_token=.

let token = sessionStorage.getItem("nodegraph-token") || "";
const fromHash = new URLSearchParams(location.hash.slice(1)).get("token");
if (fromHash) {
  token = fromHash;
  sessionStorage.setItem("nodegraph-token", token);
  history.replaceState(null, "", location.pathname + location.search);
}

export function setToken(value) {
  token = value;
  sessionStorage.setItem("nodegraph-token", value);
}

export class ApiError extends Error {
  constructor(status, body) {
    super(body.message || `HTTP ${status}`);
    this.status = status;
    this.errors = body.errors || [];
  }
}

export async function api(path, { method = "GET", body } = {}) {
  const headers = {};
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await response.text();
  let data = {};
  try { data = text ? JSON.parse(text) : {}; } catch { data = { message: text }; }
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

/** A URL a browser element loads itself (an <img>, a link, an EventSource). */
export function authorized(path) {
  if (!token) return path;
  return path + (path.includes("?") ? "&" : "?") + "access_token=" + encodeURIComponent(token);
}

/** POST /inputs: an image file for a file input; answers {path, name, width, height}. */
export async function upload(file) {
  const headers = { "Content-Type": file.type || "application/octet-stream" };
  if (token) headers.Authorization = `Bearer ${token}`;
  const response = await fetch("/inputs", { method: "POST", headers, body: file });
  const data = await response.json().catch(() => ({ message: `HTTP ${response.status}` }));
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

/** A file of the server as a Blob, fetched with the token in a header: its blob: URL can be opened in a new tab
 * or downloaded without the token appearing in any address. */
export async function fetchBlob(path) {
  const headers = token ? { Authorization: `Bearer ${token}` } : {};
  const response = await fetch(path, { headers });
  if (!response.ok) throw new ApiError(response.status, await response.json().catch(() => ({})));
  return response.blob();
}
