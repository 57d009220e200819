// The edited graph: the YAML document's structure as JSON (what the server round-trips into the file), the
// ports of every node (from GET /nodes, included graphs, repeat bodies), and undo/redo of every change.
// A scope is the list of repeat ids from the top level down to the body being shown ([] = the top level).

import { canConnect } from "./types.js";

const clone = (value) => (value === undefined ? undefined : JSON.parse(JSON.stringify(value)));
export const isRef = (value) => typeof value === "string" && value.startsWith("$") && !value.startsWith("$$");
export const RESERVED = new Set(["inputs", "state", "loop"]);
const LITERAL = new Set(["int", "float", "str", "bool", "Any"]);

export function literalFriendly(type) {
  const item = /^list\[(.*)\]$/.exec(type);
  return item ? literalFriendly(item[1]) : LITERAL.has(type) || type === "list";
}

/** `$node.port` -> {node, port} (null for a literal). */
export function parseRef(value) {
  if (!isRef(value)) return null;
  const dot = value.indexOf(".");
  return dot < 0 ? { node: value.slice(1), port: "" } : { node: value.slice(1, dot), port: value.slice(dot + 1) };
}

export class GraphModel {
  constructor(nodeTypes, document, includes = {}) {
    this.types = nodeTypes;  // Map name -> GET /nodes entry
    this.includes = includes;  // include type -> {inputs, outputs}
    this.doc = clone(document) || {};
    for (const key of ["nodegraph", "inputs", "nodes", "outputs"]) {
      if (this.doc[key] === undefined) this.doc[key] = key === "nodegraph" ? 1 : {};
    }
    this.undoStack = [];
    this.redoStack = [];
    this.listeners = [];
  }

  onChange(listener) { this.listeners.push(listener); }

  // --- where things are
  nodesAt(scope) {
    let nodes = this.doc.nodes;
    for (const id of scope) nodes = nodes?.[id]?.nodes;
    return nodes || {};
  }

  pathOf(scope, id, ...rest) { return [...scope.flatMap((s) => ["nodes", s]), "nodes", id, ...rest]; }

  typeInfo(node) {
    const name = String(node?.type || "").replace(/@\d+$/, "");
    if (this.types.has(name)) return this.types.get(name);
    if (this.includes[node?.type]) return { ...this.includes[node.type], name: node.type, include: true };
    return null;
  }

  /** {inputs: [{name, type, required, description, default}], outputs: [{name, type}]} of a node. */
  portsOf(scope, id) {
    const node = this.nodesAt(scope)[id];
    if (node?.type === "repeat") {
      const body = [...scope, id];
      const state = Object.keys(node.state || {});
      const collect = Object.keys(node.collect || {});
      return {
        inputs: [{ name: "over", type: "Any", required: true, description: "the list or tensor iterated" },
          ...state.map((n) => ({ name: `state.${n}`, type: this.refType(scope, node.state[n]) || "Any",
            required: true, description: `initial value of the carried \`${n}\`` }))],
        outputs: [...state.map((n) => ({ name: n, type: this.refType(scope, node.state[n]) || "Any" })),
          ...collect.map((n) => ({ name: n, type: `list[${this.refType(body, node.collect[n]) || "Any"}]` }))],
      };
    }
    const info = this.typeInfo(node);
    return info ? { inputs: info.inputs, outputs: info.outputs } : { inputs: [], outputs: [] };
  }

  /** The port type a reference carries, seen from `scope` (null: unknown). */
  refType(scope, value) {
    const ref = parseRef(value);
    if (!ref) return null;
    if (ref.node === "inputs") return this.doc.inputs?.[ref.port]?.type || null;
    if (ref.node === "loop" || ref.node === "state") {
      if (!scope.length) return null;
      const outer = scope.slice(0, -1);
      const repeat = this.nodesAt(outer)[scope[scope.length - 1]] || {};
      if (ref.node === "state") {  // a state not yet given its initial value is not checked yet
        return this.refType(outer, repeat.state?.[ref.port]) || (ref.port in (repeat.state || {}) ? "Any" : null);
      }
      if (ref.port === "index") return "int";
      const over = this.refType(outer, repeat.over) || "Any";
      const item = /^list\[(.*)\]$/.exec(over);
      return item ? item[1] : over === "Any" || over === "list" ? "Any" : "Tensor";
    }
    for (let depth = scope.length; depth >= 0; depth--) {  // a body sees its own nodes, then the outer ones
      const where = scope.slice(0, depth);
      if (this.nodesAt(where)[ref.node]) {
        const port = this.portsOf(where, ref.node).outputs.find((p) => p.name === ref.port);
        return port ? port.type : null;
      }
    }
    return null;
  }

