// The graph list: where to start first (text to image, then the other main graphs), the building blocks
// (graphs made to be included by others, e.g. `*_denoise_step`) in a collapsed section of their own.

// The main graphs, in the order a new user meets them; a server's other graphs follow alphabetically.
const START = ["stable_diffusion", "img2img", "inpaint", "sdxl", "controlnet", "z_image", "hires_fix", "lcm",
  "sdxl_turbo", "sdxl_inpaint", "sdxl_controlnet", "sdxl_refiner", "multi_controlnet", "controlnet_canny",
  "z_image_img2img", "ddpm"];
export const DEFAULT_GRAPH = START[0];

/** A building block: a graph meant to be included by another one rather than run on its own. */
export function isBuildingBlock(name) { return /_step$/.test(name) || name.includes("/"); }

function rank(name) {
  const at = START.indexOf(name);
  return at < 0 ? START.length : at;
}

function entry(graph, select) {
  const item = document.createElement("li");
  const button = document.createElement("button");
  button.type = "button";
  button.dataset.graph = graph.name;
  button.textContent = graph.name;
  const about = document.createElement("small");
  about.textContent = graph.description;
  button.addEventListener("click", () => select(graph.name));
  item.append(button, about);
  return item;
}

/** Fill `main` (a list) and `blocks` (a list inside a <details>) with buttons that call `select(name)`. */
export function showGraphs(main, blocks, graphs, select) {
  const ordered = [...graphs].sort((a, b) => rank(a.name) - rank(b.name) || a.name.localeCompare(b.name));
  main.replaceChildren(...ordered.filter((g) => !isBuildingBlock(g.name)).map((g) => entry(g, select)));
  const parts = ordered.filter((g) => isBuildingBlock(g.name));
  blocks.replaceChildren(...parts.map((g) => entry(g, select)));
  blocks.closest("details").hidden = parts.length === 0;
}
