// The queue view: the running run and the queued ones in the order the server will run them (GET /queue),
// each with its position; "Run next" raises a queued run's priority above every other one (PATCH /runs/ID),
// "Run later" lowers it below them (at the cap, 1000 or -1000, the runs in its way step aside instead),
// "Cancel" cancels (DELETE /runs/ID), "Watch" follows it on the page.
// Looked at again every 2 s while anything waits, and after every run the page starts or sees end.

import { api } from "./api.js";

const MAX_PRIORITY = 1000, MIN_PRIORITY = -1000;  // the server's range for `priority`
const EVERY_MS = 2000;

function summary(run) {
  const inputs = run.inputs || {};
  const prompt = typeof inputs.prompt === "string" && inputs.prompt ? `“${inputs.prompt}”` : "";
  const seed = "seed" in inputs ? `seed ${inputs.seed}` : "";
  return [prompt, seed, `priority ${run.priority}`].filter(Boolean).join(" · ");
}

function action(text, className, onClick) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = className;
  button.textContent = text;
  button.addEventListener("click", onClick);
  return button;
}

export class QueueView {
  /** `list`: the <ol>; `empty`: the "nothing waits" line; `onWatch(run)`, `onChange()` (e.g. the gallery). */
  constructor(list, empty, onWatch, onChange) {
    Object.assign(this, { list, empty, onWatch, onChange });
    this.timer = null;
    this.runs = [];
    this.asked = 0;
  }

  async refresh() {
    clearTimeout(this.timer);
    this.timer = null;
    const asked = ++this.asked;
    let runs;
    try {
      runs = (await api("/queue")).runs;
    } catch {
      return;  // the page's notice already says when the server cannot be reached
    }
    if (asked !== this.asked) return;  // a later look was asked for meanwhile: its answer is the one to show
    this.runs = runs;
    this.list.replaceChildren(...this.runs.map((run) => this.entry(run)));
    this.empty.hidden = this.runs.length > 0;
    if (this.runs.length) this.timer = setTimeout(() => this.refresh(), EVERY_MS);
  }

  entry(run) {
    const item = document.createElement("li");
    item.dataset.run = run.id;
    item.className = `run ${run.status}`;
    const place = document.createElement("strong");
    place.className = "position";
    place.textContent = run.status === "running" ? "running" : `#${run.position}`;
    const about = document.createElement("span");
    about.className = "about";
    about.textContent = ` ${run.graph} · ${summary(run)}`;
    const buttons = document.createElement("div");
    buttons.className = "buttons";
    const queued = this.runs.filter((r) => r.status === "queued");
    if (run.status === "queued" && run.position > 1) {
      buttons.append(action("Run next", "run-next", () => this.jump(run, 1)));
    }
    if (run.status === "queued" && run.position < queued.length) {
      buttons.append(action("Run later", "run-later", () => this.jump(run, -1)));
    }
    buttons.append(action("Watch", "watch", () => this.onWatch(run)));
    buttons.append(action("Cancel", "cancel-run", () => this.cancel(run)));
    item.append(place, about, buttons);
    return item;
  }

  async setPriority(run, priority) {
    try {
      await api(`/runs/${encodeURIComponent(run.id)}`, { method: "PATCH", body: { priority } });
    } finally {
      this.refresh();
    }
  }

  /** "Run next" (`step` 1): one above the top queued run; "Run later" (-1): one below the bottom one. At the
   * cap (where a tie keeps arrival order, so the run might not move) it takes the cap and the runs in its way
   * step aside, each beyond the one before it, so they keep their order (the farthest first, so the queue
   * stays in that order meanwhile). */
  async jump(run, step) {
    const cap = step > 0 ? MAX_PRIORITY : MIN_PRIORITY;
    const others = this.runs.filter((r) => r.status === "queued" && r.id !== run.id);  // in queue order
    if (step < 0) others.reverse();  // from the bottom up
    const edge = (step > 0 ? Math.max : Math.min)(...others.map((r) => r.priority));
    if (edge !== cap) return this.setPriority(run, edge + step);
    const moved = [];
    let beyond = cap;
    for (const other of others) {
      const wanted = step > 0 ? Math.min(other.priority, beyond - 1) : Math.max(other.priority, beyond + 1);
      const priority = Math.min(MAX_PRIORITY, Math.max(MIN_PRIORITY, wanted));
      if (priority === other.priority) break;  // beyond the one before it already: so are those after it
      moved.push([other, priority]);
      beyond = priority;
    }
    try {
      for (const [other, priority] of moved.reverse()) {
        await api(`/runs/${encodeURIComponent(other.id)}`, { method: "PATCH", body: { priority } });
      }
    } catch (error) {
      this.refresh();  // a run in the way could not move (it started meanwhile): the queue as it is now
      throw error;
    }
    await this.setPriority(run, cap);
  }

  async cancel(run) {
    try {
      await api(`/runs/${encodeURIComponent(run.id)}`, { method: "DELETE" });
    } finally {
      await this.refresh();
      this.onChange?.();
    }
  }
}