  /** Why `value` may not feed input `port` of node `id` (null: it may). */
  refusal(scope, id, port, value) {
    const src = this.refType(scope, value);
    const target = port === null ? null : this.portsOf(scope, id).inputs.find((p) => p.name === port);
    if (!src) return `${value} names no output here`;
    if (!target) return null;  // a graph output, the next value of a state: any type
    if (canConnect(src, target.type)) return null;
    return `${value} is ${src}, but input \`${port}\` of \`${id}\` takes ${target.type}`;
  }

  // --- changes (each one undoable)
  get(path) { return path.reduce((at, key) => (at == null ? undefined : at[key]), this.doc); }

  /** Set (or, with `undefined`, remove) the value at `path`; the key keeps its place when it is replaced. */
  write(path, value, index = null) {
    const parent = this.get(path.slice(0, -1));
    const key = path[path.length - 1];
    const keys = Object.keys(parent);
    const at = keys.indexOf(key);
    const entries = Object.entries(parent).filter(([k]) => k !== key);
    if (value !== undefined) {
      const place = index !== null ? Math.min(index, entries.length) : at >= 0 ? at : entries.length;
      entries.splice(place, 0, [key, value]);
    }
    for (const k of keys) delete parent[k];
    for (const [k, v] of entries) parent[k] = v;
    return at;
  }

  /** Apply `changes` ([path, value] pairs) as one undoable step labelled `label`. */
  change(label, changes, { keepDrawing = false } = {}) {
    const step = { label, changes: [], keepDrawing };
    for (const [path, value] of changes) {
      const before = clone(this.get(path));
      const index = this.write(path, clone(value));
      step.changes.push({ path, before, after: clone(value), index });
    }
    this.undoStack.push(step);
    this.redoStack = [];
    this.emit(step, "do");
  }

  undo() {
    const step = this.undoStack.pop();
    if (!step) return null;
    for (const c of [...step.changes].reverse()) this.write(c.path, clone(c.before), c.index >= 0 ? c.index : null);
    this.redoStack.push(step);
    this.emit(step, "undo");
    return step.label;
  }

  redo() {
    const step = this.redoStack.pop();
    if (!step) return null;
    for (const c of step.changes) this.write(c.path, clone(c.after));
    this.undoStack.push(step);
    this.emit(step, "redo");
    return step.label;
  }

  emit(step, how) { for (const listener of this.listeners) listener(step, how); }

  // --- edits the editor offers
  connect(scope, id, port, value) {
    if (port.startsWith("state.")) return this.change(`connect ${id}.${port}`, [[this.pathOf(scope, id, "state", port.slice(6)), value]]);
    return this.change(`connect ${id}.${port}`, [[this.pathOf(scope, id, port), value]]);
  }

  setLiteral(scope, id, port, value) {
    this.change(`set ${id}.${port}`, [[this.pathOf(scope, id, port), value]]);
  }

  addNode(scope, type) {
    const nodes = this.nodesAt(scope);
    const base = String(type).replace(/@\d+$/, "").replace(/^.*\//, "").replace(/\.ya?ml$/, "")
      .replace(/[^A-Za-z0-9_]/g, "_").replace(/^([0-9])/, "_$1").toLowerCase() || "node";
    let id = base;
    for (let n = 2; nodes[id] || RESERVED.has(id) || this.taken(id); n++) id = `${base}_${n}`;
    this.change(`add ${id}`, [[this.pathOf(scope, id), type === "repeat"
      ? { type, over: "", state: {}, nodes: {}, next: {} } : { type }]]);
    return id;
  }

  taken(id, nodes = this.doc.nodes) {
    return Object.entries(nodes || {}).some(([k, n]) => k === id || (n?.type === "repeat" && this.taken(id, n.nodes)));
  }

  /** Remove a node and every connection to it in its scope and the bodies inside. */
  removeNode(scope, id) {
    const changes = [[this.pathOf(scope, id), undefined]];
    const visit = (where, container, basePath) => {
      for (const [key, value] of Object.entries(container || {})) {
        if (parseRef(value)?.node === id) changes.push([[...basePath, key], undefined]);
      }
    };
    const walk = (where) => {
      for (const [nid, node] of Object.entries(this.nodesAt(where))) {
        if (nid === id && where.length === scope.length) continue;
        visit(where, node, this.pathOf(where, nid));
        for (const part of ["state", "next", "collect"]) visit(where, node[part], this.pathOf(where, nid, part));
        if (node.type === "repeat") walk([...where, nid]);
      }
    };
    walk(scope.slice(0, 0));
    if (!scope.length) visit([], this.doc.outputs, ["outputs"]);
    this.change(`delete ${id}`, changes);
  }

  toDocument() { return clone(this.doc); }
}
