// The in-page image viewer: a modal <dialog> over the gallery's images. ← / → (or the buttons) go through
// them, C pins the shown image to compare it side by side with the next ones, Esc closes. Beside the image,
// its recipe as the PNG holds it (the `nodegraph` chunk's graph and inputs, the `parameters` text).
// Images are fetched with the token in a header and shown from blob: URLs, so "Open in a new tab" opens an
// address without the token.

import { fetchBlob } from "./api.js";
import { pngText } from "./png.js";

function make(tag, props = {}, ...children) {
  const element = Object.assign(document.createElement(tag), props);
  element.append(...children);
  return element;
}

function button(id, text, title) {
  return make("button", { type: "button", id, textContent: text, title });
}

export class Viewer {
  constructor(dialog) {
    this.dialog = dialog;
    this.images = [];   // [{url, file, name, run}] as the gallery lists them
    this.at = 0;
    this.pinned = null;  // the index compared with the shown one
    this.loaded = new Map();  // url -> Promise<{blobUrl, recipe, parameters}>
    this.title = make("h2", { id: "viewer-title" });
    this.count = make("span", { id: "viewer-count", className: "muted" });
    this.prev = button("viewer-prev", "← Previous", "previous image (←)");
    this.next = button("viewer-next", "Next →", "next image (→)");
    this.compare = button("viewer-compare", "Compare", "pin this image and compare the next ones with it (C)");
    this.compare.setAttribute("aria-pressed", "false");
    this.open = make("a", { id: "viewer-open", target: "_blank", rel: "noopener", textContent: "Open in a new tab" });
    this.download = make("a", { id: "viewer-download", className: "download", textContent: "Download PNG" });
    this.close = button("viewer-close", "Close", "close the viewer (Esc)");
    this.left = this.figure("viewer-pinned");
    this.right = this.figure("viewer-current");
    this.recipe = make("dl", { id: "viewer-recipe" });
    this.parameters = make("pre", { id: "viewer-parameters" });
    dialog.setAttribute("aria-labelledby", "viewer-title");
    dialog.replaceChildren(
      make("div", { className: "viewer-bar" }, this.title, this.count, this.prev, this.next, this.compare, this.open,
        this.download, this.close),
      make("div", { className: "viewer-body" }, this.left.box, this.right.box,
        make("aside", { className: "viewer-side" }, make("h3", { textContent: "Recipe" }), this.recipe,
          this.parameters)));
    this.prev.addEventListener("click", () => this.go(-1));
    this.next.addEventListener("click", () => this.go(1));
    this.compare.addEventListener("click", () => this.toggleCompare());
    this.close.addEventListener("click", () => dialog.close());
    dialog.addEventListener("keydown", (event) => this.key(event));
    dialog.addEventListener("close", () => this.forget());
  }

  figure(id) {
    const img = make("img", { className: "viewer-image" });
    const caption = make("figcaption");
    const box = make("figure", { id }, img, caption);
    return { box, img, caption };
  }

  /** Open on `images[index]`. */
  show(images, index) {
    this.images = images;
    this.pinned = null;
    this.at = Math.max(0, Math.min(index, images.length - 1));
    if (!this.dialog.open) this.dialog.showModal();
    this.draw();
    this.close.focus();
  }

  key(event) {
    if (event.target.closest?.("input, textarea, select")) return;
    if (event.key === "ArrowRight") this.go(1);
    else if (event.key === "ArrowLeft") this.go(-1);
    else if (event.key === "c" || event.key === "C") this.toggleCompare();
    else return;
    event.preventDefault();
  }

  go(step) {
    const to = this.at + step;
    if (to < 0 || to >= this.images.length) return;
    this.at = to;
    this.draw();
  }

  toggleCompare() {
    this.pinned = this.pinned === null ? this.at : null;
    if (this.pinned !== null && this.at + 1 < this.images.length) this.at += 1;  // the next one beside it
    this.draw();
  }

  load(image) {
    if (!this.loaded.has(image.url)) {
      this.loaded.set(image.url, (async () => {
        const blob = await fetchBlob(image.url);
        const texts = await pngText(await blob.arrayBuffer()).catch(() => ({}));
        let recipe = null;
        try { recipe = texts.nodegraph ? JSON.parse(texts.nodegraph) : null; } catch { recipe = null; }
        return { blobUrl: URL.createObjectURL(blob), recipe, parameters: texts.parameters || "" };
      })());
    }
    return this.loaded.get(image.url);
  }

  async paint(slot, image) {
    slot.img.alt = `${image.run.graph}: ${image.file} of run ${image.run.id}`;
    slot.caption.textContent = `${image.run.inputs?.prompt ?? image.run.graph} · ${image.file}`;
    const { blobUrl } = await this.load(image);
    slot.img.src = blobUrl;
    return blobUrl;
  }

  async draw() {
    const image = this.images[this.at];
    if (!image) return;
    const comparing = this.pinned !== null;
    this.dialog.classList.toggle("comparing", comparing);
    this.compare.setAttribute("aria-pressed", String(comparing));
    this.compare.textContent = comparing ? "Stop comparing" : "Compare";
    this.left.box.hidden = !comparing;
    this.title.textContent = `${image.run.graph} · run ${image.run.id}`;
    this.count.textContent = `${this.at + 1} of ${this.images.length}`;
    this.prev.disabled = this.at === 0;
    this.next.disabled = this.at === this.images.length - 1;
    if (comparing) this.paint(this.left, this.images[this.pinned]);
    const shown = this.at;
    try {
      const blobUrl = await this.paint(this.right, image);
      if (shown !== this.at) return;
      this.open.href = blobUrl;
      this.download.href = blobUrl;
      this.download.download = `${image.run.id}-${image.file}`;
      this.showRecipe(await this.load(image));
    } catch (error) {
      this.right.caption.textContent = `Cannot show ${image.file}: ${error.message}`;
    }
  }

  showRecipe({ recipe, parameters }) {
    const rows = [];
    if (recipe) {
      rows.push(["graph", recipe.graph?.main || "?"]);
      for (const [name, value] of Object.entries(recipe.inputs || {})) rows.push([name, JSON.stringify(value)]);
      if (recipe.fast === true) rows.push(["fast mode", "on"]);
    }
    this.recipe.replaceChildren(...rows.flatMap(([name, value]) => [make("dt", { textContent: name }),
      make("dd", { textContent: value })]));
    if (!rows.length) this.recipe.textContent = "This PNG holds no nodegraph recipe.";
    this.parameters.textContent = parameters;
    this.parameters.hidden = !parameters;
  }

  forget() {
    for (const promise of this.loaded.values()) promise.then(({ blobUrl }) => URL.revokeObjectURL(blobUrl), () => {});
    this.loaded.clear();
    this.open.removeAttribute("href");
    this.download.removeAttribute("href");
  }
}
