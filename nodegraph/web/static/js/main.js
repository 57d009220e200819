// The page: graphs list → a graph's form → run with progress → gallery. Only the server's own API is used.

import { api, ApiError, fetchBlob, setToken } from "./api.js";
import { buildForm, clearErrors, fill, randomSeed, read, showErrors } from "./form.js";
import { loadGallery, setupHistory } from "./gallery.js";
import { DEFAULT_GRAPH, isBuildingBlock, showGraphs } from "./graphlist.js";
import { readRecipe } from "./png.js";
import { QueueView } from "./queue.js";
import { RunView } from "./run.js";
import { Viewer } from "./viewer.js";

const $ = (id) => document.getElementById(id);
const state = { graphs: new Map(), current: null, document: null, ready: Promise.resolve(), picture: null };

const viewer = new Viewer($("viewer"));
const queue = new QueueView($("queue"), $("queue-empty"), (run) => watch(run), () => refreshGallery());
const view = new RunView({
  status: $("run-status"), progress: $("progress"), preview: $("preview"), previewFigure: $("preview-figure"),
  results: $("results"), cancel: $("cancel"),
}, () => { $("run").disabled = false; refreshGallery(); queue.refresh(); }, (images, at) => viewer.show(images, at));

function notice(text, isError = false) {
  const box = $("notice");
  box.textContent = text;
  box.hidden = !text;
  box.classList.toggle("error", isError);
}

/** Tick "Fast mode" as a run or a PNG recorded it, so running again reproduces its image. Picking a graph
 * from the list leaves the box as the user set it: it is a choice about speed, not part of a graph. */
function restoreFast(recorded) { $("fast").checked = recorded === true; }

