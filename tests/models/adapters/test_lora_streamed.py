"""A LoRA on a model streamed from its file (models/streaming.py, the `--max-memory` path) gives the resident
model's numbers with the same LoRA, bit for bit, fused and unfused, and keeps no fused copy of the weights
(models/adapters/streamed_lora.py). The files are bf16, the run fp32: the resident model holds fp32 weights, the
streamed one bf16 views of the file, so a LoRA fused into the stored dtype would round it (today's fault)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from nodegraph.models import streaming
from nodegraph.models.adapters.lora import LoraLayer, adaptable_layers, apply_lora, match_layers, read_lora
from nodegraph.models.loading import load_component


def _as_bf16(source, target):
    """A copy of a component folder whose weight file stores bf16 (as SDXL / Flux / Z-Image files ship)."""
    target.mkdir(parents=True)
    shutil.copy(source / "config.json", target / "config.json")
    name = "diffusion_pytorch_model.safetensors"
    save_file({k: v.to(torch.bfloat16) for k, v in load_file(source / name).items()}, target / name)
    return target


@pytest.fixture(scope="module")
def bf16_unet(tiny_sd, tmp_path_factory):
    return _as_bf16(tiny_sd / "unet", tmp_path_factory.mktemp("bf16-unet") / "unet")


def _unet_call(model):
    g = torch.Generator().manual_seed(0)
    x, ctx = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 77, 32, generator=g)
    with torch.no_grad():
        return model(x, torch.tensor(500), ctx)


def _loaded(folder, component="unet"):
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(streaming, "UNIT_BYTES", 16 << 10)  # many small units, released after each
        return (load_component(folder, component, dtype=torch.float32),
                load_component(folder, component, dtype=torch.float32, stream=True))


@pytest.fixture(scope="module")
def unets(bf16_unet):
    """(resident, streamed) UNets of the bf16 file in an fp32 run, loaded once for the module."""
    return _loaded(bf16_unet)


@pytest.fixture(scope="module")
def resident_outputs(unets, loras):
    """The resident UNet's outputs: plain, and with the kohya LoRA at 0.7 fused / unfused (computed once)."""
    resident, lora = unets[0], read_lora(str(loras["kohya"]))
    return {"plain": _unet_call(resident), True: _unet_call(_patched(resident, lora, True)),
            False: _unet_call(_patched(resident, lora, False))}


def _patched(model, lora, fuse, part="unet"):
    return apply_lora(model, match_layers(lora, part, model, "the model"), 0.7, fuse)


@pytest.mark.parametrize("fuse", [True, False], ids=["fused", "unfused"])
def test_a_lora_on_a_streamed_bf16_unet_gives_the_resident_unets_numbers(unets, loras, resident_outputs, fuse):
    streamed, expected = unets[1], resident_outputs[fuse]
    lora = read_lora(str(loras["kohya"]))  # attention, feed-forward, resnet convs, down/upsamplers
    released = streamed.streamed_weights.released
    got = _unet_call(_patched(streamed, lora, fuse))
    assert (expected - resident_outputs["plain"]).abs().max() > 1e-2  # the LoRA moves the output: sensitive
    assert torch.equal(got, expected), (got - expected).abs().max()
    assert streamed.streamed_weights.released > released + 10  # still streamed: blocks given back as they ran


