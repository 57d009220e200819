// The node editor on the page: open a server graph (or start empty), edit it on a Drawflow canvas, validate
// through the server as you edit, save through the server (a round trip keeping the file's comments), download
// the YAML. Only the server's API is used; Drawflow is vendored (static/vendor/drawflow, docs/server.md).

import { api, ApiError } from "../api.js";
import { Canvas } from "./canvas.js";
import { GraphModel, isRef } from "./model.js";
import { buildPanel, parseLiteral, placeOf, say, showProblems } from "./panel.js";
import { setTypes } from "./types.js";

const VENDOR = "/static/vendor/drawflow/";
const state = { model: null, canvas: null, name: "", stamp: null, errors: [], checks: 0, nodeTypes: new Map() };
let panel;

function loadVendor() {
  const style = document.createElement("link");
  style.rel = "stylesheet";
  style.href = `${VENDOR}drawflow.min.css`;
  document.head.prepend(style);  // before style.css and editor.css, so their rules win
  const own = document.createElement("link");
  own.rel = "stylesheet";
  own.href = "/static/js/editor/editor.css";
  document.head.append(own);
  return new Promise((resolve, reject) => {
    const script = document.createElement("script");
    script.src = `${VENDOR}drawflow.min.js`;
    script.onload = resolve;
    script.onerror = () => reject(new Error("the editor library did not load"));
    document.head.append(script);
  });
}

let ready = null;
function prepare() {
  ready ||= (async () => {
    const [nodes, types] = await Promise.all([api("/nodes"), api("/editor/types"), loadVendor()]);
    setTypes(types);
    state.nodeTypes = new Map(nodes.nodes.map((t) => [t.name, t]));
    panel.types.innerHTML = "";
    const graphs = [...panel.graph.options].map((o) => `./${o.value}.yaml`);  // included graphs, as nodes
    for (const name of ["repeat", ...state.nodeTypes.keys(), ...graphs]) panel.types.append(new Option(name, name));
  })();
  return ready;
}

function redraw() {
  state.canvas.render();
  showProblems(panel, panel.canvas, state.canvas.scope, state.errors);
  state.canvas.settle();
  panel.undo.disabled = !state.model.undoStack.length;
  panel.redo.disabled = !state.model.redoStack.length;
  showPath();
  labelPorts();
}

function showPath() {
  panel.path.replaceChildren();
  const levels = [[], ...state.canvas.scope.map((_, i) => state.canvas.scope.slice(0, i + 1))];
  levels.forEach((scope, i) => {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = i === 0 ? state.name || "new graph" : `repeat ${scope[scope.length - 1]}`;
    button.setAttribute("aria-current", String(i === levels.length - 1));
    button.addEventListener("click", () => { state.canvas.scope = scope; redraw(); state.canvas.fit(); });
    panel.path.append(button, " › ");
  });
  panel.path.lastChild?.remove();
}

let timer = null;
function validateSoon() {
  clearTimeout(timer);
  timer = setTimeout(validate, 250);
}

async function validate() {
  const check = ++state.checks;
  try {
    const result = await api("/editor/validate", { method: "POST", body: { document: state.model.toDocument(), name: state.name } });
    if (check !== state.checks) return;  // an older answer than the last edit
    state.errors = result.errors;
    const fresh = Object.keys(result.includes).some((t) => !state.model.includes[t]);
    Object.assign(state.model.includes, result.includes);
    if (fresh) redraw();
    showProblems(panel, panel.canvas, state.canvas.scope, state.errors);
    state.canvas.settle();
    panel.section.dataset.checked = String(check);
  } catch (error) {
    say(panel, `Could not validate: ${error.message}`, true);
  }
}

