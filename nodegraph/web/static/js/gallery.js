// Past runs from the server's history (GET /history, newest first, a page at a time, searched by prompt):
// thumbnails, inputs, timings; "Use these inputs" refills the form (and the "Fast mode" box); "Watch" follows
// a run still queued or running; a thumbnail opens the in-page viewer (viewer.js); "Download PNG" saves the
// PNG with its metadata; "Delete" removes a run that ended, with its files (asked twice).

import { api, authorized } from "./api.js";
import { outputImages } from "./run.js";

export const PAGE_SIZE = 10;
const history = { query: "", cursors: [null], page: 0, total: 0, next: null, images: [], asked: 0 };

const SHOWN_INPUTS = ["prompt", "negative_prompt", "seed", "steps", "guidance_scale", "scheduler", "model"];

function summary(inputs) {
  return SHOWN_INPUTS.filter((name) => name in inputs && inputs[name] !== "" && inputs[name] !== null)
    .map((name) => `${name}: ${inputs[name]}`).join(" · ");
}

function entry(run, { onReuse, onWatch, onOpen, onDeleted }) {
  const item = document.createElement("li");
  item.className = `run ${run.status}`;
  item.dataset.run = run.id;
  const images = outputImages(run);
  for (const image of images.slice(0, 4)) {
    const at = history.images.push({ ...image, run }) - 1;
    const open = document.createElement("button");
    open.type = "button";
    open.className = "open-image";
    open.title = "open in the viewer";
    const img = document.createElement("img");
    img.className = "thumb";
    img.loading = "lazy";
    img.alt = `${run.graph} ${image.file}`;
    img.src = authorized(image.url);  // an <img> cannot send a header; never opened in a tab
    open.append(img);
    open.addEventListener("click", () => onOpen(history.images, at));
    item.append(open);
  }
  const text = document.createElement("div");
  text.className = "about";
  const title = document.createElement("strong");
  const when = new Date(run.created * 1000).toLocaleTimeString();
  const seconds = run.run_seconds == null ? "" : ` · ${run.run_seconds.toFixed(2)} s`;
  const fast = run.fast === true ? " · fast mode" : "";
  title.textContent = `${run.graph} · ${run.status}${fast} · ${when}${seconds}`;
  const inputs = document.createElement("p");
  inputs.className = "inputs";
  inputs.textContent = summary(run.inputs || {});
  const all = document.createElement("details");
  const label = document.createElement("summary");
  label.textContent = "all inputs";
  const list = document.createElement("pre");
  list.className = "all-inputs";
  list.textContent = Object.entries(run.inputs || {}).map(([k, v]) => `${k}: ${JSON.stringify(v)}`).join("\n");
  all.append(label, list);
  text.append(title, inputs, all);
  if (run.error) {
    const error = document.createElement("p");
    error.className = "error";
    error.textContent = run.error.split("\n")[0];
    text.append(error);
  }
  const buttons = document.createElement("div");
  buttons.className = "buttons";
  const reuse = document.createElement("button");
  reuse.type = "button";
  reuse.className = "reuse";
  reuse.textContent = "Use these inputs";
  reuse.addEventListener("click", () => onReuse(run));
  buttons.append(reuse);
  if (run.status === "queued" || run.status === "running") {
    const watch = document.createElement("button");
    watch.type = "button";
    watch.className = "watch";
    watch.textContent = "Watch";
    watch.addEventListener("click", () => onWatch(run));
    buttons.append(watch);
  }
  if (["finished", "failed", "cancelled"].includes(run.status)) buttons.append(deleteButton(run, onDeleted));
  for (const image of images.slice(0, 1)) {
    const download = document.createElement("a");
    download.className = "download";
    download.href = authorized(image.url);
    download.download = `${run.id}-${image.file}`;
    download.textContent = "Download PNG";
    buttons.append(download);
  }
  text.append(buttons);
  item.append(text);
  return item;
}

function deleteButton(run, onDeleted) {
  const remove = document.createElement("button");
  remove.type = "button";
  remove.className = "delete";
  remove.textContent = "Delete";
  remove.addEventListener("click", async () => {
    if (remove.dataset.confirm !== "true") {  // asked twice: a click too many deletes nothing
      remove.dataset.confirm = "true";
      remove.textContent = "Delete this run and its images?";
      return;
    }
    remove.disabled = true;
    try {
      await api(`/history/${encodeURIComponent(run.id)}`, { method: "DELETE" });
      onDeleted(run);
    } catch (error) {
      remove.textContent = error.message;
    }
  });
  return remove;
}

/** Draw the current page of the history into `list` (#gallery); the paging line says where it is. */
export async function loadGallery(list, handlers) {
  const cursor = history.cursors[history.page];
  const query = new URLSearchParams({ limit: String(PAGE_SIZE) });
  if (history.query) query.set("q", history.query);
  if (cursor !== null) query.set("cursor", String(cursor));
  const asked = ++history.asked;
  const page = await api(`/history?${query}`);
  if (asked !== history.asked) return;  // a later reload (another page, a search) was asked for meanwhile
  if (!page.runs.length && history.page > 0) {  // its last run was deleted: show the page before
    history.page -= 1;
    return loadGallery(list, handlers);
  }
  history.total = page.total;
  history.next = page.next;
  history.images = [];
  list.replaceChildren(...page.runs.map((run) => entry(run, handlers)));
  const first = history.page * PAGE_SIZE;
  const shown = document.getElementById("history-page");
  shown.textContent = page.total === 0 ? (history.query ? "No run's prompt contains that." : "No runs yet.")
    : `Runs ${first + 1}–${first + page.runs.length} of ${page.total}`;
  document.getElementById("newer").disabled = history.page === 0;
  document.getElementById("older").disabled = page.next === null;
}

/** The search field and the Newer / Older buttons; `reload()` draws the page again. */
export function setupHistory(reload) {
  const search = document.getElementById("history-search");
  search.closest("form").addEventListener("submit", (event) => {
    event.preventDefault();
    history.query = search.value.trim();
    history.cursors = [null];
    history.page = 0;
    reload();
  });
  document.getElementById("older").addEventListener("click", () => {
    if (history.next === null) return;
    history.cursors[history.page + 1] = history.next;
    history.page += 1;
    reload();
  });
  document.getElementById("newer").addEventListener("click", () => {
    history.page = Math.max(0, history.page - 1);
    reload();
  });
}
