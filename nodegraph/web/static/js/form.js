// A form generated from a graph's typed inputs (GET /graphs): numbers with min/max, selects for choices,
// text areas for prompts, file upload for image inputs, defaults filled in, descriptions as help, a
// random-seed button; inputs with a `group` in collapsed sections after the essentials.

import { upload } from "./api.js";
import { attachPicker } from "./pickers.js";

const MAX_SEED = 2 ** 32 - 1;

/** A random seed within the seed input's declared range. */
export function randomSeed(spec) {
  const low = Math.max(0, spec.min ?? 0), high = Math.min(MAX_SEED, spec.max ?? MAX_SEED);
  return low + Math.floor(Math.random() * (high - low + 1));
}

function isPrompt(name) { return /prompt/.test(name); }
// Inputs naming an image file (img2img's `image`, inpainting's `mask`, a ControlNet's `control_image`).
function isImage(name) { return /(^|_)(image|mask)$/.test(name); }

function uploader(name, control) {
  const picker = document.createElement("input");
  picker.type = "file";
  picker.accept = "image/*";
  picker.id = `file-${name}`;
  picker.setAttribute("aria-label", `upload an image for ${name}`);
  const thumb = document.createElement("img");
  thumb.className = "thumb";
  thumb.alt = `the image chosen for ${name}`;
  thumb.hidden = true;
  picker.addEventListener("change", async () => {
    const file = picker.files[0];
    if (!file) return;
    const error = document.getElementById(`err-${name}`);
    error.hidden = true;
    try {
      control.value = (await upload(file)).path;
      thumb.src = URL.createObjectURL(file);
      thumb.hidden = false;
    } catch (failure) {
      error.textContent = failure.message;
      error.hidden = false;
    }
  });
  return [picker, thumb];
}

/** A hub model this server has not downloaded: the form starts on the offline model instead (GET /graphs
 * reports it as `offline`), says so, and offers both in a list. */
function offerOffline(name, spec, control, line, help) {
  const list = document.createElement("datalist");
  list.id = `list-${name}`;
  for (const value of [spec.offline, spec.default]) {
    const option = document.createElement("option");
    option.value = value;
    list.append(option);
  }
  control.setAttribute("list", list.id);
  line.append(list);
  const note = document.createElement("span");
  note.className = "offline-note";
  note.textContent = ` ${spec.default} is not downloaded on this server, so ${spec.offline} (a tiny model that runs ` +
    "offline) is filled in; type or pick the other to use it.";
  help.append(note);
}

function fieldFor(name, spec) {
  const id = `in-${name}`;
  let control;
  if (spec.choices) {
    control = document.createElement("select");
    for (const choice of spec.choices) {
      const option = document.createElement("option");
      option.value = JSON.stringify(choice);
      option.textContent = choice === "" ? "(default)" : String(choice);
      control.append(option);
    }
  } else if (spec.type === "str" && isPrompt(name)) {
    control = document.createElement("textarea");
    control.rows = 2;
  } else if (spec.type === "bool") {
    control = document.createElement("input");
    control.type = "checkbox";
  } else if (spec.type === "int" || spec.type === "float") {
    control = document.createElement("input");
    control.type = "number";
    control.step = spec.type === "int" ? "1" : "any";
    if (spec.min !== undefined) control.min = spec.min;
    if (spec.max !== undefined) control.max = spec.max;
  } else {
    control = document.createElement("input");
    control.type = "text";
  }
  control.id = id;
  control.name = name;
  control.dataset.type = spec.type;
  if (spec.default === null) control.dataset.nullable = "true";  // empty: left out, the graph's default applies
  const help = document.createElement("small");
  help.id = `help-${name}`;
  const range = [spec.min !== undefined ? `min ${spec.min}` : "", spec.max !== undefined ? `max ${spec.max}` : ""]
    .filter(Boolean).join(", ");
  help.textContent = [spec.description, range && `(${range})`].filter(Boolean).join(" ");
  const error = document.createElement("p");
  error.id = `err-${name}`;
  error.className = "error";
  error.setAttribute("role", "alert");
  error.hidden = true;
  control.setAttribute("aria-describedby", `help-${name} err-${name}`);

  const label = document.createElement("label");
  label.htmlFor = id;
  label.textContent = name + (spec.required ? " *" : "");
  const row = document.createElement("div");
  row.className = "field";
  row.dataset.input = name;
  const line = document.createElement("div");
  line.className = "control";
  line.append(control);
  if (spec.offline) offerOffline(name, spec, control, line, help);
  // a model input: a searchable list of the server's models of the families it accepts (pickers.js)
  const picker = spec.accepts && spec.type === "str" ? [attachPicker(line, control, name, spec)] : [];
  if (name === "seed" && spec.type === "int") {
    const dice = document.createElement("button");
    dice.type = "button";
    dice.id = "random-seed";
    dice.textContent = "Random";
    dice.title = "a random seed";
    dice.addEventListener("click", () => { control.value = String(randomSeed(spec)); });
    line.append(dice);
  }
  if (spec.type === "str" && isImage(name)) {
    control.placeholder = "a path on the server, or upload a file";
    const [picker, thumb] = uploader(name, control);
    row.append(label, line, picker, thumb, help, error);
    return row;
  }
  row.append(label, line, ...picker, help, error);
  return row;
}