function start(document, { name = "", stamp = null, layout = {}, includes = {} } = {}) {
  state.model = new GraphModel(state.nodeTypes, document, includes);
  state.name = name;
  state.stamp = stamp;
  state.errors = [];
  state.savedAt = 0;
  state.warned = null;
  panel.name.value = name;
  panel.work.hidden = false;
  panel.conflict.hidden = true;
  panel.draft.hidden = true;
  state.canvas ||= new Canvas(panel.canvas, state.model, {
    say: (text, isError) => say(panel, text, isError),
    open: openBox,
  });
  state.canvas.model = state.model;
  state.canvas.scope = [];
  state.canvas.layout = { ...layout };
  state.model.onChange((step, how) => {
    if (!(how === "do" && step.keepDrawing)) redraw();
    panel.undo.disabled = !state.model.undoStack.length;
    panel.redo.disabled = !state.model.redoStack.length;
    validateSoon();
  });
  redraw();
  state.canvas.fit();
  validate();
}

/** Whether the edits since the last open or save would be lost; says so the first time it is asked. */
function wouldLose(action) {
  const edited = state.model && state.model.undoStack.length !== state.savedAt;
  if (!edited || state.warned === action) return false;
  state.warned = action;
  say(panel, `The graph has unsaved changes: save it (or download the YAML), or ${action} again to drop them.`, true);
  return true;
}

async function openGraph(name) {
  if (wouldLose(`open ${name}`)) return;
  if (!panel.graph.options.length) await listGraphs();
  await prepare();
  try {
    const opened = await api(`/editor/graphs/${encodeURIComponent(name)}`);
    start(opened.document, opened);
    say(panel, opened.editable ? `Opened ${name}.` : `Opened ${name}: this server does not let the page write it `
      + "(the shipped graphs are never written); save under another name or download the YAML.");
  } catch (error) {
    say(panel, `Could not open ${name}: ${error.message}`, true);
  }
}

/** Bring the box a problem concerns into view, opening the repeat body it is in. */
function showPlace(place) {
  if (place.id === null) return;
  if (place.scope.join("/") !== state.canvas.scope.join("/")) {
    state.canvas.scope = place.scope;
    redraw();
  }
  state.canvas.show(place.id);
}

function openBox(box) {
  if (box.kind === "repeat") {
    state.canvas.scope = [...state.canvas.scope, box.key];
    redraw();
    state.canvas.fit();
    return;
  }
  const graph = String(box.subtitle).replace(/^.*\//, "").replace(/\.ya?ml$/, "");
  openGraph(graph);
}

async function save(draft = false, overwrite = false) {
  const name = panel.name.value.trim();
  if (!name) {
    say(panel, "Give the graph a name first (letters, digits, _ and -).", true);
    panel.name.focus();
    return;
  }
  const sameFile = name === state.name;
  const body = { document: state.model.toDocument(), stamp: sameFile ? state.stamp : null,
    layout: state.canvas.positions(), draft, overwrite, source: state.name };
  try {
    const saved = await api(`/editor/graphs/${encodeURIComponent(name)}`, { method: "PUT", body });
    panel.conflict.hidden = true;
    panel.draft.hidden = true;
    if (saved.saved === "draft") {
      say(panel, `Saved ${name} as a draft (not among the graphs) with ${saved.errors.length} problems, listed below.`, true);
      return;
    }
    state.name = name;
    state.stamp = saved.stamp;
    state.savedAt = state.model.undoStack.length;
    showPath();
    say(panel, `Saved ${name}.yaml.`);
  } catch (error) {
    if (!(error instanceof ApiError)) throw error;
    const code = error.errors[0]?.code;
    if (code === "changed_on_disk") {
      panel.conflictText.textContent = `${error.errors[0].message}.`;
      panel.conflict.hidden = false;
      panel.overwrite.focus();
    } else if (error.status === 422) {
      state.errors = error.errors;
      showProblems(panel, panel.canvas, state.canvas.scope, state.errors);
      state.canvas.settle();
      panel.draft.hidden = false;
      say(panel, `Not saved: the graph has ${error.errors.length} problems (listed below). Fix them, or save it as a draft.`, true);
    } else {
      say(panel, `Not saved: ${error.message}`, true);
    }
  }
}

async function download() {
  const name = panel.name.value.trim();
  const { yaml } = await api("/editor/yaml", { method: "POST",
    body: { document: state.model.toDocument(), name: name || state.name, source: state.name } });
  const link = document.createElement("a");
  link.href = URL.createObjectURL(new Blob([yaml], { type: "application/yaml" }));
  link.download = `${name || "graph"}.yaml`;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 1000);
}

