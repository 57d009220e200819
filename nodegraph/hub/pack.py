"""`nodegraph pack GRAPH DIR`: a folder ready to upload as a Hub repo — the graph, the files it includes,
and a README model card generated from the graph.

The card says what the graph does (its description), what it takes (an inputs table: types, defaults,
ranges, choices), what it gives, which node types it uses, what it requires, and the command that runs it
from the Hub. Uploading stays the Hub's own tooling: `hf upload OWNER/REPO DIR .`.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import tempfile
from typing import Optional

from nodegraph.spec.document import NO_DEFAULT

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class PackError(ValueError):
    """The pack cannot be written (target folder not empty, example not a PNG)."""


def _cell(value) -> str:
    text = "" if value is None else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def node_types_used(checked) -> list[str]:
    """Labels (`Name@version`) of every registered node type the graph runs, includes and bodies too."""
    found: set[str] = set()
    todo = [checked]
    while todo:
        graph = todo.pop()
        nodes = list(graph.nodes.values())
        while nodes:
            node = nodes.pop()
            if node.node_type is not None:
                found.add(node.node_type.label)
            if node.subgraph is not None:
                todo.append(node.subgraph)
            if node.body is not None:
                nodes.extend(node.body.nodes.values())
    return sorted(found)


def _inputs_table(graph) -> list[str]:
    if not graph.inputs:
        return ["This graph takes no inputs."]
    rows = ["| input | type | default | allowed | description |", "|---|---|---|---|---|"]
    for name, decl in graph.inputs.items():
        allowed = []
        if decl.min is not None or decl.max is not None:
            allowed.append(f"{'' if decl.min is None else decl.min} … {'' if decl.max is None else decl.max}")
        if decl.choices:
            allowed.append(", ".join(f"`{c}`" if c != "" else '`""`' for c in decl.choices))
        default = ("(required)" if decl.default is NO_DEFAULT else "(none)" if decl.default is None
                   else f"`{decl.default!r}`")
        rows.append(f"| `{name}` | {_cell(decl.type)} | {_cell(default)} | {_cell('; '.join(allowed))} | "
                    f"{_cell(decl.description)} |")
    return rows


def model_card(graph, main: str, files: list[str], repo: str, example: Optional[str]) -> str:
    from huggingface_hub import ModelCardData

    from nodegraph.core.registry import REGISTRY

    title = pathlib.PurePosixPath(main).stem.replace("_", " ")
    front = ModelCardData(library_name="nodegraph", tags=["nodegraph", "diffusion-graph"]).to_yaml()
    sets = " ".join(f"--set {n}=..." for n, d in graph.inputs.items() if d.default is NO_DEFAULT)
    lines = [f"---\n{front}\n---", "", f"# {title}", "", graph.description.strip() or "(no description)", "",
             "## Run", "", "```sh", f"nodegraph run hf://{repo}/{main}{' ' + sets if sets else ''} --out out",
             "```", "", "Pin a version with `hf://" + repo + "@REVISION/" + main + "` (a tag or commit).", "",
             "## Inputs", "", *_inputs_table(graph), "", "## Outputs", "",
             "| output | type |", "|---|---|",
             *(f"| `{n}` | {_cell(t)} |" for n, t in graph.output_types.items()), "",
             "## Node types used", ""]
    for label in node_types_used(graph.checked):
        info = REGISTRY.get(label)
        lines.append(f"- `{label}` — {info.summary}" if info.summary else f"- `{label}`")
    lines += ["", "## Requirements", ""]
    lines += [f"- `{r}`" for r in graph.spec.requires]
    declared = " ".join(graph.spec.requires)
    for dist in _plugin_distributions(node_types_used(graph.checked)):
        if dist not in declared:  # a plugin the author forgot to declare: still tell the reader
            lines.append(f"- `{dist}` (provides node types used here; not declared in `requires:`)")
    if lines[-1] == "":
        lines.append("- nodegraph (built-in node types only)")
    if example:
        lines += ["", "## Example", "", f"![an image made by this graph]({example})"]
    lines += ["", "## Files", "", *(f"- `{f}`" for f in files), "",
              "Made with `nodegraph pack`. Upload with `hf upload " + repo + " . .` from this folder.", ""]
    return "\n".join(lines)


def _plugin_distributions(labels: list[str]) -> list[str]:
    """Installed packages other than nodegraph that define the given node types."""
    from importlib import metadata

    from nodegraph.core.registry import REGISTRY

    by_module = metadata.packages_distributions()
    found = set()
    for label in labels:
        top = REGISTRY.get(label).cls.__module__.split(".")[0]
        found.update(d for d in by_module.get(top, []) if d != "nodegraph")
    return sorted(found)


def _graph_files(graph) -> dict:
    """{"main": relative path, "files": {relative path: text}}: the graph and what it includes."""
    from nodegraph.hub.resolve import hub_bundle
    from nodegraph.spec.bundle import bundle_graph

    if graph.checked.source.hub is not None:
        return hub_bundle(graph)
    return bundle_graph(graph.checked.source.path)


def pack(graph_path: str, out_dir: str | os.PathLike, *, image: Optional[str] = None,
         repo: str = "OWNER/REPO") -> list[pathlib.Path]:
    """Validate `graph_path` and write the pack into `out_dir` (created; must not hold anything yet)."""
    from nodegraph.spec.loader import load_graph

    out = pathlib.Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise PackError(f"{out} already exists and is not an empty folder; pick a new folder")
    example_bytes = None
    if image is not None:
        try:
            example_bytes = pathlib.Path(image).read_bytes()
        except OSError as exc:
            raise PackError(f"cannot read the example image {image}: {exc}") from None
        if not example_bytes.startswith(PNG_SIGNATURE):
            raise PackError(f"the example image {image} is not a PNG")
    graph = load_graph(graph_path)  # ValidationFailed: nothing written
    bundle = _graph_files(graph)
    names = sorted(bundle["files"])
    example = "example.png" if example_bytes is not None else None
    card = model_card(graph, bundle["main"], names, repo, example)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = pathlib.Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:  # everything is written aside first, then moved into place in one step: never half a pack
        for name, text in bundle["files"].items():
            target = staging / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        (staging / "README.md").write_text(card, encoding="utf-8")
        if example_bytes is not None:
            (staging / "example.png").write_bytes(example_bytes)
        staging.chmod(0o777 & ~_umask())
        if out.exists():
            out.rmdir()  # empty (checked above)
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return sorted(p for p in out.rglob("*") if p.is_file())


def _umask() -> int:
    from nodegraph.exec.writers import _umask

    return _umask()
