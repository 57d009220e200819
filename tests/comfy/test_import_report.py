"""`nodegraph import-comfy --report` over the pinned template package: a row per workflow, runs or the parts that
refuse it, and the count; nothing written."""

from __future__ import annotations

from templates import TEMPLATES


def test_report_over_the_template_package_lists_each_template(tmp_path, capsys, monkeypatch):
    from nodegraph.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["import-comfy", "--report", str(TEMPLATES)]) == 0
    out = capsys.readouterr().out
    rows = {line.split(" | ")[0][2:]: line.split(" | ")[1].rstrip(" |") for line in out.splitlines()
            if line.startswith("| ") and not line.startswith("| workflow")}
    for name in ("default", "image2image", "area_composition", "hiresfix_latent_workflow", "sdxlturbo_example",
                 "embedding_example", "esrgan_example", "gligen_textbox_example", "sdxl_revision_text_prompts",
                 "sdxl_revision_zero_positive", "flux_schnell_full_text_to_image", "sd3.5_large_blur",
                 "sd3.5_large_canny_controlnet_example"):
        assert rows[name] == "runs", name
    runs = sum(v == "runs" for v in rows.values())
    assert f"{runs} of {len(rows)} run" in out and len(rows) > 100
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_report_with_models_counts_the_t2i_adapter_template_as_running(tmp_path, capsys):
    """ComfyUI's ControlNetLoader loads T2I-Adapters, and so does nodegraph: the file no longer refuses it."""
    import torch
    from safetensors.torch import save_file

    from nodegraph.cli import main
    from templates import template

    folder = tmp_path / "models" / "controlnet"
    folder.mkdir(parents=True)
    save_file({"conv_in.weight": torch.zeros(4, 192, 3, 3), "body.0.block1.weight": torch.zeros(4, 4, 3, 3)},
              str(folder / "controlnetT2IAdapter_t2iAdapterDepth.safetensors"))
    assert main(["import-comfy", "--report", str(template("depth_t2i_adapter")), "--models",
                 str(tmp_path / "models")]) == 0
    assert "| depth_t2i_adapter | runs |" in capsys.readouterr().out