function addNode() {
  const type = panel.add.value.trim();
  if (!type) return;
  if (!state.nodeTypes.has(type.replace(/@\d+$/, "")) && type !== "repeat" && !/\.ya?ml$/.test(type)) {
    say(panel, `No node type ${type}: pick one from the list.`, true);
    return;
  }
  const id = state.model.addNode(state.canvas.scope, type);
  panel.add.value = "";
  say(panel, `Added ${id} (${type}).`);
  panel.canvas.querySelector(`[data-select="${CSS.escape(id)}"]`)?.focus();
}

/** "Add an input/output": a graph input (name:type) or output at the top level; inside a repeat body, a
 * carried state (with its next value) or a collected value. */
function addPort(which) {
  const field = which === "output" ? panel.newOutput : panel.newInput;
  const [name, type = "str"] = field.value.split(":").map((s) => s.trim());
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name || "")) {
    say(panel, `A name is letters, digits and _ (not starting with a digit).`, true);
    return;
  }
  const { scope } = state.canvas;
  if (scope.length) {
    const repeat = state.model.pathOf(scope.slice(0, -1), scope[scope.length - 1]);
    const parts = which === "output" ? [["collect", name]] : [["state", name], ["next", name]];
    for (const [part] of parts) {
      if (state.model.get([...repeat, part]) === undefined) state.model.write([...repeat, part], {});
    }
    state.model.change(`add ${parts[0][0]} ${name}`, parts.map(([part, n]) => [[...repeat, part, n], ""]));
  } else {
    state.model.change(`add ${which} ${name}`, [[[`${which}s`, name], which === "output" ? "" : { type }]]);
  }
  field.value = "";
}

function labelPorts() {
  const body = state.canvas.scope.length > 0;
  panel.section.querySelector("label[for=ed-new-output]").textContent = body ? "Add a collected value" : "Add an output";
  panel.section.querySelector("label[for=ed-new-input]").textContent = body ? "Add a carried state" : "Add an input";
  panel.newInput.placeholder = body ? "name" : "name:type";
}

function defaultChanged(field) {
  const name = field.dataset.input;
  const type = state.model.doc.inputs?.[name]?.type || "str";
  const text = field.value.trim();
  const value = text === "null" ? null : type === "str" ? field.value : parseLiteral(field.value, type);
  state.model.change(`set the default of ${name}`, [[["inputs", name, "default"], value]], { keepDrawing: true });
}

function literalChanged(event) {
  if (event.target.matches("input.def")) { defaultChanged(event.target); return; }
  const field = event.target.closest("input.lit");
  if (!field) return;
  const box = field.dataset.box;
  const port = state.canvas.boxes.get(state.canvas.ids.get(box))?.inputs.find((p) => p.name === field.dataset.port);
  if (!port) return;
  const value = field.type === "checkbox" ? field.checked : parseLiteral(field.value, port.type);
  if (isRef(value)) {
    const reason = state.model.refusal(state.canvas.scope, box, port.name, value);
    if (reason) { say(panel, `Not connected: ${reason}.`, true); field.value = ""; return; }
  }
  const path = state.canvas.target(state.canvas.boxes.get(state.canvas.ids.get(box)), port.name).path;
  state.model.change(`set ${box}.${port.name}`, [[path, value]], { keepDrawing: !isRef(value) });
  if (isRef(value)) say(panel, `Connected ${value} to ${box}.${port.name}.`);
}

