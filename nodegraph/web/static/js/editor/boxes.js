// What the canvas shows for one scope: a box per node, plus the graph's inputs and outputs (top level) or the
// loop's values, the outer values a body reads and the next/collected values (a repeat body), each box with
// its typed ports. Boxes are data; canvas.js draws them with Drawflow.

import { isRef, literalFriendly, parseRef } from "./model.js";

export const esc = (text) => String(text ?? "").replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function shown(value) {
  if (value === undefined || value === null) return "";
  return typeof value === "string" ? value.replace(/^\$\$/, "$") : JSON.stringify(value);
}

function nodeBox(model, scope, id) {
  const node = model.nodesAt(scope)[id] || {};
  const ports = model.portsOf(scope, id);
  const info = model.typeInfo(node);
  const value = (name) => (name.startsWith("state.") ? node.state?.[name.slice(6)] : node[name]);
  return {
    key: id, id, kind: node.type === "repeat" ? "repeat" : info?.include ? "include" : "node",
    title: id, subtitle: String(node.type || "?"), help: info?.doc || (node.type === "repeat"
      ? "Runs its body once per element of `over`, carrying `state` from one iteration to the next." : ""),
    unknown: !info && node.type !== "repeat",
    body: node.type === "repeat" ? Object.keys(node.nodes || {}) : null,
    inputs: ports.inputs.map((p) => ({ ...p, value: value(p.name), path: p.name })),
    outputs: ports.outputs,
  };
}

/** The boxes of a scope, and where each reference written in it comes from. */
export function boxesOf(model, scope) {
  const nodes = model.nodesAt(scope);
  const boxes = [];
  if (!scope.length) {
    boxes.push({ key: "@inputs", kind: "inputs", title: "graph inputs", subtitle: "inputs:", help: "The graph's inputs: "
      + "each is a value given when the graph runs ($inputs.NAME).", inputs: [],
    outputs: Object.entries(model.doc.inputs || {}).map(([name, d]) => ({ name, type: d?.type || "Any",
      declared: d || {} })) });
  } else {
    const repeat = model.nodesAt(scope.slice(0, -1))[scope[scope.length - 1]] || {};
    boxes.push({ key: "@loop", kind: "loop", title: "loop", subtitle: `over ${shown(repeat.over)}`,
      help: "Each iteration's element ($loop.item), its index ($loop.index) and the carried state ($state.NAME).",
      inputs: [], outputs: [{ name: "item", type: model.refType(scope, "$loop.item") || "Any" },
        { name: "index", type: "int" }, ...Object.keys(repeat.state || {}).map((n) => ({
          name: `state.${n}`, type: model.refType(scope, `$state.${n}`) || "Any" }))] });
    const outer = new Set();
    for (const node of Object.values(nodes)) {
      for (const value of Object.values(node || {})) {
        const ref = parseRef(value);
        if (ref && !nodes[ref.node] && ref.node !== "loop" && ref.node !== "state") outer.add(`${ref.node}.${ref.port}`);
      }
    }
    boxes.push({ key: "@outside", kind: "outside", title: "from outside the body", subtitle: "read every iteration",
      help: "Values of the outer graph the body reads (the same in every iteration).", inputs: [],
      outputs: [...outer].map((name) => ({ name, type: model.refType(scope, `$${name}`) || "Any" })) });
  }
  for (const id of Object.keys(nodes)) boxes.push(nodeBox(model, scope, id));
  if (!scope.length) {
    boxes.push({ key: "@outputs", kind: "outputs", title: "graph outputs", subtitle: "outputs:",
      help: "What the graph returns and the runner writes (images become PNGs).", outputs: [],
      inputs: Object.entries(model.doc.outputs || {}).map(([name, value]) => ({ name, type: "Any", value,
        path: name })) });
  } else {
    const repeat = model.nodesAt(scope.slice(0, -1))[scope[scope.length - 1]] || {};
    boxes.push({ key: "@next", kind: "next", title: "next iteration", subtitle: "next: / collect:",
      help: "Each state's value for the next iteration; collected values become lists.", outputs: [],
      inputs: [...Object.entries(repeat.next || {}).map(([n, v]) => ({ name: `next.${n}`, type: "Any", value: v, path: n })),
        ...Object.entries(repeat.collect || {}).map(([n, v]) => ({ name: `collect.${n}`, type: "Any", value: v, path: n }))] });
  }
  return boxes;
}

