"""`nodegraph import-comfy --report WORKFLOW|FOLDER`: for each workflow, whether nodegraph runs it or the parts that
refuse it (the same check `nodegraph run` makes before anything runs: node classes, subgraphs, sampler and
scheduler names), as a table; nothing is imported or written. Model files are not looked up here (a run names any
that are missing); a FOLDER is every `*.json` workflow in it (ComfyUI's template package: its `templates/`)."""

from __future__ import annotations

import pathlib
import sys

from nodegraph.comfy.errors import ComfyError


def add_report_option(parser) -> None:
    parser.add_argument("--report", action="store_true",
                        help="only check: for WORKFLOW (or every .json in a folder) print whether it runs or which "
                             "parts nodegraph does not cover yet; nothing is written")


def check(path: pathlib.Path, paths=None) -> list[str]:
    """The parts of the workflow at `path` that nodegraph does not run yet ([] when it runs). `paths` (the
    `--models` folders) is accepted for the command's sake: no model file refuses a workflow here (T2I-Adapters
    run since ComfyUI's ControlNetLoader loads them)."""
    from nodegraph.comfy.reader import read_workflow
    from nodegraph.comfy.translate import refusals

    api = read_workflow(path).api
    return refusals(api)


def workflows(target: pathlib.Path) -> list[pathlib.Path]:
    if not target.is_dir():
        return [target]
    import json

    found = []
    for path in sorted(target.glob("*.json")):
        try:  # the template package also holds index and locale files: only workflows are checked
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue
        if isinstance(doc, dict) and ("nodes" in doc or all(isinstance(v, dict) and "class_type" in v
                                                            for v in doc.values()) and doc):
            found.append(path)
    return found


def cmd_report(args) -> int:
    target = pathlib.Path(args.workflow)
    if not target.exists():
        print(f"error: {target} does not exist", file=sys.stderr)
        return 2
    rows, runs = ["| workflow | nodegraph |", "|---|---|"], 0
    paths = None
    if getattr(args, "models", None) or getattr(args, "extra_model_paths", None):
        from nodegraph.comfy.command import model_paths

        paths = model_paths(args)
    for path in workflows(target):
        try:
            refused = check(path, paths)
        except ComfyError as exc:
            refused = [str(exc).splitlines()[0].replace(f"{path}: ", "")]
        runs += not refused
        verdict = "runs" if not refused else "refused: " + "; ".join(
            line.replace("|", "\\|") for line in _short(refused))
        rows.append(f"| {path.stem} | {verdict} |")
    print("\n".join(rows))
    print(f"\n{runs} of {len(rows) - 2} run; {len(rows) - 2 - runs} refused")
    return 0


def _short(refused: list[str]) -> list[str]:
    """`node 3: UpscaleModelLoader` lines as their distinct parts (`UpscaleModelLoader`, `sampler_name 'x'`)."""
    parts = []
    for line in refused:
        part = line.split(": ", 1)[1] if line.startswith("node ") and ": " in line else line
        part = part.split(") ", 1)[1] if part.startswith("(") else part
        if part not in parts:
            parts.append(part)
    return parts