function keys(event) {
  const typing = event.target.closest("input, textarea, select");
  const mod = event.ctrlKey || event.metaKey;
  if (mod && !typing && event.key.toLowerCase() === "z") {
    event.preventDefault();
    const label = event.shiftKey ? state.model?.redo() : state.model?.undo();
    if (label) say(panel, `${event.shiftKey ? "Redone" : "Undone"}: ${label}.`);
  } else if (mod && !typing && event.key.toLowerCase() === "y") {
    event.preventDefault();
    const label = state.model?.redo();
    if (label) say(panel, `Redone: ${label}.`);
  } else if (!typing && !mod && (event.key === "Delete" || event.key === "Backspace")) {
    const focused = event.target.closest("[data-select]");
    if (focused) { event.preventDefault(); event.stopPropagation(); state.canvas.remove(focused.dataset.select); }
  } else if (!typing && !mod && ["+", "-", "0"].includes(event.key) && event.target.closest("#ed-canvas")) {
    if (event.key === "0") state.canvas.fit(); else if (event.key === "+") state.canvas.editor.zoom_in(); else state.canvas.editor.zoom_out();
  }
}

function wire() {
  panel.open.addEventListener("click", async () => {
    if (!panel.graph.value) await listGraphs().catch(() => {});
    if (panel.graph.value) openGraph(panel.graph.value);
  });
  panel.new.addEventListener("click", async () => {
    if (wouldLose("start a new graph")) return;
    if (!panel.graph.options.length) await listGraphs();
    await prepare();
    start({ nodegraph: 1, inputs: {}, nodes: {}, outputs: {} });
    say(panel, "A new empty graph: add nodes, give it a name, save.");
  });
  panel.undo.addEventListener("click", () => { const l = state.model.undo(); if (l) say(panel, `Undone: ${l}.`); });
  panel.redo.addEventListener("click", () => { const l = state.model.redo(); if (l) say(panel, `Redone: ${l}.`); });
  panel.zoomIn.addEventListener("click", () => state.canvas.editor.zoom_in());
  panel.zoomOut.addEventListener("click", () => state.canvas.editor.zoom_out());
  panel.fit.addEventListener("click", () => state.canvas.fit());
  panel.save.addEventListener("click", () => save(false));
  panel.draft.addEventListener("click", () => save(true));
  panel.overwrite.addEventListener("click", () => save(false, true));
  panel.reload.addEventListener("click", () => { state.warned = `open ${state.name}`; openGraph(state.name); });
  panel.download.addEventListener("click", download);
  panel.addButton.addEventListener("click", addNode);
  panel.add.addEventListener("keydown", (e) => { if (e.key === "Enter") { e.preventDefault(); addNode(); } });
  panel.add.addEventListener("input", () => { panel.addHelp.textContent = state.nodeTypes.get(panel.add.value.trim())?.doc || ""; });
  panel.newOutput.addEventListener("keydown", (e) => { if (e.key === "Enter") addPort("output"); });
  panel.newInput.addEventListener("keydown", (e) => { if (e.key === "Enter") addPort("input"); });
  panel.canvas.addEventListener("change", literalChanged);
  panel.errors.addEventListener("click", (event) => {
    const where = event.target.closest("[data-path]");
    if (where) showPlace(placeOf(where.dataset.path));
  });
  panel.section.addEventListener("keydown", keys, true);
}

export async function listGraphs() {
  const { graphs } = await api("/editor/graphs");
  panel.graph.replaceChildren(...graphs.map((g) => new Option(g.name, g.name)));
  const wanted = new URLSearchParams(location.hash.slice(1)).get("graph");
  if (wanted) panel.graph.value = wanted;
}

const section = document.getElementById("editor");
if (section) {
  panel = buildPanel(section);
  wire();
  listGraphs().catch(() => { /* the page asks for the token first; the list is filled on Open */ });
}
