// Draws one scope of the model with Drawflow (window.Drawflow, vendored) and turns what the user does on the
// canvas into model changes: a dropped connection is checked with the validator's type rule first and
// removed again with the reason when it is refused; Delete removes the selected node or connection.

import { boxHtml, boxesOf, referenceOf, sourceOf } from "./boxes.js";
import { autoLayout } from "./layout.js";

export class Canvas {
  constructor(container, model, { say, open }) {
    this.container = container;
    this.model = model;
    this.say = say;  // (message, isError, where) -> shows it
    this.open = open;  // (box) -> opens a repeat body or an included graph
    this.scope = [];
    this.layout = {};
    this.boxes = new Map();  // drawflow id -> box
    this.ids = new Map();  // box key -> drawflow id
    this.drawing = false;
    this.editor = new window.Drawflow(container);
    this.editor.reroute = false;
    this.editor.start();
    this.listen();
  }

  layoutKey(key) { return [...this.scope, key].join("/"); }

  /** Draw the current scope again from the model (after any change: the model is the truth). */
  render() {
    this.drawing = true;
    const { editor } = this;
    editor.clear();
    this.boxes.clear();
    this.ids.clear();
    const boxes = boxesOf(this.model, this.scope);
    const placed = autoLayout(boxes, this.scope, this.model);
    for (const box of boxes) {
      const [x, y] = this.layout[this.layoutKey(box.key)] || placed.get(box.key);
      const id = editor.addNode(box.key, box.inputs.length, box.outputs.length, x, y, `box-${box.kind}`,
        {}, boxHtml(box), false);
      this.boxes.set(id, box);
      this.ids.set(box.key, id);
    }
    const nodes = this.model.nodesAt(this.scope);
    for (const [id, box] of this.boxes) {
      box.inputs.forEach((port, index) => {
        const from = sourceOf(this.scope, port.value, nodes);
        const source = from && this.ids.get(from.key);
        const out = source && this.boxes.get(source).outputs.findIndex((p) => p.name === from.port);
        if (source && out >= 0) editor.addConnection(source, id, `output_${out + 1}`, `input_${index + 1}`);
      });
    }
    this.drawn = boxes;
    this.settle();
    this.drawing = false;
  }

  /** After a box's height changed (an error shown in it): stack the columns again, put the dots back. */
  settle() {
    this.restack(this.drawn || []);
    this.alignPorts();
  }

  /** Boxes placed by the automatic layout, stacked again by their drawn heights (so none overlaps). */
  restack(boxes) {
    const columns = new Map();
    for (const box of boxes) {
      if (this.layout[this.layoutKey(box.key)]) continue;
      const id = this.ids.get(box.key);
      const data = this.editor.drawflow.drawflow[this.editor.module].data[id];
      const element = this.container.querySelector(`#node-${id}`);
      if (!data || !element) continue;
      if (!columns.has(data.pos_x)) columns.set(data.pos_x, []);
      columns.get(data.pos_x).push({ data, element });
    }
    for (const column of columns.values()) {
      column.sort((a, b) => a.data.pos_y - b.data.pos_y);
      let top = 20;
      for (const { data, element } of column) {
        data.pos_y = top;
        element.style.top = `${top}px`;
        top += element.offsetHeight + 24;
      }
    }
  }

  /** Put each port's dot beside its row (rows have different heights: errors, fields). */
  alignPorts() {
    for (const [id] of this.boxes) {
      const element = this.container.querySelector(`#node-${id}`);
      if (!element) continue;
      for (const side of ["input", "output"]) {
        element.querySelectorAll(`.${side}s .${side}`).forEach((dot, index) => {
          const row = element.querySelector(`[data-row="${side === "input" ? "in" : "out"}-${index}"]`);
          if (row) dot.style.top = `${row.offsetTop + row.offsetHeight / 2 - 8}px`;
        });
      }
      this.editor.updateConnectionNodes(`node-${id}`);
    }
  }

  fit() {
    const { editor } = this;
    const nodes = [...this.container.querySelectorAll(".drawflow-node")];
    if (!nodes.length) return;
    const right = Math.max(...nodes.map((n) => n.offsetLeft + n.offsetWidth));
    const bottom = Math.max(...nodes.map((n) => n.offsetTop + n.offsetHeight));
    const width = this.container.clientWidth;
    const height = this.container.clientHeight;
    const zoom = Math.max(0.3, Math.min(1, (width - 20) / right, (height - 20) / bottom));
    // Drawflow scales about the canvas's centre: shift so the drawing's top left corner stays in view.
    editor.zoom_last_value = 1;
    editor.canvas_x = 0;
    editor.canvas_y = 0;
    editor.zoom = zoom;
    editor.zoom_refresh();
    editor.canvas_x = (width / 2) * (zoom - 1) + 10;
    editor.canvas_y = (height / 2) * (zoom - 1) + 10;
    editor.precanvas.style.transform = `translate(${editor.canvas_x}px, ${editor.canvas_y}px) scale(${zoom})`;
  }

