"""Scheduler configs read the way diffusers' `from_config` reads a `scheduler_config.json`, and checked.

Each scheduler class declares its keys as `Opt`s (diffusers' default plus what nodegraph accepts); a json
becomes the class's full config (defaults filled in) and the keys it spelled out (`explicit`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np


class SchedulerConfigError(ValueError):
    """A scheduler name or config value nodegraph cannot use; the message says what is allowed."""


@dataclass(frozen=True)
class Opt:
    """One config key: its diffusers default and what nodegraph accepts for it."""

    default: Any
    allowed: tuple = ()  # a closed set of values; for a feature nodegraph lacks, just its default
    kind: str = ""  # "bool" | "int" | "float" | "float?" | "floats?" | "ints"; "" = the default's type
    aliases: Mapping[str | None, Any] = field(default_factory=dict)  # foreign value -> what diffusers acts as
    note: str = ""  # said after the allowed values, e.g. why a feature is missing


def only(default: Any, note: str) -> Opt:
    """A diffusers option nodegraph implements only at its default value."""
    return Opt(default, allowed=(default,), note=note)


BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")
SPACINGS = ("linspace", "leading", "trailing")
PREDICTIONS = ("epsilon", "sample", "v_prediction")


def common_options(spacing: str, predictions: tuple = PREDICTIONS, betas: tuple = BETA_SCHEDULES) -> dict[str, Opt]:
    """The keys every scheduler has; `spacing` is the class's own default, which differs between classes."""
    return {
        "num_train_timesteps": Opt(1000),
        "beta_start": Opt(0.0001),
        "beta_end": Opt(0.02),
        "beta_schedule": Opt("linear", betas),
        "trained_betas": Opt(None, kind="floats?"),
        "prediction_type": Opt("epsilon", predictions),
        "timestep_spacing": Opt(spacing, SPACINGS),
        "steps_offset": Opt(0),
    }


THRESHOLD_OPTIONS = {"thresholding": Opt(False), "dynamic_thresholding_ratio": Opt(0.995), "sample_max_value": Opt(1.0)}
NO_BETA_SIGMAS = only(False, "Beta sigmas need scipy's beta quantile; use `use_karras_sigmas` instead.")
NO_FLOW = "nodegraph does not implement flow-matching schedules."


class FrozenConfig(Mapping):
    """A read-only dict that also reads as attributes (`config.timestep_spacing`), like diffusers' config."""

    def __init__(self, data: Mapping[str, Any]):
        object.__setattr__(self, "_data", dict(data))

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __getattr__(self, key: str) -> Any:
        data = self.__dict__.get("_data")  # absent while copy/pickle rebuild the object
        if data is None or key not in data:
            raise AttributeError(key)
        return data[key]

    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError("a scheduler's config is read-only; "
                             "build a new scheduler with create_scheduler(..., overrides=)")

    def __repr__(self) -> str:
        return f"FrozenConfig({self._data!r})"


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check_value(owner: str, key: str, opt: Opt, value: Any) -> Any:
    """The value to use for `key`, or a SchedulerConfigError naming the key, the value and what is allowed."""
    if (value is None or isinstance(value, str)) and value in opt.aliases:
        value = opt.aliases[value]
    if isinstance(value, np.ndarray):  # a config dict built in Python may hold arrays (trained_betas)
        value = value.tolist()
    if opt.allowed:
        if any(type(value) is type(a) and value == a for a in opt.allowed):
            return value
        expected = "one of " + ", ".join(repr(a) for a in opt.allowed)
    else:
        kind = opt.kind or type(opt.default).__name__
        if kind == "bool" and isinstance(value, bool):
            return value
        if kind == "int" and isinstance(value, int) and not isinstance(value, bool):
            return value
        if kind == "float" and _is_number(value):
            return float(value)
        if kind == "float?" and (value is None or _is_number(value)):
            return None if value is None else float(value)
        if kind == "floats?" and (value is None or (isinstance(value, (list, tuple)) and all(map(_is_number, value)))):
            return None if value is None else [float(v) for v in value]
        if kind == "ints" and isinstance(value, (list, tuple)) and all(isinstance(v, int) for v in value):
            return list(value)
        expected = {"bool": "true or false", "int": "an integer", "float": "a number", "float?": "a number or null",
                    "floats?": "a list of numbers or null", "ints": "a list of integers"}[kind]
    note = f" {opt.note}" if opt.note else ""
    raise SchedulerConfigError(
        f"{owner}: `{key}` must be {expected}; got {value!r}.{note} "
        f"Fix `{key}` in scheduler_config.json, or remove it to use the default {opt.default!r}."
    )


def resolve_config(owner: str, options: Mapping[str, Opt], cfg: Mapping[str, Any],
                   overrides: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(config, explicit) the way diffusers' `from_config` builds a scheduler from a json dict.

    Keys starting with `_` are metadata, keys listed in `_use_default_values` were defaults of the class that
    wrote the file and are dropped (so the new class uses its own default), and keys the class does not know
    are ignored. `explicit` keeps every key that came from the json (known or not) plus the overrides.
    """
    if not isinstance(cfg, Mapping):
        raise SchedulerConfigError(f"{owner}: the scheduler config must be a dict (scheduler_config.json); "
                                   f"got {type(cfg).__name__}.")
    dropped = set(cfg.get("_use_default_values") or ())
    explicit = {k: v for k, v in cfg.items() if not k.startswith("_") and k not in dropped}
    explicit.update(overrides)
    config = {k: opt.default for k, opt in options.items()}
    errors = []
    for key, value in explicit.items():
        if key in options:
            try:
                config[key] = _check_value(owner, key, options[key], value)
            except SchedulerConfigError as e:
                errors.append(str(e))
    if config["num_train_timesteps"] < 1:
        errors.append(f"{owner}: `num_train_timesteps` must be at least 1; got {config['num_train_timesteps']}.")
    tb = config.get("trained_betas")
    if tb is not None and len(tb) != config["num_train_timesteps"]:
        errors.append(f"{owner}: `trained_betas` has {len(tb)} values but `num_train_timesteps` is "
                      f"{config['num_train_timesteps']}; give one beta per training step.")
    picked = [k for k in ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas") if config.get(k)]
    if len(picked) > 1:
        errors.append(f"{owner}: only one of `use_karras_sigmas`, `use_exponential_sigmas`, `use_beta_sigmas` "
                      f"can be true; got {', '.join(picked)}.")
    if errors:
        raise SchedulerConfigError("\n".join(errors))
    return config, explicit
