"""Scheduler names: the short ones users type and diffusers' class names, and `create_scheduler`."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from .base import BaseScheduler
from .config import SchedulerConfigError
from .ddim import DDIMScheduler
from .ddpm import DDPMScheduler
from .dpm_multistep import DPMSolverMultistepScheduler
from .euler import EulerDiscreteScheduler
from .euler_ancestral import EulerAncestralDiscreteScheduler
from .flow_match_euler import FlowMatchEulerDiscreteScheduler
from .lcm import LCMScheduler
from .lms import LMSDiscreteScheduler
from .pndm import PNDMScheduler
from .tcd import TCDScheduler
from .unipc import UniPCMultistepScheduler

_CLASSES: tuple[type[BaseScheduler], ...] = (
    DDPMScheduler, DDIMScheduler, PNDMScheduler, UniPCMultistepScheduler, EulerDiscreteScheduler,
    EulerAncestralDiscreteScheduler, DPMSolverMultistepScheduler, LMSDiscreteScheduler,
    LCMScheduler, TCDScheduler,  # few-step samplers of consistency-distilled models
)
SCHEDULER_NAMES: dict[str, type[BaseScheduler]] = {cls.short_name: cls for cls in _CLASSES}
"""Short name -> class: ddpm, ddim, pndm, unipc, euler, euler_a, dpmpp_2m, lms, lcm, tcd."""
SCHEDULER_CLASSES: dict[str, type[BaseScheduler]] = {cls.class_name: cls for cls in _CLASSES}
"""diffusers class name -> class."""
# Flow-matching samplers (Flux, SD3, Z-Image) work on another noise path: not swappable with the ones above.
FLOW_SCHEDULER_NAMES: dict[str, type[BaseScheduler]] = {c.short_name: c for c in (FlowMatchEulerDiscreteScheduler,)}
FLOW_SCHEDULER_CLASSES: dict[str, type[BaseScheduler]] = {c.class_name: c for c in FLOW_SCHEDULER_NAMES.values()}
# Spellings from other UIs (A1111/ComfyUI, k-diffusion) that mean one of the short names.
ALIASES = {"dpm++_2m": "dpmpp_2m", "dpm++2m": "dpmpp_2m", "euler_ancestral": "euler_a", "k_euler": "euler",
           "k_euler_a": "euler_a", "k_euler_ancestral": "euler_a", "k_lms": "lms"}


def scheduler_class(name: str) -> type[BaseScheduler]:
    """The class a short name, one of its `ALIASES` or a diffusers class name stands for (short names and
    aliases ignore case)."""
    if isinstance(name, str):
        short = name.strip().lower()
        cls = SCHEDULER_NAMES.get(ALIASES.get(short, short)) or SCHEDULER_CLASSES.get(name.strip()) \
            or FLOW_SCHEDULER_NAMES.get(short) or FLOW_SCHEDULER_CLASSES.get(name.strip())
        if cls is not None:
            return cls
    known = list(SCHEDULER_NAMES) + list(ALIASES) + list(SCHEDULER_CLASSES)
    close = difflib.get_close_matches(str(name).lower(), known, n=1)
    hint = f" Did you mean {ALIASES.get(close[0], close[0])!r}?" if close else ""
    raise SchedulerConfigError(
        f"Unknown scheduler {name!r}.{hint} Use one of {', '.join(SCHEDULER_NAMES)} "
        f"or a diffusers class name: {', '.join(SCHEDULER_CLASSES)}."
    )


def create_scheduler(cfg: Mapping[str, Any] | None, name: str | None = None,
                     overrides: Mapping[str, Any] | None = None) -> BaseScheduler:
    """A new scheduler built from a `scheduler_config.json` dict, with diffusers' `from_config` semantics.

    `name` picks the class (short or diffusers name); None means the config's own `_class_name`. Only keys
    present in `cfg` (minus those listed in its `_use_default_values`) are used; the class's defaults fill the
    rest, so swapping classes behaves as `NewClass.from_config(old.config)` does. `overrides` are applied as if
    they were written in the json (e.g. {"steps_offset": 1}).
    """
    cfg = {} if cfg is None else cfg
    if name is None:
        name = cfg.get("_class_name") if isinstance(cfg, Mapping) else None
        if name is None:
            raise SchedulerConfigError(
                "The scheduler config has no `_class_name`; pass `name=`, one of "
                f"{', '.join(SCHEDULER_NAMES)}.")
    return scheduler_class(name)(cfg, overrides)