def test_a_fused_lora_keeps_the_streamed_weights_and_holds_no_copy_of_them(unets, loras):
    from nodegraph.models.adapters.streamed_lora import FusedOnCall

    streamed = unets[1]
    matched = match_layers(read_lora(str(loras["kohya"])), "unet", streamed, "the UNet")
    patched = apply_lora(streamed, matched, 0.7, True)
    before = {id(p) for p in streamed.parameters()}
    added = [p for p in patched.parameters() if id(p) not in before]
    assert not added, f"{len(added)} parameters added: a fused copy would hold them for the run"
    layers = adaptable_layers(patched)
    for path, (layer, _) in matched.items():
        assert isinstance(layers[path], FusedOnCall) and layers[path].fuse_dtype == torch.float32
        assert layers[path].weight is layer.weight and layer.weight.dtype == torch.bfloat16  # the file's view
    factors = sum(d.numel() + u.numel() for layer in layers.values() for d, u, _ in getattr(layer, "fused_loras", ()))
    assert 0 < factors * 4 < 0.2 * sum(p.numel() * 2 for p in streamed.parameters())
    _unet_call(patched)  # W' is built in each layer's call and dropped after it: nothing of its size is kept
    assert not [v for path in matched for v in vars(layers[path]).values() if isinstance(v, torch.Tensor)]


def test_two_loras_fused_in_turn_into_a_streamed_unet_equal_the_resident_ones(unets, loras, resident_outputs):
    resident, streamed = unets
    first, second = read_lora(str(loras["kohya"])), read_lora(str(loras["peft"]))
    expected = _unet_call(_patched(_patched(resident, first, True), second, True))
    got = _unet_call(_patched(_patched(streamed, first, True), second, True))
    assert (expected - resident_outputs[True]).abs().max() > 1e-2  # the second LoRA counts
    assert torch.equal(got, expected), (got - expected).abs().max()


@pytest.fixture(scope="module")
def bf16_flux(tmp_path_factory):
    """A tiny Flux.1 transformer (tests/flow/tiny_flux.py's size) saved in bf16 by diffusers."""
    import diffusers
    from tests.flow.tiny_flux import TRANSFORMER, perturb

    torch.manual_seed(0)
    model = perturb(diffusers.FluxTransformer2DModel(**TRANSFORMER, guidance_embeds=False), 33)
    folder = tmp_path_factory.mktemp("bf16-flux") / "transformer"
    model.to(torch.bfloat16).save_pretrained(folder)
    return folder


def _flux_lora(model):
    """Random LoRA factors (fp32, as a file would hold them) on every Linear of the first double and single block
    and the context embedder."""
    g, found = torch.Generator().manual_seed(5), {}
    for path, layer in adaptable_layers(model).items():
        if path.startswith(("transformer_blocks.0.", "single_transformer_blocks.1.", "context_embedder")):
            found[path] = LoraLayer(torch.randn(4, layer.in_features, generator=g) * 0.3,
                                    torch.randn(layer.out_features, 4, generator=g) * 0.3, alpha=2.0)
    return found


def _flux_call(model, fuse):
    layers = adaptable_layers(model)
    patched = apply_lora(model, {p: (layers[p], lora) for p, lora in _flux_lora(model).items()}, 0.8, fuse) \
        if fuse is not None else model
    g = torch.Generator().manual_seed(1)
    x, text = torch.randn(1, 16, 16, generator=g), torch.randn(1, 5, 40, generator=g)
    img_ids = torch.stack(torch.meshgrid(torch.zeros(1), torch.arange(4.), torch.arange(4.), indexing="ij"),
                          -1).reshape(16, 3)
    with torch.no_grad():
        return patched(hidden_states=x, encoder_hidden_states=text, pooled_projections=torch.randn(1, 24, generator=g),
                       timestep=torch.tensor([0.5]), img_ids=img_ids, txt_ids=torch.zeros(5, 3))


@pytest.mark.parametrize("fuse", [True, False], ids=["fused", "unfused"])
def test_a_lora_on_a_streamed_bf16_flux_transformer_gives_the_resident_numbers(bf16_flux, fuse):
    resident, streamed = _loaded(bf16_flux, "transformer")
    expected = _flux_call(resident, fuse)
    assert (expected - _flux_call(resident, None)).abs().max() > 1e-2
    got = _flux_call(streamed, fuse)
    assert torch.equal(got, expected), (got - expected).abs().max()


