"""The ComfyUI import's command line: `nodegraph import-comfy`, the options `nodegraph run` takes for workflows,
and the pieces nodegraph.runner uses to run one (`load_translated`, `split_sets`, `save_images`).

cli.py only registers these; `nodegraph run WORKFLOW.json|comfy.png` goes through nodegraph.runner like a graph
file (translated here, run and written there).
"""

from __future__ import annotations

import pathlib
import re
import sys
from typing import Any

from nodegraph.comfy.errors import ComfyError
from nodegraph.comfy.report import add_report_option, cmd_report

EXIT_INVALID = 2


def add_run_options(run_parser) -> None:
    """The options `nodegraph run` takes for ComfyUI workflows."""
    run_parser.add_argument("--models", action="append", default=[], metavar="DIR",
                            help="ComfyUI workflows: a ComfyUI models/ folder (checkpoints/, loras/, vae/, ...); "
                                 "repeatable")
    run_parser.add_argument("--extra-model-paths", default=None, metavar="YAML",
                            help="ComfyUI workflows: ComfyUI's extra_model_paths.yaml")
    run_parser.add_argument("--input", action="append", default=[], metavar="DIR",
                            help="ComfyUI workflows: where LoadImage's files are (ComfyUI's input/ folder; "
                                 "default: the workflow's folder and its input/); repeatable")


def add_import_parser(sub) -> None:
    p = sub.add_parser("import-comfy", help="write a ComfyUI workflow (.json or ComfyUI PNG) as a nodegraph YAML graph")
    p.add_argument("workflow", metavar="WORKFLOW", help="API or UI workflow .json, or a PNG saved by ComfyUI")
    p.add_argument("-o", "--output", default=None, metavar="GRAPH.yaml",
                   help="where to write the graph (default: WORKFLOW with .yaml); its step graph is written beside it")
    add_run_options(p)
    p.add_argument("--set", action="append", default=[], metavar="NODE_ID.INPUT=VALUE",
                   help="change a workflow value before importing (e.g. --set 3.seed=5)")
    add_report_option(p)  # --report: nodegraph/comfy/report.py
    p.set_defaults(func=cmd_import)


def model_paths(args, workflow_path: str | None = None):
    from nodegraph.comfy.models import ModelPaths, read_extra_model_paths

    extra = read_extra_model_paths(args.extra_model_paths) if getattr(args, "extra_model_paths", None) else {}
    inputs = [pathlib.Path(d) for d in getattr(args, "input", []) or []]
    if not inputs and workflow_path:
        here = pathlib.Path(workflow_path).parent
        inputs = [here / "input", here]
    plain = split_sets(getattr(args, "set", []) or [])[1]
    allowed = any(s.partition("=")[0].strip() == "allow_pickle" and s.partition("=")[2].strip().lower() == "true"
                  for s in plain)
    return ModelPaths([pathlib.Path(d) for d in getattr(args, "models", []) or []], extra, inputs, allowed)


def split_sets(sets: list[str]) -> tuple[list[str], list[str]]:
    """(`NODE_ID.INPUT=VALUE` items, plain `NAME=VALUE` items)."""
    comfy = [s for s in sets if "." in s.partition("=")[0]]
    return comfy, [s for s in sets if s not in comfy]


def apply_comfy_sets(api: dict[str, dict[str, Any]], sets: list[str], origin: str) -> None:
    """Set workflow inputs in place; the value is parsed by the type of the value it replaces."""
    for item in sets:
        target, eq, raw = item.partition("=")
        node_id, _, name = target.strip().partition(".")
        if not eq or node_id not in api:
            known = ", ".join(f"{k} ({v['class_type']})" for k, v in list(api.items())[:12])
            raise ComfyError(f"--set {item}: no node {node_id!r} in {origin}; its nodes: {known}")
        inputs = api[node_id]["inputs"]
        old = inputs.get(name)
        if isinstance(old, list):
            raise ComfyError(f"--set {item}: node {node_id} input `{name}` is a link, not a value")
        try:
            if isinstance(old, bool):
                value: Any = {"true": True, "false": False}[raw.lower()]
            elif isinstance(old, int):
                value = int(raw)
            elif isinstance(old, float):
                value = float(raw)
            else:
                value = raw
        except (ValueError, KeyError):
            raise ComfyError(f"--set {item}: node {node_id} input `{name}` expects {type(old).__name__} like "
                             f"{old!r}") from None
        inputs[name] = value


