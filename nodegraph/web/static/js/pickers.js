// Model inputs as searchable pickers: the server's models (GET /models: builtin, its --models folders, its
// Hugging Face cache) of the families the input accepts (GET /graphs' `accepts`, e.g. SDXL base checkpoints
// for an SDXL graph), grouped by family. The text field stays: a hub repo id can still be typed; a typed path
// that is not one of the server's models is flagged here, and the server refuses it when the run is sent.

import { api } from "./api.js";

let listing = null;

/** The server's models, asked for once per page (again with `fresh`). */
export function serverModels(fresh = false) {
  if (!listing || fresh) {
    listing = api("/models").then((answer) => answer.models);
    listing.catch(() => { listing = null; });
  }
  return listing;
}

const looksLikePath = (value) => /^(\/|[A-Za-z]:[\\/]|\\\\)/.test(value);

function option(model, choose) {
  const item = document.createElement("li");
  const button = document.createElement("button");
  button.type = "button";
  button.className = "model";
  button.dataset.value = model.value;
  const where = { builtin: "built in", models: "models folder", "hub cache": "downloaded from the Hub" }[model.source];
  button.textContent = model.label;
  const source = document.createElement("small");
  source.textContent = ` ${where || model.source}`;
  button.append(source);
  button.addEventListener("click", () => choose(model));
  item.append(button);
  return item;
}

function groups(models, query, choose) {
  const wanted = query.trim().toLowerCase();
  const families = new Map();
  for (const model of models) {
    const text = `${model.label} ${model.value} ${model.family_label}`.toLowerCase();
    if (wanted && !text.includes(wanted)) continue;
    if (!families.has(model.family)) families.set(model.family, { label: model.family_label, items: [] });
    families.get(model.family).items.push(option(model, choose));
  }
  return [...families.entries()].map(([family, { label, items }]) => {
    const box = document.createElement("section");
    box.className = "family";
    box.dataset.family = family;
    const title = document.createElement("h4");
    title.textContent = label;
    const list = document.createElement("ul");
    list.append(...items);
    box.append(title, list);
    return box;
  });
}

/** Add a "Choose…" button after `control` (graph input `name`) in `line`; returns its panel, for the row. */
export function attachPicker(line, control, name, spec) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "choose";
  button.id = `pick-${name}`;
  button.textContent = "Choose…";
  button.setAttribute("aria-expanded", "false");
  button.setAttribute("aria-controls", `picker-${name}`);
  const panel = document.createElement("div");
  panel.className = "picker";
  panel.id = `picker-${name}`;
  panel.hidden = true;
  const search = document.createElement("input");
  search.type = "search";
  search.id = `search-${name}`;
  search.placeholder = "Search models";
  search.setAttribute("aria-label", `search the models for ${name}`);
  const results = document.createElement("div");
  results.className = "results";
  results.setAttribute("aria-live", "polite");
  panel.append(search, results);
  let models = [];

  const close = () => { panel.hidden = true; button.setAttribute("aria-expanded", "false"); };
  const choose = (model) => {
    control.value = model.value;
    control.dispatchEvent(new Event("change"));
    close();
    control.focus();
  };
  const draw = () => {
    const shown = groups(models, search.value, choose);
    if (shown.length) results.replaceChildren(...shown);
    else results.textContent = search.value ? "No model matches." : "This server has no model this input accepts; " +
      "put one in a --models folder, or type a hub repo id.";
  };
  button.addEventListener("click", async () => {
    if (!panel.hidden) { close(); return; }
    panel.hidden = false;
    button.setAttribute("aria-expanded", "true");
    results.textContent = "Loading the server's models…";
    try {
      const all = await serverModels(true);
      models = all.filter((model) => spec.accepts.includes(model.family));
      draw();
    } catch (error) {
      results.textContent = `Cannot list the models: ${error.message}`;
    }
    search.focus();
  });
  search.addEventListener("input", draw);
  panel.addEventListener("keydown", (event) => {
    if (event.key === "Escape") { close(); button.focus(); }
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      const buttons = [...panel.querySelectorAll("button.model")];
      const at = buttons.indexOf(document.activeElement);
      const next = event.key === "ArrowDown" ? Math.min(at + 1, buttons.length - 1) : Math.max(at - 1, 0);
      if (buttons.length) { buttons[next].focus(); event.preventDefault(); }
    }
  });
  control.addEventListener("change", () => checkTyped(control, name));
  line.append(button);
  return panel;
}

/** A typed path that is none of the server's models: said at once (the server would refuse it). */
async function checkTyped(control, name) {
  const error = document.getElementById(`err-${name}`);
  const value = control.value.trim();
  if (!looksLikePath(value)) { if (error?.dataset.picker) { error.hidden = true; delete error.dataset.picker; } return; }
  let known = [];
  try { known = (await serverModels()).map((model) => model.value); } catch { return; }
  if (!error || known.includes(value)) { if (error?.dataset.picker) error.hidden = true; return; }
  error.textContent = "Not one of this server's models: the server loads files only from its models folders. " +
    "Pick one with “Choose…”.";
  error.dataset.picker = "true";
  error.hidden = false;
  control.setAttribute("aria-invalid", "true");
}