@pytest.mark.parametrize("fuse", [True, False], ids=["fused", "unfused"])
def test_a_lora_on_a_unet_streamed_from_host_memory_gives_the_resident_numbers(bf16_unet, unets, loras,
                                                                               resident_outputs, fuse):
    """The CUDA path's schedule (models/cuda_streaming.py) with a CPU stand-in for the device copies: the fused
    layers compute from the unit's copy while it is "on the device", and add no weight the host would hold."""
    from nodegraph.models.cuda_streaming import HostTransfer, stream_to_device

    model = load_component(bf16_unet, "unet", dtype=torch.float32)
    streamer = stream_to_device(model, torch.device("cpu"), 16 << 10, transfer=HostTransfer())
    host = {id(p) for p in model.parameters()}
    patched = _patched(model, read_lora(str(loras["kohya"])), fuse)
    assert fuse is False or all(id(p) in host for p in patched.parameters())
    assert torch.equal(_unet_call(patched), resident_outputs[fuse])
    assert streamer.most_on_device <= 2 and streamer.loads > 10 and not streamer.resident


@pytest.mark.gpu
@pytest.mark.parametrize("fuse", [True, False], ids=["fused", "unfused"])
def test_a_lora_on_a_unet_streamed_to_cuda_gives_the_resident_cuda_numbers(bf16_unet, loras, fuse):
    from nodegraph.models.cuda_streaming import stream_to_device

    lora = read_lora(str(loras["kohya"]))
    resident = load_component(bf16_unet, "unet", dtype=torch.float32, device="cuda")
    model = load_component(bf16_unet, "unet", dtype=torch.float32)
    stream_to_device(model, torch.device("cuda"), 16 << 10)
    g = torch.Generator().manual_seed(0)
    x, ctx = torch.randn(2, 4, 8, 8, generator=g).cuda(), torch.randn(2, 77, 32, generator=g).cuda()
    with torch.no_grad():
        expected = _patched(resident, lora, fuse)(x, torch.tensor(500, device="cuda"), ctx)
        got = _patched(model, lora, fuse)(x, torch.tensor(500, device="cuda"), ctx)
    assert torch.equal(got, expected), (got - expected).abs().max()


def test_fused_at_call_time_on_a_resident_unet_gives_the_fused_copies_numbers(unets, loras, resident_outputs):
    resident = unets[0]
    matched = match_layers(read_lora(str(loras["kohya"])), "unet", resident, "the UNet")
    patched = apply_lora(resident, matched, 0.7, True, on_call=True)
    assert {id(p) for p in patched.parameters()} <= {id(p) for p in resident.parameters()}
    assert torch.equal(_unet_call(patched), resident_outputs[True])


def _lora_graph(tmp_path, unet_folder, lora_file):
    graph = tmp_path / "lora.yaml"
    graph.write_text(f"nodegraph: 1\nnodes:\n  load: {{type: LoadUNet, model: '{unet_folder}'}}\n"
                     f"  lora: {{type: LoadLoRA, unet: $load.unet, lora: '{lora_file}', strength_model: 0.7, "
                     f"strength_clip: 0}}\noutputs:\n  unet: $lora.unet\n")
    return graph


def test_under_a_budget_load_lora_fuses_at_call_time_where_copies_would_not_fit(bf16_unet, loras, tmp_path,
                                                                               monkeypatch, resident_outputs):
    from nodegraph import RunMode, run_graph
    from nodegraph.core.context import ComponentCache
    from nodegraph.memory import usage
    from nodegraph.models.adapters.streamed_lora import FusedOnCall

    graph = _lora_graph(tmp_path, bf16_unet, loras["kohya"])

    def unet(max_memory, room):
        monkeypatch.setattr(usage, "headroom", lambda device, limit: room)
        mode = RunMode(device="cpu", dtype="fp32", max_memory=max_memory)
        return run_graph(graph, mode=mode, components=ComponentCache())["unet"]

    plain = unet(None, 0)  # no budget: copies, as before
    assert not any(isinstance(m, FusedOnCall) for m in plain.modules())
    roomy = unet(8 << 30, 4 << 30)  # the UNet and the copies fit what is left: copies
    assert not any(isinstance(m, FusedOnCall) for m in roomy.modules())
    tight = unet(8 << 30, 1 << 10)  # nothing fits: the UNet streams, the LoRA fuses at each call
    assert hasattr(tight, "streamed_weights") and any(isinstance(m, FusedOnCall) for m in tight.modules())
    assert torch.equal(_unet_call(tight), resident_outputs[True])
    assert torch.equal(_unet_call(plain), resident_outputs[True])


