// Where boxes go when the layout sidecar has no position for them: columns by longest path from the sources
// (a node sits one column right of the furthest node it reads), rows in the document's order.

import { parseRef } from "./model.js";

const COLUMN = 290;
const ROW_GAP = 24;

function height(box) {
  return 56 + 27 * (box.inputs.length + box.outputs.length) + (box.body ? 20 : 0);
}

export function autoLayout(boxes, scope, model) {
  const nodes = model.nodesAt(scope);
  const column = new Map();
  const depth = (id, seen = new Set()) => {
    if (column.has(id)) return column.get(id);
    if (seen.has(id) || !nodes[id]) return 0;
    seen.add(id);
    let best = 1;
    const node = nodes[id];
    for (const value of [...Object.values(node), ...Object.values(node.state || {})]) {
      const ref = parseRef(value);
      if (ref && nodes[ref.node] && ref.node !== id) best = Math.max(best, depth(ref.node, seen) + 1);
    }
    column.set(id, best);
    return best;
  };
  let last = 1;
  for (const box of boxes) {
    if (box.key.startsWith("@")) continue;
    last = Math.max(last, depth(box.key));
  }
  const tops = new Map();
  const placed = new Map();
  const sources = boxes.filter((b) => b.key === "@inputs" || b.key === "@loop" || b.key === "@outside");
  let top = 20;
  for (const box of sources) {
    placed.set(box.key, [20, top]);
    top += height(box) + ROW_GAP;
  }
  for (const box of boxes) {
    if (placed.has(box.key)) continue;
    const col = box.key === "@outputs" || box.key === "@next" ? last + 1 : column.get(box.key) || 1;
    const y = tops.get(col) || 20;
    placed.set(box.key, [20 + col * COLUMN, y]);
    tops.set(col, y + height(box) + ROW_GAP);
  }
  return placed;
}
