// Past runs from the server's history (GET /runs, newest first): thumbnails, inputs, timings;
// "Use these inputs" refills the form (and the "Fast mode" box); "Watch" follows a run still queued or running;
// a result opens full size or downloads as the PNG with its metadata.

import { api, authorized } from "./api.js";
import { outputImages } from "./run.js";

const SHOWN_INPUTS = ["prompt", "negative_prompt", "seed", "steps", "guidance_scale", "scheduler", "model"];

function summary(inputs) {
  return SHOWN_INPUTS.filter((name) => name in inputs && inputs[name] !== "" && inputs[name] !== null)
    .map((name) => `${name}: ${inputs[name]}`).join(" · ");
}

function entry(run, onReuse, onWatch) {
  const item = document.createElement("li");
  item.className = `run ${run.status}`;
  item.dataset.run = run.id;
  const images = outputImages(run);
  for (const image of images.slice(0, 4)) {
    const link = document.createElement("a");
    link.href = authorized(image.url);
    link.target = "_blank";
    link.title = "open full size";
    const img = document.createElement("img");
    img.className = "thumb";
    img.loading = "lazy";
    img.alt = `${run.graph} ${image.file}`;
    img.src = authorized(image.url);
    link.append(img);
    item.append(link);
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

export async function loadGallery(list, onReuse, onWatch, limit = 30) {
  const page = await api(`/runs?limit=${limit}`);
  list.replaceChildren(...page.runs.map((run) => entry(run, onReuse, onWatch)));
}
