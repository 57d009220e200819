"""`nodegraph inspect MODEL`: what a single-file checkpoint holds, without loading its weights.

The family, the prediction type, each component's config (built-in or from `--config`), storage dtype, parameter
count and size, the keys no model reads, and the file's sha256 with the 10-hex short hash A1111 and Civitai use.
The whole file is checked against its configs as a load would check it (shapes, missing and leftover keys).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from typing import Any

from nodegraph.models.errors import CheckpointError

EXIT_INVALID = 2


def add_inspect_parser(sub) -> None:
    p = sub.add_parser("inspect", help="describe a single-file checkpoint: family, configs, dtypes, sizes, hashes")
    p.add_argument("model", metavar="MODEL", help="a .safetensors (or, with --allow-pickle, .ckpt) checkpoint")
    p.add_argument("--config", default=None, help="a diffusers folder or hub repo whose configs replace the "
                                                  "built-in ones")
    p.add_argument("--allow-pickle", action="store_true", help="read a .ckpt/.pt pickle (weights_only)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=cmd_inspect)


def describe(model: str, config: str | None = None, allow_pickle: bool = False) -> dict[str, Any]:
    from nodegraph.models.single_file.detect import detect, top_prefixes
    from nodegraph.models.single_file.hashing import SHORT, file_sha256
    from nodegraph.models.single_file.loader import (_config_source, _meta_plan, builtin_config, check_all,
                                                     is_single_file, opened, scheduler_config)
    from nodegraph.models.single_file.z_image import describe_flow_file, detect_flow_file

    if not is_single_file(model):
        raise CheckpointError(f"{model} is not a file; `nodegraph inspect` reads single-file checkpoints "
                              f"(.safetensors). A diffusers folder describes itself in its model_index.json.")
    ckpt = opened(model, allow_pickle)
    shown = str(ckpt.path)
    if detect_flow_file(ckpt.shapes):  # Z-Image transformer / Qwen3 text encoder alone
        return _with_file_facts(ckpt, describe_flow_file(ckpt, config))
    from nodegraph.models.single_file.flux_inspect import describe_flux_or_text_file

    if (flux := describe_flux_or_text_file(ckpt, config)) is not None:  # Flux transformer, clip_l / t5xxl alone
        return _with_file_facts(ckpt, flux)
    from nodegraph.models.single_file.sd3 import describe_sd3_file, detect_sd3_file

    if detect_sd3_file(ckpt.shapes) is not None:  # SD3 / SD3.5: all-in-one or the transformer alone
        return _with_file_facts(ckpt, describe_sd3_file(ckpt, config))
    fam = detect(ckpt.shapes, shown)
    accounted = check_all(ckpt.shapes, shown, config)
    builtin = builtin_config(fam.config)
    components = {}
    for name in ("unet", "vae", *(t.component for t in fam.text_encoders)):
        raw = _config_source(config, name) if config else builtin[name]
        _, plan, _, _ = _meta_plan(ckpt.shapes, fam, name, raw, shown)
        keys = sorted({take.key for take in plan.values()})
        dtypes = Counter(str(ckpt.entries[k].dtype).removeprefix("torch.") for k in keys)
        components[name] = {
            "tensors": len(keys),
            "parameters": sum(math.prod(ckpt.shapes[k]) for k in keys),
            "bytes": sum(math.prod(ckpt.shapes[k]) * ckpt.entries[k].dtype.itemsize for k in keys),
            "dtype": ", ".join(f"{d} ({n})" if len(dtypes) > 1 else d for d, n in dtypes.most_common()),
            "config": {k: v for k, v in raw.items() if not k.startswith("_")},
        }
    scheduler = scheduler_config(ckpt, fam, config)
    unused = sorted(set(ckpt.shapes) - {t.key for c in _plans(ckpt, fam, config) for t in c.values()})
    sha = file_sha256(ckpt.path)
    return {
        "file": shown, "bytes": ckpt.path.stat().st_size, "family": fam.name, "description": fam.description,
        "prediction_type": scheduler.get("prediction_type", "epsilon"),
        "scheduler": scheduler.get("_class_name"), "configs": config or f"built-in ({builtin.get('_source')})",
        "components": components, "unused_keys": unused,
        "unused_summary": top_prefixes(unused) if unused else "", "sha256": sha, "short_hash": sha[:SHORT],
        "all_keys_accounted": accounted == set(ckpt.shapes),
    }


def _with_file_facts(ckpt, info: dict[str, Any]) -> dict[str, Any]:
    from nodegraph.models.single_file.detect import top_prefixes
    from nodegraph.models.single_file.hashing import SHORT, file_sha256

    sha = file_sha256(ckpt.path)
    return {"file": str(ckpt.path), "bytes": ckpt.path.stat().st_size, **info, "sha256": sha,
            "short_hash": sha[:SHORT], "unused_summary": top_prefixes(info["unused_keys"]),
            "all_keys_accounted": True}  # the load's own check passed; unused keys are the ones diffusers drops too


def _plans(ckpt, fam, config):
    from nodegraph.models.single_file.loader import _config_source, _meta_plan, builtin_config

    builtin = builtin_config(fam.config)
    for name in ("unet", "vae", *(t.component for t in fam.text_encoders)):
        raw = _config_source(config, name) if config else builtin[name]
        yield _meta_plan(ckpt.shapes, fam, name, raw, str(ckpt.path))[1]


def _size(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB"


def render(info: dict[str, Any]) -> str:
    lines = [f"file:            {info['file']} ({_size(info['bytes'])})",
             f"family:          {info['description']} ({info['family']})",
             f"prediction type: {info['prediction_type']} (scheduler {info['scheduler']})",
             f"configs:         {info['configs']}",
             f"sha256:          {info['sha256']}",
             f"short hash:      {info['short_hash']}  (A1111 `Model hash`, Civitai search)"]
    for name, c in info["components"].items():
        lines.append(f"{name}: {c['parameters'] / 1e6:.1f} M parameters, {c['dtype']}, {_size(c['bytes'])}, "
                     f"{c['tensors']} tensors")
        lines.append(f"  config: {json.dumps(c['config'], separators=(', ', ': '))}")
    if info["unused_keys"]:
        lines.append(f"not read by any model: {len(info['unused_keys'])} keys ({info['unused_summary']})")
    return "\n".join(lines)


def cmd_inspect(args) -> int:
    import sys

    try:
        info = describe(args.model, args.config, args.allow_pickle)
    except CheckpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    print(json.dumps(info, indent=2) if args.json else render(info))
    return 0
