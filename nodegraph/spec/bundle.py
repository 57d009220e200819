"""A graph file and every file it includes, as one self-contained value (stored in PNG metadata).

Re-running from a bundle writes the files into a fresh folder with their relative layout and loads the main
one from there, so includes resolve exactly as they did; the files are data, never executed.

A bundle (and the PNG recipe around it) may come from a stranger: its shape is checked with pydantic, its
file names as relative paths, its file count and total size against spec/limits.py, all before anything is
written; a recipe's Hub pins must be commit hashes.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, StrictBool, StrictStr, ValidationError

from nodegraph.spec.limits import InputRefused, Limits, active_limits
from nodegraph.spec.locations import LocationError, check_commit, check_repo_path, shown

BUNDLE_FORMAT = 1


class BundleError(InputRefused):
    """A bundle or recipe that cannot be unpacked safely (wrong shape, too large, paths escaping its folder)."""

    def __init__(self, message: str, code: str = "bad_bundle", hint: str = ""):
        super().__init__(code, message, hint)


class _Bundle(BaseModel):
    model_config = ConfigDict(extra="forbid")
    format: Literal[1]
    main: StrictStr
    files: dict[StrictStr, StrictStr]


class _Recipe(BaseModel):
    model_config = ConfigDict(extra="allow")  # fields a later version adds are kept, not refused
    graph: dict
    inputs: dict[StrictStr, Any]
    source: Optional[StrictStr] = None
    hub_pins: Optional[dict[StrictStr, StrictStr]] = None
    fast: Optional[StrictBool] = None
    weights: Optional[Literal["fp8_e4m3fn", "fp8_e5m2"]] = None  # the denoiser held as fp8 (core/mode.py)


def _first_problem(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(p) for p in error["loc"]) or "the value"
    return f"`{shown(where, 60)}`: {error['msg']}"


def check_bundle(bundle: Any, limits: Optional[Limits] = None) -> dict[str, Any]:
    """`bundle` if it is {format: 1, main, files: {relative path: text}} within the limits; else BundleError."""
    limits = limits or active_limits()
    try:
        checked = _Bundle.model_validate(bundle)
    except ValidationError as exc:
        raise BundleError(f"the embedded graph is not a nodegraph bundle this version can read: "
                          f"{_first_problem(exc)}", hint="a bundle is {format: 1, main, files}") from None
    if len(checked.files) > limits.max_bundle_files:
        raise BundleError(f"the bundle holds {len(checked.files):,} files, over the limit of "
                          f"{limits.max_bundle_files:,}", "bundle_too_large",
                          "raise it with NODEGRAPH_MAX_BUNDLE_FILES if genuine")
    total = sum(len(name) + len(text) for name, text in checked.files.items())
    if total > limits.max_bundle_bytes:
        raise BundleError(f"the bundle's files hold {total:,} characters, over the limit of "
                          f"{limits.max_bundle_bytes:,}", "bundle_too_large",
                          "raise it with NODEGRAPH_MAX_BUNDLE_BYTES if genuine")
    for name in checked.files:
        try:
            if check_repo_path(name) != name:
                raise LocationError("invalid_location", "percent-escapes in a bundled file name")
        except LocationError:
            raise BundleError(f"the bundle names a file outside its folder: `{shown(name)}`") from None
    if checked.main not in checked.files:
        raise BundleError(f"the bundle's main file `{shown(checked.main)}` is not among its files")
    return checked.model_dump()


def check_recipe(data: Any, limits: Optional[Limits] = None) -> dict[str, Any]:
    """A PNG recipe checked before use: its bundle (check_bundle), `inputs` an object, `source` an hf://
    address pinned to a commit, every `hub_pins` value a 40-hex commit; BundleError otherwise."""
    try:
        recipe = _Recipe.model_validate(data)
    except ValidationError as exc:
        raise BundleError(f"its nodegraph metadata is not a recipe this version can read: {_first_problem(exc)}",
                          "bad_recipe") from None
    for address, pin in (recipe.hub_pins or {}).items():
        try:
            check_commit(pin)
        except LocationError:
            raise BundleError(f"its Hub pin for `{shown(address)}` is `{shown(pin)}`, not a commit hash",
                              "invalid_pin", "a recipe pins each Hub graph to the 40-hex commit it ran") from None
    if recipe.source is not None and not _pinned_address(recipe.source):
        raise BundleError(f"its source `{shown(recipe.source)}` is not an hf:// address pinned to a commit",
                          "invalid_pin", "a recipe records hf://OWNER/REPO@<40-hex commit>/PATH.yaml")
    checked = recipe.model_dump(exclude_unset=True)  # keys the PNG does not hold stay absent, as written
    if recipe.source is None:
        checked["graph"] = check_bundle(recipe.graph, limits)
    return checked


def _pinned_address(text: str) -> bool:
    import re

    return re.match(r"^hf://(?:(?:datasets|spaces)/)?[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*@[0-9a-f]{40}/[^@]+$",
                    text) is not None


def bundle_graph(path: str | os.PathLike) -> dict[str, Any]:
    """{"format", "main", "files": {relative path: text}} for `path` and everything it includes."""
    from nodegraph.core.registry import REGISTRY
    from nodegraph.spec.loader import Includes, check_file

    main = pathlib.Path(path).resolve()
    includes = Includes(REGISTRY, allow_outside=True)  # the run already accepted these files
    check_file(main, REGISTRY, includes)
    files = [main, *(p for p, sub in includes.cache.items() if sub.source.hub is None)]  # hf://: by address
    root = pathlib.Path(os.path.commonpath([f.parent for f in files]))
    return {"format": BUNDLE_FORMAT, "main": main.relative_to(root).as_posix(),
            "files": {f.relative_to(root).as_posix(): f.read_text(encoding="utf-8") for f in files}}


def unbundle(bundle: Any, folder: str | os.PathLike) -> pathlib.Path:
    """Write a bundle's files under `folder`; return the main graph's path. Everything is checked before the
    first file is written (check_bundle); BundleError says what is wrong."""
    bundle = check_bundle(bundle)
    folder = pathlib.Path(folder).resolve()
    targets = {}
    for name in bundle["files"]:
        target = (folder / name).resolve()
        if folder not in target.parents:
            raise BundleError(f"the embedded graph names a file outside its folder: `{shown(name)}`")
        targets[name] = target
    for name, text in bundle["files"].items():
        targets[name].parent.mkdir(parents=True, exist_ok=True)
        targets[name].write_text(text, encoding="utf-8")
    return folder / bundle["main"]


def read_png_recipe(path: str | os.PathLike, key: str = "nodegraph") -> Optional[dict[str, Any]]:
    """The checked recipe in a PNG's `key` text chunk, or None when it has none. The file must be a regular
    file whose pixel count is within the limit (read from the header: PIL decodes the image to reach text
    chunks stored after it); the JSON's numbers are bounded. InputRefused/BundleError say what is wrong."""
    from nodegraph.spec.reading import JsonProblem, load_json, open_image

    name = os.fspath(path)
    with open_image(path, name) as img:
        try:
            raw = img.text.get(key) if hasattr(img, "text") else None
        except (OSError, ValueError, SyntaxError) as exc:
            raise BundleError(f"{name}: its text chunks cannot be read ({type(exc).__name__})", "bad_recipe") \
                from None
    if raw is None:
        return None
    try:
        data = load_json(raw)
    except JsonProblem as exc:
        raise BundleError(f"{name}: its nodegraph metadata is damaged ({exc.message} at {exc.line}:{exc.col})",
                          "bad_recipe") from None
    return check_recipe(data)