  /** Mark the input a connection was just refused at, with the reason (until the next drawing). */
  markRefused() {
    if (!this.refused) return;
    const { key, port, reason } = this.refused;
    this.refused = null;
    const element = this.container.querySelector(`#node-${this.ids.get(key)}`);
    const row = element?.querySelector(`.row.in[data-port="${CSS.escape(port)}"]`);
    if (!row) return;
    row.classList.add("refused");
    row.querySelector(".perr").textContent = `refused: ${reason}`;
    this.settle();
  }

  /** Show box `key` at full size near the canvas's top left corner. */
  show(key) {
    const element = this.container.querySelector(`#node-${this.ids.get(key)}`);
    if (!element) return;
    const { editor } = this;
    editor.zoom = 1;
    editor.zoom_last_value = 1;
    editor.canvas_x = 40 - element.offsetLeft;
    editor.canvas_y = 40 - element.offsetTop;
    editor.precanvas.style.transform = `translate(${editor.canvas_x}px, ${editor.canvas_y}px) scale(1)`;
    element.querySelector("[data-select]")?.focus({ preventScroll: true });
  }

  /** The target of a connection: the path its value is written at, and the port's name for the type check. */
  target(box, port) {
    const outer = this.scope.slice(0, -1);
    const repeat = this.scope[this.scope.length - 1];
    if (box.kind === "outputs") return { path: ["outputs", port], check: null };
    if (box.kind === "next") {
      const [part, name] = [port.slice(0, port.indexOf(".")), port.slice(port.indexOf(".") + 1)];
      return { path: this.model.pathOf(outer, repeat, part, name), check: null };
    }
    if (port.startsWith("state.")) {
      return { path: this.model.pathOf(this.scope, box.key, "state", port.slice(6)), check: port };
    }
    return { path: this.model.pathOf(this.scope, box.key, port), check: port };
  }

  /** Connect output `out` of box `fromKey` to input `port` of box `toKey`; false (and the reason said) if refused. */
  connect(fromKey, out, toKey, port) {
    const source = this.boxes.get(this.ids.get(fromKey));
    const box = this.boxes.get(this.ids.get(toKey));
    if (!source || !box) return false;
    const value = referenceOf(source, out);
    const { path, check } = this.target(box, port);
    const reason = check === null ? null : this.model.refusal(this.scope, box.key, check, value);
    if (reason) {
      this.refused = { key: toKey, port, reason };
      this.say(`Not connected: ${reason}.`, true);
      return false;
    }
    this.model.change(`connect ${toKey}.${port}`, [[path, value]]);
    this.say(`Connected ${value} to ${toKey}.${port}.`);
    return true;
  }

  disconnect(toKey, port) {
    const box = this.boxes.get(this.ids.get(toKey));
    if (!box) return;
    this.model.change(`disconnect ${toKey}.${port}`, [[this.target(box, port).path, undefined]]);
  }

  remove(key) {
    const box = this.boxes.get(this.ids.get(key));
    if (!box || !["node", "repeat", "include"].includes(box.kind)) {
      this.render();  // the graph's inputs/outputs boxes stay
      return;
    }
    this.model.removeNode(this.scope, key);
    this.say(`Deleted ${key}.`);
  }

  listen() {
    const { editor } = this;
    editor.on("connectionCreated", (c) => {
      if (this.drawing) return;
      const from = this.boxes.get(Number(c.output_id));
      const to = this.boxes.get(Number(c.input_id));
      const out = from?.outputs[Number(c.output_class.slice(7)) - 1];
      const port = to?.inputs[Number(c.input_class.slice(6)) - 1];
      this.drawing = true;
      editor.removeSingleConnection(c.output_id, c.input_id, c.output_class, c.input_class);
      this.drawing = false;
      if (!from || !out || !port || !this.connect(from.key, out.name, to.key, port.name)) {
        this.render();
        this.markRefused();
      }
    });
    editor.on("connectionRemoved", (c) => {
      if (this.drawing) return;
      const to = this.boxes.get(Number(c.input_id));
      const port = to?.inputs[Number(c.input_class.slice(6)) - 1];
      if (port) this.disconnect(to.key, port.name);
    });
    editor.on("nodeRemoved", (id) => {
      if (this.drawing) return;
      const box = this.boxes.get(Number(id));
      if (box) this.remove(box.key);
    });
    editor.on("nodeMoved", () => this.positions());
    this.container.addEventListener("click", (event) => {
      const open = event.target.closest("[data-open]");
      const remove = event.target.closest("[data-delete]");
      if (open) this.open(this.boxes.get(this.ids.get(open.dataset.open)));
      if (remove) this.remove(remove.dataset.delete);
      const unlink = event.target.closest("[data-unlink]");
      if (unlink) this.disconnect(unlink.dataset.box, unlink.dataset.unlink);
    });
  }

  /** Positions of every box drawn so far (the layout sidecar). */
  positions() {
    for (const [id, box] of this.boxes) {
      const element = this.container.querySelector(`#node-${id}`);
      if (!element) continue;
      const at = [element.style.left, element.style.top].map((v) => Math.round(parseFloat(v) || 0));
      this.layout[this.layoutKey(box.key)] = at;
    }
    return this.layout;
  }
}