/** The box key and output port a reference written in `scope` comes from (null: not shown here). */
export function sourceOf(scope, value, nodes) {
  const ref = parseRef(value);
  if (!ref) return null;
  if (!scope.length) return ref.node === "inputs" ? { key: "@inputs", port: ref.port } : { key: ref.node, port: ref.port };
  if (ref.node === "loop") return { key: "@loop", port: ref.port };
  if (ref.node === "state") return { key: "@loop", port: `state.${ref.port}` };
  if (nodes[ref.node]) return { key: ref.node, port: ref.port };
  return { key: "@outside", port: `${ref.node}.${ref.port}` };
}

/** The reference an output port of a box stands for. */
export function referenceOf(box, port) {
  if (box.kind === "inputs") return `$inputs.${port}`;
  if (box.kind === "loop") return port.startsWith("state.") ? `$state.${port.slice(6)}` : `$loop.${port}`;
  if (box.kind === "outside") return `$${port}`;
  return `$${box.key}.${port}`;
}

function inputRow(box, port, index) {
  const connected = isRef(port.value);
  const attrs = `data-box="${esc(box.key)}" data-port="${esc(port.name)}" aria-label="${esc(`${box.title}: ${port.name}`)}"`;
  let field = "";
  if (!connected && (box.kind === "node" || box.kind === "include")) {
    if (port.type === "bool") {
      field = `<input class="lit" type="checkbox" ${attrs}${port.value ?? port.default ? " checked" : ""}>`;
    } else if (literalFriendly(port.type)) {
      const placeholder = port.required ? "required" : `default ${shown(port.default)}`;
      field = `<input class="lit" type="text" ${attrs} value="${esc(shown(port.value))}" placeholder="${esc(placeholder)}">`;
    } else {  // typing a reference connects too (the keyboard's way to connect)
      field = `<input class="lit ref" type="text" ${attrs} placeholder="$node.port">`;
    }
  } else if (!connected && (box.kind === "repeat" || box.kind === "outputs" || box.kind === "next")) {
    field = `<input class="lit ref" type="text" ${attrs} placeholder="$node.port">`;
  }
  const from = connected ? `<span class="from">${esc(shown(port.value))}</span><button type="button" class="unlink" `
    + `data-unlink="${esc(port.name)}" data-box="${esc(box.key)}" aria-label="${esc(`Disconnect ${box.title}: ${port.name}`)}">×</button>` : "";
  return `<div class="row in" data-row="in-${index}" data-port="${esc(port.name)}" title="${esc(port.description || "")}">`
    + `<span class="pname">${esc(port.name)}</span><span class="ptype">${esc(port.type)}</span>${from}${field}`
    + `<span class="perr" role="note"></span></div>`;
}

/** The HTML inside a box (built from escaped text only: no inline style or script, the page's CSP holds). */
export function boxHtml(box) {
  const open = box.kind === "repeat" || box.kind === "include"
    ? `<button type="button" class="open" data-open="${esc(box.key)}">Open</button>` : "";
  const remove = box.kind === "node" || box.kind === "repeat" || box.kind === "include"
    ? `<button type="button" class="del" data-delete="${esc(box.key)}" aria-label="Delete node ${esc(box.key)}">×</button>` : "";
  const body = box.body ? `<div class="body-list">body: ${esc(box.body.join(", ") || "empty")}</div>` : "";
  return `<div class="head" data-box="${esc(box.key)}" title="${esc(box.help)}">`
    + `<button type="button" class="name" data-select="${esc(box.key)}">${esc(box.title)}</button>`
    + `<span class="kind">${esc(box.subtitle)}</span>${open}${remove}</div>`
    + `<div class="nerr" role="note"></div>${body}`
    + box.inputs.map((p, i) => inputRow(box, p, i)).join("")
    + box.outputs.map((p, i) => `<div class="row out" data-row="out-${i}" data-port="${esc(p.name)}"`
      + `${p.declared?.description ? ` title="${esc(p.declared.description)}"` : ""}>${defaultField(p)}`
      + `<span class="ptype">${esc(p.type)}</span><span class="pname">${esc(p.name)}</span></div>`).join("");
}

/** A graph input's default, edited in place like a literal (`inputs.NAME.default`). */
function defaultField(port) {
  if (!port.declared || !literalFriendly(port.type)) return "";
  const value = "default" in port.declared ? port.declared.default : undefined;
  const text = value === null ? "null" : shown(value);
  return `<input class="def" type="text" data-input="${esc(port.name)}" value="${esc(text)}" placeholder="no default"`
    + ` aria-label="${esc(`default of the graph input ${port.name}`)}">`;
}
