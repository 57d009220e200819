// One run: submit it, follow its Server-Sent Events (a progress bar per repeat, the latent preview),
// cancel it, show its images when it finishes.

import { api, authorized } from "./api.js";

const TERMINAL = ["finished", "failed", "cancelled"];

export function outputImages(run) {
  const images = [];
  for (const [name, files] of Object.entries(run.outputs || {})) {
    if (!Array.isArray(files)) continue;
    for (const item of files) if (/\.png$/i.test(item.file)) images.push({ name, ...item });
  }
  return images;
}

export class RunView {
  constructor(elements, onEnd, onOpen) {
    this.el = elements;   // {status, progress, preview, previewFigure, results, cancel}
    this.onEnd = onEnd;
    this.onOpen = onOpen;  // (images, index): the in-page viewer
    this.source = null;
    this.runId = null;
    this.fast = false;   // the run's record says it runs in fast mode: every status line says so
    this.bars = new Map();
  }

  async start(request) {
    this.stop();
    this.bars.clear();
    this.el.progress.replaceChildren();
    this.el.results.replaceChildren();
    this.el.previewFigure.hidden = true;
    this.el.preview.dataset.step = "0";
    const run = await api("/runs", { method: "POST", body: { ...request, preview: true } });
    this.el.status.closest("section").hidden = false;
    this.runId = run.id;
    this.fast = run.fast === true;
    this.setStatus(`Run ${run.id} queued`);
    this.el.cancel.disabled = false;
    this.follow(run.id);
    return run;
  }

  /** Follow a run started elsewhere (another tab, the CLI, before a reload); its events so far come first. */
  watch(runId, fast) {
    this.stop();
    this.bars.clear();
    this.el.progress.replaceChildren();
    this.el.results.replaceChildren();
    this.el.previewFigure.hidden = true;
    this.runId = runId;
    this.fast = fast === true;
    this.el.status.closest("section").hidden = false;
    this.setStatus(`Run ${runId}`);
    this.el.cancel.disabled = false;
    this.follow(runId);
  }

  follow(runId) {
    const source = new EventSource(authorized(`/runs/${runId}/events`));
    this.source = source;
    const handle = (message) => this.event(JSON.parse(message.data));
    for (const type of ["queued", "started", "node_started", "node_finished", "progress", ...TERMINAL]) {
      source.addEventListener(type, handle);
    }
    // The stream ends after the last event; EventSource would otherwise reconnect and replay it.
    source.onerror = () => { if (this.source === source && source.readyState === EventSource.CLOSED) this.stop(); };
  }

  stop() {
    if (this.source) this.source.close();
    this.source = null;
  }

  async cancel() {
    if (!this.runId) return;
    this.el.cancel.disabled = true;
    this.setStatus("Cancelling…");  // before the answer: the `cancelled` event may come first
    try {
      await api(`/runs/${this.runId}`, { method: "DELETE" });
    } catch (error) {
      this.setStatus(error.message);
    }
  }

  setStatus(text) { this.el.status.textContent = text + (this.fast ? " · fast mode" : ""); }

  bar(node, total) {
    let bar = this.bars.get(node);
    if (!bar) {
      const row = document.createElement("div");
      row.className = "bar";
      row.dataset.node = node;
      const label = document.createElement("label");
      const meter = document.createElement("progress");
      meter.id = `progress-${node}`;
      label.htmlFor = meter.id;
      const text = document.createElement("span");
      text.className = "percent";
      row.append(label, meter, text);
      this.el.progress.append(row);
      bar = { row, label, meter, text };
      this.bars.set(node, bar);
    }
    bar.meter.max = total;
    return bar;
  }

  event(event) {
    switch (event.type) {
      case "started":
        this.setStatus(`Run ${this.runId} running`);
        break;
      case "node_started":
        this.setStatus(`Running ${event.node} (${event.node_type})`);
        break;
      case "progress": {
        const bar = this.bar(event.node, event.total);
        bar.meter.value = event.index;
        bar.label.textContent = `${event.node}: step ${event.index} of ${event.total}`;
        bar.text.textContent = `${Math.round((100 * event.index) / event.total)}%`;
        if (event.preview) this.drawPreview(event.preview, event.index);
        break;
      }
      case "finished":
        this.finish(event);
        break;
      case "failed":
      case "cancelled":
        this.setStatus(`Run ${this.runId} ${event.type}: ${event.error || ""}`);
        this.end();
        break;
    }
  }

  drawPreview(url, step) {
    const image = new Image();
    image.onload = () => {
      const canvas = this.el.preview;
      canvas.width = image.width;
      canvas.height = image.height;
      const context = canvas.getContext("2d");
      context.imageSmoothingEnabled = false;
      context.drawImage(image, 0, 0);
      canvas.dataset.step = String(step);
      this.el.previewFigure.hidden = false;
    };
    image.src = url;
  }

  async finish() {
    const run = await api(`/runs/${this.runId}`);
    this.fast = run.fast === true;
    const seconds = run.run_seconds == null ? "" : ` in ${run.run_seconds.toFixed(2)} s`;
    this.setStatus(`Run ${run.id} finished${seconds}`);
    const images = outputImages(run).map((image) => ({ ...image, run }));
    images.forEach((image, at) => {
      const open = document.createElement("button");
      open.type = "button";
      open.className = "open-image";
      open.title = "open in the viewer";
      const img = document.createElement("img");
      img.className = "result";
      img.alt = `${image.name}: ${image.file}`;
      img.src = authorized(image.url);
      open.append(img);
      open.addEventListener("click", () => this.onOpen?.(images, at));
      this.el.results.append(open);
    });
    this.end();
  }

  end() {
    this.stop();
    this.el.cancel.disabled = true;
    this.onEnd?.();
  }
}