function stem(name) { return String(name || "").replace(/^.*\//, "").replace(/\.(ya?ml|json)$/i, ""); }

function inferredInputs(values) {
  const types = { boolean: "bool", string: "str" };
  return Object.fromEntries(Object.entries(values).map(([name, value]) => [name, {
    type: typeof value === "number" ? (Number.isInteger(value) ? "int" : "float") : types[typeof value] || "str",
    default: value, description: "",
  }]));
}

function showPicture(name) {
  const box = $("picture");
  box.replaceChildren();
  $("picture-box").hidden = !name;
  if (!name) return;
  // Drawn by the server (GET /graphs/NAME/picture.svg); as an <img>, an SVG cannot run anything. Fetched with
  // the token in a header: the link opens a blob: address, never one holding the token.
  const img = document.createElement("img");
  img.alt = `diagram of the graph ${name}: its inputs, nodes, repeat bodies and included graphs`;
  img.className = "diagram";
  const full = document.createElement("a");
  full.target = "_blank";
  full.rel = "noopener";
  full.textContent = "open the picture on its own";
  box.dataset.graph = name;
  fetchBlob(`/graphs/${encodeURIComponent(name)}/picture.svg`).then((blob) => {
    if (box.dataset.graph !== name) return;  // another graph was picked meanwhile
    if (state.picture) URL.revokeObjectURL(state.picture);
    state.picture = URL.createObjectURL(blob);
    img.src = full.href = state.picture;
  }, () => { box.textContent = "no picture of this graph"; });
  box.append(full, img);
}

function selectGraph(name, { values, document: bundle, label } = {}) {
  const graph = state.graphs.get(name);
  state.current = graph ? name : null;
  state.document = bundle || null;
  for (const button of document.querySelectorAll("nav button[data-graph]")) {
    button.setAttribute("aria-current", String(button.dataset.graph === name && !bundle));
  }
  $("graph").hidden = false;
  $("graph-title").textContent = label || name;
  $("graph-description").textContent = graph ? graph.description : "Loaded from an image's metadata.";
  buildForm($("fields"), graph ? graph.inputs : inferredInputs(values || {}));
  $("seed-each-box").hidden = !(graph && !bundle && graph.inputs.seed?.type === "int");
  if (values) fill($("fields"), values);
  $("form-error").hidden = true;
  showPicture(graph && !bundle ? name : null);
  history.replaceState(null, "", bundle ? "#" : `#graph=${encodeURIComponent(name)}`);
}

async function loadGraphs() {
  const { graphs } = await api("/graphs");
  state.graphs = new Map(graphs.map((g) => [g.name, g]));
  showGraphs($("graphs"), $("blocks"), graphs, (name) => selectGraph(name));
  const wanted = new URLSearchParams(location.hash.slice(1)).get("graph");
  // Nothing asked for in the address: start where a new user should, on text to image.
  const name = wanted && state.graphs.has(wanted) ? wanted : DEFAULT_GRAPH;
  if (!state.graphs.has(name)) return;
  selectGraph(name);
  if (isBuildingBlock(name)) $("blocks").closest("details").open = true;
}

async function refreshGallery() {
  try {
    await loadGallery($("gallery"), { onReuse: reuse, onWatch: watch, onOpen: (images, at) => viewer.show(images, at),
      onDeleted: () => refreshGallery() });
  } catch (error) {
    notice(`Gallery: ${error.message}`, true);
  }
}

async function reuse(run) {
  await state.ready;
  const name = state.graphs.has(run.graph) ? run.graph : stem(run.graph);
  if (!state.graphs.has(name)) {
    notice(`The graph ${run.graph} of run ${run.id} is not one of this server's graphs; drop its PNG instead.`, true);
    return;
  }
  selectGraph(name, { values: run.inputs });
  restoreFast(run.fast);
  notice(`Inputs of run ${run.id} loaded${run.fast ? ", with fast mode" : ""}.`);
  $("run-form").scrollIntoView({ block: "start" });
  $("fields").querySelector("[name]")?.focus();
}

async function watch(run) {
  await state.ready;
  if (state.graphs.has(run.graph)) selectGraph(run.graph, { values: run.inputs });
  restoreFast(run.fast);
  $("run").disabled = true;
  view.watch(run.id, run.fast);
}

/** The inputs of each run of a batch: a fresh seed per run when "Random seed on every run" is ticked,
 * else seed, seed + 1, … (A1111's batch count); the seed field shows the first run's. */
function batchInputs(inputs, count) {
  const seedSpec = state.graphs.get(state.current)?.inputs?.seed;
  const hasSeed = seedSpec?.type === "int" && !state.document;
  if (!hasSeed && count === 1) return [inputs];
  const random = hasSeed && $("seed-each").checked;
  const first = random ? randomSeed(seedSpec) : inputs.seed;
  const batch = Array.from({ length: count }, (_, i) => {
    if (!hasSeed || typeof first !== "number") return { ...inputs };
    return { ...inputs, seed: i === 0 ? first : random ? randomSeed(seedSpec) : first + i };
  });
  if (random) $("in-seed").value = String(first);
  return batch;
}

function batchCount() {
  const count = Number($("batch-count").value);
  return Number.isInteger(count) && count >= 1 && count <= 100 ? count : null;
}

async function submit(event) {
  event.preventDefault();
  const fields = $("fields");
  clearErrors(fields);
  $("form-error").hidden = true;
  const count = batchCount();
  if (count === null) {
    $("form-error").textContent = "Batch count: a whole number from 1 to 100.";
    $("form-error").hidden = false;
    $("batch-count").focus();
    return;
  }
  const requests = batchInputs(read(fields), count).map((inputs) => {
    const request = state.document ? { document: state.document, inputs } : { graph: state.current, inputs };
    if ($("fast").checked) request.fast = true;  // left out otherwise, as the Python client does
    return request;
  });
  $("run").disabled = true;
  try {
    const first = await view.start(requests[0]);
    // The first one checked the inputs; the rest are queued behind it and shown in the gallery.
    const rest = await Promise.all(requests.slice(1).map((body) => api("/runs", { method: "POST", body })));
    if (rest.length) notice(`Queued ${count} runs: ${[first, ...rest].map((run) => run.id).join(", ")}.`);
    refreshGallery();
    queue.refresh();
  } catch (error) {
    $("run").disabled = false;
    const rest = error instanceof ApiError ? showErrors(fields, error.errors) : [error];
    if (rest.length) {
      $("form-error").textContent = rest.map((e) => e.message).join("\n");
      $("form-error").hidden = false;
    }
  }
}

async function loadPng(file) {
  try {
    await state.ready;  // the server's graph of the same name gives the inputs' types and help
    const recipe = await readRecipe(file);
    const main = recipe.graph.main || "graph.yaml";
    selectGraph(stem(main), { values: recipe.inputs, document: recipe.graph, label: `${main} from ${file.name}` });
    restoreFast(recipe.fast);
    notice(`Loaded the graph and inputs of ${file.name}${recipe.fast === true ? ", made in fast mode" : ""}.`);
  } catch (error) {
    notice(error.message, true);
  }
}

function acceptDrops() {
  const hint = $("drop-hint");
  window.addEventListener("dragover", (event) => { event.preventDefault(); hint.hidden = false; });
  window.addEventListener("dragleave", (event) => { if (!event.relatedTarget) hint.hidden = true; });
  window.addEventListener("drop", (event) => {
    event.preventDefault();
    hint.hidden = true;
    const file = event.dataTransfer?.files?.[0];
    if (file) loadPng(file);
  });
  $("png-file").addEventListener("change", (event) => { if (event.target.files[0]) loadPng(event.target.files[0]); });
}

async function start() {
  try {
    state.ready = loadGraphs();
    await state.ready;
    $("token-form").hidden = true;
    notice("");
    await refreshGallery();
    queue.refresh();
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) {
      $("token-form").hidden = false;
      notice("This server needs a token.", true);
      $("token").focus();
    } else {
      notice(`Cannot reach the server: ${error.message}`, true);
    }
  }
}

$("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  setToken($("token").value.trim());
  start();
});
$("run-form").addEventListener("submit", submit);
$("cancel").addEventListener("click", () => view.cancel());
$("refresh").addEventListener("click", () => { refreshGallery(); queue.refresh(); });
setupHistory(refreshGallery);
acceptDrops();
start();
