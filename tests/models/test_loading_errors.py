"""Every way a checkpoint can be wrong gives a `CheckpointError` that names the file and says what to do."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from nodegraph.models.loading import CheckpointError, load_component, resolve_source


@pytest.fixture
def vae_copy(saved, tmp_path):
    shutil.copytree(saved("vae")[1], tmp_path / "vae")
    return tmp_path / "vae"


def test_missing_weights_name_the_folder_and_the_expected_file(vae_copy):
    (vae_copy / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="no weights in .*vae: expected diffusion_pytorch_model.safetensors"):
        load_component(vae_copy, "vae")


def test_missing_config_names_the_file(vae_copy):
    (vae_copy / "config.json").unlink()
    with pytest.raises(CheckpointError, match=r"missing file .*vae/config\.json: the folder .* holds "
                                              r"diffusion_pytorch_model\.safetensors"):
        load_component(vae_copy, "vae")


def test_missing_variant_lists_the_variants_present(saved, tmp_path):
    saved("vae")[0].save_pretrained(tmp_path, variant="ema")
    with pytest.raises(CheckpointError, match="no `fp16` variant weights .* Variants present: ema"):
        load_component(tmp_path, "vae", variant="fp16")


def test_missing_shard_names_the_shard(saved, tmp_path):
    saved("sd1")[0].save_pretrained(tmp_path, max_shard_size="20KB")
    shard = sorted(tmp_path.glob("*-of-*.safetensors"))[1]
    shard.unlink()
    with pytest.raises(CheckpointError, match=f"missing file .*{shard.name}"):
        load_component(tmp_path, "unet")


def test_truncated_safetensors_is_reported_before_reading(vae_copy):
    weights = vae_copy / "diffusion_pytorch_model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=f"{weights}.* is truncated: tensor .* ends at byte"):
        load_component(vae_copy, "vae")
    weights.write_bytes(data[:5])
    with pytest.raises(CheckpointError, match="is truncated or is not a safetensors file"):
        load_component(vae_copy, "vae")


def test_weights_of_another_architecture_report_missing_and_unexpected_keys(saved, vae_copy):
    shutil.copy(saved("sd1")[1] / "diffusion_pytorch_model.safetensors", vae_copy)
    with pytest.raises(CheckpointError) as error:
        load_component(vae_copy, "vae")
    message = str(error.value)
    assert "diffusion_pytorch_model.safetensors does not fit the AutoencoderKL of" in message
    assert "missing keys (encoder.conv_in.weight" in message and "unexpected keys (" in message
    assert "must come from the same model" in message


def test_shape_mismatch_names_key_and_both_shapes(vae_copy):
    config = json.loads((vae_copy / "config.json").read_text())
    (vae_copy / "config.json").write_text(json.dumps(dict(config, latent_channels=8)))
    with pytest.raises(CheckpointError, match=r"7 shape mismatches \(.*encoder\.conv_out\.weight is \[8, 16, 3, 3\] "
                                              r"in the file but \[16, 16, 3, 3\] in the model"):
        load_component(vae_copy, "vae")


def test_config_of_another_class_in_a_named_slot_fails_early(saved, tmp_path):
    shutil.copytree(saved("sd1")[1], tmp_path / "vae")
    with pytest.raises(CheckpointError, match="describes a UNet2DConditionModel, but component `vae` must be "
                                              "AutoencoderKL"):
        load_component(tmp_path, "vae")


def test_model_index_class_disagreeing_with_config_fails(sd_pipeline, tmp_path):
    shutil.copytree(sd_pipeline, tmp_path / "p")
    index = json.loads((tmp_path / "p" / "model_index.json").read_text())
    (tmp_path / "p" / "model_index.json").write_text(json.dumps(dict(index, unet=["diffusers", "UNet2DModel"])))
    with pytest.raises(CheckpointError, match="declares `unet` a UNet2DModel, but .*unet/config.json describes a "
                                              "UNet2DConditionModel"):
        load_component(tmp_path / "p", "unet")


def test_unknown_or_absent_component_is_named(sd_pipeline):
    with pytest.raises(CheckpointError, match="lists no component `controlnet`; it lists .*unet"):
        load_component(sd_pipeline, "controlnet")
    with pytest.raises(CheckpointError, match="sets `safety_checker` to None"):
        load_component(sd_pipeline, "safety_checker")


def test_pickle_weights_are_refused_unless_allowed(saved, tmp_path):
    saved("vae")[0].save_pretrained(tmp_path, safe_serialization=False)
    with pytest.raises(CheckpointError, match=r"diffusion_pytorch_model\.bin is a pickle .* allow_pickle=True"):
        load_component(tmp_path, "vae")


def test_pickle_with_code_is_refused_even_when_allowed(vae_copy):
    (vae_copy / "diffusion_pytorch_model.safetensors").unlink()
    torch.save({"encoder.conv_in.weight": torch.zeros(1), "payload": print}, vae_copy / "diffusion_pytorch_model.bin")
    with pytest.raises(CheckpointError, match="could not be read as a weights-only torch checkpoint"):
        load_component(vae_copy, "vae", allow_pickle=True)


def test_same_tensor_under_legacy_and_new_names_is_refused(vae_copy):
    weights = vae_copy / "diffusion_pytorch_model.safetensors"
    state = load_file(weights)
    state["encoder.mid_block.attentions.0.query.weight"] = state["encoder.mid_block.attentions.0.to_q.weight"].clone()
    save_file(state, weights)
    with pytest.raises(CheckpointError, match="holds `encoder.mid_block.attentions.0.to_q.weight` twice"):
        load_component(vae_copy, "vae")


def test_unsupported_config_value_names_key_and_supported_values(saved, tmp_path):
    shutil.copytree(saved("sd1")[1], tmp_path / "unet")
    config = json.loads((tmp_path / "unet" / "config.json").read_text())
    bad = dict(config, down_block_types=["CrossAttnDownBlock2D", "SimpleCrossAttnDownBlock2D"])
    (tmp_path / "unet" / "config.json").write_text(json.dumps(bad))
    with pytest.raises(CheckpointError, match=r"unet/config\.json: `down_block_types` is .*SimpleCrossAttnDownBlock2D"
                                              r".* nodegraph supports entries among 'CrossAttnDownBlock2D', "
                                              r"'DownBlock2D'"):
        load_component(tmp_path, "unet")


def test_sources_that_do_not_exist_are_named(tmp_path):
    with pytest.raises(CheckpointError, match=f"no such folder: {tmp_path / 'absent'}"):
        resolve_source(str(tmp_path / "absent"))
    with pytest.raises(CheckpointError, match="no built-in model `nope`"):
        resolve_source("builtin:nope")
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError, match="is a file; pass the folder"):
        resolve_source(tmp_path / "model.safetensors")


def test_tokenizer_folder_without_vocabulary_is_named(sd_pipeline, tmp_path):
    (tmp_path / "tokenizer").mkdir()
    shutil.copy(sd_pipeline / "tokenizer" / "vocab.json", tmp_path / "tokenizer")
    with pytest.raises(CheckpointError, match="no tokenizer in .*tokenizer: expected vocab.json and merges.txt, or "
                                              "tokenizer.json; the folder holds vocab.json"):
        load_component(tmp_path, "tokenizer")


def test_invalid_json_is_named(vae_copy):
    (vae_copy / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"config\.json is not valid JSON"):
        load_component(vae_copy, "vae")
