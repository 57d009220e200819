// Which port type may feed which: the server's own rule (core/types.py can_connect), as GET /editor/types
// tabulates it for every type the registered nodes use. Nothing is re-implemented here but the two cases
// the rule states for every type: a type feeds itself, and `Any` is unchecked both ways.

let table = { types: [], connects: {} };

export function setTypes(loaded) { table = loaded; }

export function canConnect(src, dst) {
  if (src === dst || src === "Any" || dst === "Any") return true;
  return (table.connects[src] || []).includes(dst);
}

export function knownTypes() { return table.types; }
