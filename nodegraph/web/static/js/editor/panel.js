// The editor's controls (built once into <section id="editor">) and how problems are shown: on the box and
// port they concern when that box is on the canvas, and always in the list under it.

import { esc } from "./boxes.js";

const CONTROLS = `
<h2>Graph editor</h2>
<p class="ed-help">Open a graph (or start empty), connect outputs to inputs by dragging, edit values in place;
problems are checked by the server as you edit. Keys: Delete removes the focused node, Ctrl+Z / Ctrl+Y undo and
redo, + / − / 0 zoom. Node positions are kept beside the graph, not in its YAML.</p>
<div class="ed-bar" role="toolbar" aria-label="Open a graph">
  <label for="ed-graph">Graph</label> <select id="ed-graph"></select>
  <button type="button" id="ed-open">Open in the editor</button>
  <button type="button" id="ed-new">New empty graph</button>
</div>
<div id="ed-work" hidden>
  <div class="ed-bar" role="toolbar" aria-label="Edit">
    <button type="button" id="ed-undo" disabled>Undo</button>
    <button type="button" id="ed-redo" disabled>Redo</button>
    <button type="button" id="ed-zoom-in" aria-label="Zoom in">+</button>
    <button type="button" id="ed-zoom-out" aria-label="Zoom out">−</button>
    <button type="button" id="ed-fit">Fit</button>
    <label for="ed-name">Name</label> <input id="ed-name" size="18" autocomplete="off">
    <button type="button" id="ed-save">Save</button>
    <button type="button" id="ed-draft" hidden>Save as draft</button>
    <button type="button" id="ed-download">Download YAML</button>
  </div>
  <div class="ed-bar">
    <label for="ed-add">Add a node</label>
    <input id="ed-add" list="ed-types" size="26" autocomplete="off" placeholder="node type, e.g. VAEDecode">
    <datalist id="ed-types"></datalist>
    <button type="button" id="ed-add-button">Add</button>
    <label for="ed-new-output">Add an output</label> <input id="ed-new-output" size="10" autocomplete="off">
    <label for="ed-new-input">Add an input</label> <input id="ed-new-input" size="10" autocomplete="off"
      placeholder="name:type">
  </div>
  <small id="ed-add-help"></small>
  <nav id="ed-path" aria-label="Where in the graph"></nav>
  <p id="ed-message" role="status"></p>
  <div id="ed-conflict" class="ed-conflict" role="alertdialog" aria-labelledby="ed-conflict-text" hidden>
    <span id="ed-conflict-text"></span>
    <button type="button" id="ed-overwrite">Overwrite the file</button>
    <button type="button" id="ed-reload">Reload it from disk</button>
  </div>
  <div id="ed-canvas" aria-label="Graph canvas"></div>
  <h3>Problems <span id="ed-count"></span></h3>
  <ul id="ed-errors"></ul>
</div>`;

export function buildPanel(section) {
  section.innerHTML = CONTROLS;
  const $ = (id) => section.querySelector(`#${id}`);
  const name = (id) => `ed-${String(id).replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
  return new Proxy({}, { get: (_, id) => (id === "section" ? section : $(name(id))) });
}

/** `nodes.a.nodes.b.port.rest` -> {scope: ["a"], id: "b", port: "port"}; outputs.x -> the outputs box. */
export function placeOf(path) {
  const parts = String(path || "").split(".");
  if (parts[0] === "outputs") return { scope: [], id: "@outputs", port: parts[1] || null };
  if (parts[0] === "inputs") return { scope: [], id: "@inputs", port: parts[1] || null };
  const scope = [];
  let i = 0;
  while (parts[i] === "nodes" && parts[i + 2] === "nodes") { scope.push(parts[i + 1]); i += 2; }
  if (parts[i] !== "nodes" || !parts[i + 1]) return { scope: [], id: null, port: null };
  let port = parts[i + 2] || null;
  if (port === "inputs") port = parts[i + 3] || null;
  if (["next", "collect"].includes(port) && parts[i + 3]) return { scope: [...scope, parts[i + 1]], id: "@next", port: `${port}.${parts[i + 3]}` };
  if (port === "state" && parts[i + 3]) port = `state.${parts[i + 3]}`;
  return { scope, id: parts[i + 1], port };
}

/** Show `errors` on the canvas (boxes of `scope`) and in the list. */
export function showProblems(panel, canvasElement, scope, errors) {
  for (const element of canvasElement.querySelectorAll(".has-error")) element.classList.remove("has-error");
  for (const element of canvasElement.querySelectorAll(".nerr, .perr")) element.textContent = "";
  const here = scope.join("/");
  for (const error of errors) {
    const place = placeOf(error.path);
    if (place.id === null || place.scope.join("/") !== here) continue;
    const node = [...canvasElement.querySelectorAll(".drawflow-node")].find((n) => n.querySelector(
      `.head[data-box="${CSS.escape(place.id)}"]`));
    if (!node) continue;
    node.classList.add("has-error");
    const row = place.port && node.querySelector(`.row.in[data-port="${CSS.escape(place.port)}"]`);
    const slot = row ? row.querySelector(".perr") : node.querySelector(".nerr");
    if (row) row.classList.add("has-error");
    slot.textContent = (slot.textContent ? `${slot.textContent} · ` : "") + error.message;
  }
  panel.count.textContent = errors.length ? `(${errors.length})` : "(none)";
  panel.errors.innerHTML = errors.map((e) => `<li><button type="button" class="where" data-path="${esc(e.path)}">`
    + `${esc(e.path || "graph")}</button> ${esc(e.message)}`
    + `${e.hint ? ` <small>${esc(e.hint)}</small>` : ""} <small>[${esc(e.code)}]</small></li>`).join("");
}

export function say(panel, text, isError = false) {
  panel.message.textContent = text;
  panel.message.classList.toggle("error", isError);
  panel.message.setAttribute("role", isError ? "alert" : "status");
}

/** Parse what was typed in a literal field as its port's type wants it (left as text when it does not parse:
 * the server's validation then says what is wrong, at the port). */
export function parseLiteral(text, type) {
  const trimmed = text.trim();
  if (trimmed === "") return undefined;
  if (trimmed.startsWith("$") && !trimmed.startsWith("$$")) return trimmed;
  if (type === "int" || type === "float") {
    const number = Number(trimmed);
    return Number.isFinite(number) && (type === "float" || Number.isInteger(number)) ? number : text;
  }
  if (type === "bool") return trimmed === "true" ? true : trimmed === "false" ? false : text;
  if (type === "str") return text;
  try { return JSON.parse(trimmed); } catch { return text; }
}
