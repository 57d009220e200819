"""Where fast mode can run: a CPU device and a torch whose oneDNN ops it calls exist.

The ops are torch's private `mkldnn` ones (those torch.compile's CPU backend emits), so a torch release may rename
or drop them; the check runs before a fast run loads any model, so such a torch gets a clear message instead of an
AttributeError halfway through a step. On CUDA torch's own kernels already are the fast path: fast mode would
change nothing but keep a second copy of each model, so it is refused instead.
"""

from __future__ import annotations

from nodegraph.core.context import DeviceError

REQUIRED_OPS = ("_convolution_pointwise", "_reorder_convolution_weight", "_linear_pointwise",
                "_reorder_linear_weight")


def missing_ops() -> list[str]:
    """The oneDNN ops fast mode calls that this torch lacks (none on the torch in constraints.txt)."""
    import torch

    return [name for name in REQUIRED_OPS if not hasattr(torch.ops.mkldnn, name)]


def check_supported(device) -> None:
    """Raise `DeviceError` (a clear message, exit 2) when fast mode cannot run on `device` with this torch."""
    import torch

    if torch.device(device).type != "cpu":
        raise DeviceError(f"fast mode (`--fast`) speeds up CPU runs only; on {device} torch's own kernels already "
                          "are the fast path, so it would change nothing but keep a second copy of each model. "
                          "Drop `--fast` (or `fast: true`), or run on the CPU with `--device cpu`")
    missing = missing_ops()
    if missing:
        raise DeviceError(f"fast mode (`--fast`) needs torch's oneDNN ops {', '.join(missing)}, which torch "
                          f"{torch.__version__} does not have; drop `--fast`, or install the torch release "
                          "nodegraph is tested with (constraints.txt)")