def test_the_memory_plan_counts_the_lora_while_the_patched_models_are_held(tiny_sd, loras):
    from nodegraph import load_graph
    from nodegraph.exec.memory_plan import estimate_run

    graph = load_graph("graphs/stable_diffusion.yaml")
    with_lora = estimate_run(graph, {"model": str(tiny_sd), "lora": str(loras["kohya"])}, 4)
    (lora,) = [c for c in with_lora.components if c.component == "lora"]
    assert lora.bytes == sum(t.numel() * 4 for t in load_file(loras["kohya"]).values())  # its factors, fp32
    unet = next(c for c in with_lora.components if c.component == "unet")
    denoise = with_lora.ticks.index("denoise")
    assert lora.held[0] < unet.held[1] and lora.held[1] >= denoise  # held while the patched UNet steps
    without = estimate_run(graph, {"model": str(tiny_sd), "lora": str(loras["kohya"]), "lora_scale": 0.0}, 4)
    assert not [c for c in without.components if c.component == "lora"]  # strength 0 passes the models through


@pytest.fixture(scope="module")
def fp8_flux(bf16_flux, tmp_path_factory):
    """The same transformer with its Linear weights stored float8_e4m3fn (Flux fp8 releases): resident, those stay
    float8 and a fused LoRA is rounded back to float8 (models/fp8.py); streamed, the same at each call."""
    folder = tmp_path_factory.mktemp("fp8-flux") / "transformer"
    folder.mkdir()
    shutil.copy(bf16_flux / "config.json", folder / "config.json")
    name = "diffusion_pytorch_model.safetensors"
    tensors = load_file(bf16_flux / name)
    save_file({k: v.to(torch.float8_e4m3fn) if k.endswith(".weight") and v.dim() == 2 else v
               for k, v in tensors.items()}, folder / name)
    return folder


@pytest.mark.parametrize("fuse", [True, False], ids=["fused", "unfused"])
def test_a_lora_on_a_streamed_fp8_flux_transformer_gives_the_resident_fp8_numbers(fp8_flux, fuse):
    resident, streamed = _loaded(fp8_flux, "transformer")
    assert resident.transformer_blocks[0].attn.to_q.weight.dtype == torch.float8_e4m3fn
    expected = _flux_call(resident, fuse)
    assert (expected - _flux_call(resident, None)).abs().max() > 1e-2
    assert torch.equal(_flux_call(streamed, fuse), expected)


def test_a_second_lora_on_a_layer_fused_at_call_time_goes_after_the_first(unets, loras):
    from nodegraph.models.adapters.streamed_lora import FusedOnCall

    resident = unets[0]
    first, second = read_lora(str(loras["kohya"])), read_lora(str(loras["peft"]))
    on_call = apply_lora(resident, match_layers(first, "unet", resident, "the UNet"), 0.7, True, on_call=True)
    both = _patched(on_call, second, True)  # no budget now: still at call time, after the first
    layers = [m for m in both.modules() if isinstance(m, FusedOnCall)]
    assert layers and max(len(m.fused_loras) for m in layers) == 2
    assert torch.equal(_unet_call(both), _unet_call(_patched(_patched(resident, first, True), second, True)))
