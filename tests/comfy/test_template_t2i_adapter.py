"""The `depth_t2i_adapter` template (pinned package JSON): its T2I-Adapter file, loaded by ComfyUI's
ControlNetLoader, is refused by what its tensor names say, before any model loads (exit 2, nothing written),
where it used to load the checkpoint and then fail with "is not a ControlNet"."""

from __future__ import annotations

from PIL import Image

from templates import models_folder, template


def test_t2i_adapter_file_is_refused_with_the_reason_before_any_model_loads(tmp_path, models_dir, capsys):
    from safetensors.torch import save_file
    import torch

    from nodegraph.cli import main

    models = models_folder(tmp_path, {"checkpoints/interiordesignsuperm_v2.safetensors":
                                      models_dir / "checkpoints" / "tiny-sd1.safetensors"})
    adapter = models / "controlnet" / "controlnetT2IAdapter_t2iAdapterDepth.safetensors"
    adapter.parent.mkdir(parents=True)
    # TencentARC's full adapter layout (what ComfyUI's load_t2i_adapter reads as `conv_in` + `body.N.block1`)
    save_file({"conv_in.weight": torch.zeros(4, 192, 3, 3), "body.0.block1.weight": torch.zeros(4, 4, 3, 3)},
              str(adapter))
    (tmp_path / "input").mkdir()
    Image.new("RGB", (32, 32)).save(tmp_path / "input" / "depth-t2i-adapter_input.png")
    code = main(["run", str(template("depth_t2i_adapter")), "--models", str(models), "--input",
                 str(tmp_path / "input"), "--out", str(tmp_path / "out"), "-q"])
    err = capsys.readouterr().err
    assert code == 2 and not (tmp_path / "out").exists()
    assert "node 31 (ControlNetLoader) input `control_net_name`" in err
    assert "controlnetT2IAdapter_t2iAdapterDepth.safetensors is a T2I-Adapter, not a ControlNet" in err