def load_translated(path: str, args, folder: pathlib.Path):
    """Read, translate and write the workflow as `folder/<name>.yaml` + its step graph; returns (graph, translation, wf)."""
    import shutil

    from nodegraph.comfy.reader import read_workflow
    from nodegraph.comfy.translate import STEP_GRAPH, STEP_GRAPH_NAME, translate
    from nodegraph.spec.loader import load_graph

    workflow = read_workflow(path)
    comfy_sets, _ = split_sets(getattr(args, "set", []) or [])
    apply_comfy_sets(workflow.api, comfy_sets, workflow.origin)
    translation = translate(workflow, model_paths(args, path))
    target = folder / (pathlib.Path(path).stem + ".yaml")
    write_yaml(translation.document, target)
    shutil.copyfile(STEP_GRAPH, folder / STEP_GRAPH_NAME)
    return load_graph(target), translation, workflow, target


def write_yaml(document: dict, target: pathlib.Path) -> None:
    import yaml

    text = yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=110)
    target.write_text(text, encoding="utf-8")


def cmd_import(args) -> int:
    import tempfile

    if getattr(args, "report", False):
        return cmd_report(args)

    output = pathlib.Path(args.output or pathlib.Path(args.workflow).with_suffix(".yaml").name)
    with tempfile.TemporaryDirectory(prefix="nodegraph-comfy-") as scratch:
        try:
            _, translation, _, written = load_translated(args.workflow, args, pathlib.Path(scratch))
        except ComfyError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_INVALID
        step = output.parent / "comfy_ksampler_step.yaml"
        for path in (output, step):
            if path.exists() and path != step:
                print(f"error: {path} already exists; nodegraph never overwrites files (choose another -o)",
                      file=sys.stderr)
                return EXIT_INVALID
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(written.read_text(encoding="utf-8"), encoding="utf-8")
        if not step.exists():
            step.write_text((pathlib.Path(scratch) / "comfy_ksampler_step.yaml").read_text(encoding="utf-8"),
                            encoding="utf-8")
    print(f"wrote {output} ({len(translation.document['nodes'])} nodes, {len(translation.document['inputs'])} "
          f"inputs; step graph {step})")
    return 0


def save_images(image, out_dir: pathlib.Path, prefix: str, chunks: dict[str, str]) -> list[pathlib.Path]:
    """Write each image as ComfyUI's SaveImage does: `<prefix>_<counter:05>_.png`, the counter one past the
    highest already in the folder for that prefix; `prompt` / `workflow` text chunks as ComfyUI writes them."""
    from PIL.PngImagePlugin import PngInfo

    from nodegraph.exec.writers import to_pil_images, write_atomic

    folder = (out_dir / prefix).parent
    stem = pathlib.Path(prefix).name
    folder.mkdir(parents=True, exist_ok=True)
    if out_dir.resolve() not in [folder.resolve(), *folder.resolve().parents]:
        raise ComfyError(f"filename_prefix {prefix!r} leaves the --out folder")
    pattern = re.compile(re.escape(stem) + r"_(\d{5,})_\.png$")
    counter = max([int(m[1]) for p in folder.iterdir() if (m := pattern.match(p.name))], default=0) + 1
    info = PngInfo()
    for key, text in chunks.items():
        info.add_text(key, text)
    written = []
    for picture in to_pil_images(image, stem):
        path = folder / f"{stem}_{counter:05}_.png"
        write_atomic(path, lambda f, picture=picture: picture.save(f, format="PNG", pnginfo=info))
        written.append(path)
        counter += 1
    return written
