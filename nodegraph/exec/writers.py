"""Output writers: how the CLI saves graph outputs to files. Pluggable, so other modules can add formats
or PNG metadata without touching the CLI:

    from nodegraph.exec.writers import IMAGE_WRITER, register_output_writer
    IMAGE_WRITER.metadata_hooks.append(lambda info, index: {"prompt": str(info.inputs.get("prompt", ""))})
    register_output_writer(MyLatentWriter())      # anything with accepts(port_type, value) and write(...)

Files are written atomically (a temporary file in the same folder, then a hard link that fails rather than
overwrite), so no half-written file exists after a failure or Ctrl-C, and an existing file is never
replaced: when `image.png` (or any file of a batch) exists, the run's files get the first free suffix,
`image-2.png`, `image-3.png`, ... (`image-2_0.png`, `image-2_1.png` for a batch).
"""

from __future__ import annotations

import os
import pathlib
import tempfile
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Protocol

from nodegraph.core.types import PortType


class OutputError(RuntimeError):
    """An output could not be written (bad value for its type, unwritable folder)."""


@dataclass
class OutputInfo:
    """What a writer (or a metadata hook) may want to know about the run that made an output."""

    output: str
    port_type: PortType
    graph: Any = None  # the Graph
    inputs: dict[str, Any] = field(default_factory=dict)  # the input values the run used
    device: Optional[str] = None
    dtype: Optional[str] = None
    size: Optional[tuple[int, int]] = None  # (width, height) of an image output, set by the image writer
    fast: bool = False  # made in fast mode (nodegraph/fast): a re-run from the PNG uses it too
    weights: Optional[str] = None  # the denoiser's weights held as fp8 ("fp8_e4m3fn"), recorded for the re-run


class OutputWriter(Protocol):
    def accepts(self, port_type: PortType, value: Any) -> bool: ...

    def write(self, value: Any, out_dir: pathlib.Path, info: OutputInfo) -> list[pathlib.Path]: ...


def write_atomic(path: pathlib.Path, write: Callable[[Any], None]) -> None:
    """Write through `write(file)` into a temporary file, then link it to `path`; never overwrite `path`."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
            os.fchmod(f.fileno(), 0o666 & ~_umask())  # mkstemp makes files private; outputs get the user's mode
        try:
            os.link(tmp, path)  # atomic, and fails if `path` exists
        except FileExistsError:
            raise OutputError(f"{path} already exists; nodegraph never overwrites files") from None
        except OSError:  # a filesystem without hard links
            if path.exists():
                raise OutputError(f"{path} already exists; nodegraph never overwrites files") from None
            os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _umask() -> int:
    try:  # Linux shows it without changing it (another thread may be creating files right now)
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0)  # elsewhere the only way to read it is to set it
    os.umask(mask)
    return mask


def free_names(out_dir: pathlib.Path, name: str, count: int, suffix: str) -> list[pathlib.Path]:
    """`name.png` (or `name_0.png`, ... for count > 1), with `-2`, `-3`, ... added until none exists."""
    for k in range(1, 100_000):
        stem = name if k == 1 else f"{name}-{k}"
        paths = [out_dir / (f"{stem}{suffix}" if count == 1 else f"{stem}_{i}{suffix}") for i in range(count)]
        if not any(p.exists() for p in paths):
            return paths
    raise OutputError(f"no free file name for `{name}` in {out_dir}")


def to_pil_images(value: Any, output: str) -> list:
    """A float tensor (B, 3, H, W) or (3, H, W) in [0, 1], a PIL image, or a list of PIL images."""
    from PIL import Image as PILImage

    if isinstance(value, PILImage.Image):
        return [value]
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, PILImage.Image) for v in value):
        return list(value)
    shape = tuple(getattr(value, "shape", ()))
    if len(shape) == 3:
        value, shape = value.unsqueeze(0), (1, *shape)
    if len(shape) != 4 or shape[1] != 3 or not callable(getattr(value, "detach", None)):
        raise OutputError(f"output `{output}` is declared Image but holds {type(value).__name__} of shape "
                          f"{shape or '?'}; an Image is a float tensor (B, 3, H, W) in [0, 1] or PIL images")
    pixels = value.detach().float().clamp(0, 1).mul(255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    return [PILImage.fromarray(p, mode="RGB") for p in pixels]


class ImageWriter:
    """Writes Image outputs as PNG. `metadata_hooks`: callables (info, batch index) -> {key: text}, written
    as PNG text chunks."""

    def __init__(self):
        self.metadata_hooks: list[Callable[[OutputInfo, int], dict[str, str]]] = []

    def accepts(self, port_type: PortType, value: Any) -> bool:
        return port_type.name == "Image"

    def write(self, value: Any, out_dir: pathlib.Path, info: OutputInfo) -> list[pathlib.Path]:
        from PIL.PngImagePlugin import PngInfo

        images = to_pil_images(value, info.output)
        info.size = images[0].size if images else None
        paths = free_names(out_dir, info.output, len(images), ".png")
        for index, (image, path) in enumerate(zip(images, paths)):
            text = PngInfo()
            for hook in self.metadata_hooks:
                for key, item in hook(info, index).items():
                    text.add_text(key, str(item))
            write_atomic(path, lambda f: image.save(f, format="PNG", pnginfo=text))
        return paths


IMAGE_WRITER = ImageWriter()
WRITERS: list[OutputWriter] = [IMAGE_WRITER]


def summarize(value: Any) -> Any:
    """A small JSON-able description of an output no writer saves to a file (CLI report, server, manifest)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [summarize(v) for v in value[:20]] + (["..."] if len(value) > 20 else [])
    shape = getattr(value, "shape", None)
    if shape is not None:
        described = {"shape": list(shape), "dtype": str(getattr(value, "dtype", "?")).replace("torch.", "")}
        if getattr(value, "numel", lambda: 0)() == 1:
            described["value"] = value.item()
        return described
    return repr(value)[:200]


def register_output_writer(writer: OutputWriter, *, first: bool = True) -> None:
    """Add a writer; by default it is asked before the built-in ones."""
    WRITERS.insert(0, writer) if first else WRITERS.append(writer)


def writer_for(port_type: PortType, value: Any) -> Optional[OutputWriter]:
    return next((w for w in WRITERS if w.accepts(port_type, value)), None)