/** The inputs' `group`s (docs/graphs.md#inputs) as collapsed sections after the essentials (no group). */
function sections(inputs) {
  const essentials = [], groups = new Map();
  for (const [name, spec] of Object.entries(inputs)) {
    if (!spec.group) { essentials.push(fieldFor(name, spec)); continue; }
    if (!groups.has(spec.group)) {
      const box = document.createElement("details");
      box.className = "group";
      box.dataset.group = spec.group;
      const title = document.createElement("summary");
      title.textContent = spec.group.charAt(0).toUpperCase() + spec.group.slice(1).replaceAll("_", " ");
      box.append(title);
      groups.set(spec.group, box);
    }
    groups.get(spec.group).append(fieldFor(name, spec));
  }
  return [...essentials, ...groups.values()];
}

export function buildForm(container, inputs) {
  container.replaceChildren(...sections(inputs));
  fill(container, Object.fromEntries(Object.entries(inputs).map(([n, s]) => [n, s.offline ?? s.default ?? null])));
}

/** Put values into the form (missing names keep what they have). */
export function fill(container, values) {
  for (const [name, value] of Object.entries(values)) {
    const control = container.querySelector(`[name="${CSS.escape(name)}"]`);
    if (!control) continue;
    if (control.tagName === "SELECT") control.value = JSON.stringify(value ?? "");
    else if (control.type === "checkbox") control.checked = Boolean(value);
    else control.value = value === null || value === undefined ? "" : String(value);
  }
}

/** The values to send: empty number fields are left out (the graph's default applies). */
export function read(container) {
  const values = {};
  for (const control of container.querySelectorAll("[name]")) {
    const type = control.dataset.type;
    if (control.tagName === "SELECT") values[control.name] = JSON.parse(control.value);
    else if (control.type === "checkbox") values[control.name] = control.checked;
    else if (control.dataset.nullable && control.value === "") continue;
    else if (type === "int" || type === "float") {
      if (control.value.trim() === "") continue;
      const number = Number(control.value);
      values[control.name] = Number.isNaN(number) ? control.value : number;
    } else values[control.name] = control.value;
  }
  return values;
}

export function clearErrors(container) {
  for (const p of container.querySelectorAll(".field .error")) { p.hidden = true; p.textContent = ""; }
  for (const c of container.querySelectorAll("[aria-invalid]")) c.removeAttribute("aria-invalid");
}

/** Show each located error next to its input (`inputs.NAME...`); the rest are returned. */
export function showErrors(container, errors) {
  const unplaced = [];
  let first = null;
  for (const error of errors) {
    const match = /^inputs\.([^.[]+)/.exec(error.path || "");
    const slot = match && container.querySelector(`#err-${CSS.escape(match[1])}`);
    if (!slot) { unplaced.push(error); continue; }
    slot.hidden = false;
    slot.textContent = [slot.textContent, error.message + (error.hint ? ` — ${error.hint}` : "")]
      .filter(Boolean).join(" ");
    const control = container.querySelector(`[name="${CSS.escape(match[1])}"]`);
    const group = control.closest("details");
    if (group) group.open = true;  // an error in a collapsed group is shown, not hidden
    control.setAttribute("aria-invalid", "true");
    first = first || control;
  }
  if (first) first.focus();
  return unplaced;
}
