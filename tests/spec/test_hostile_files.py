"""Files from strangers are bounded before they cost anything: bundles and PNG recipes (count, size, names,
shape, pins) checked before the first file is written; images' pixel counts read from the header before a
pixel is decoded."""

import struct
import time
import tracemalloc
import zlib

import PIL.Image
import PIL.PngImagePlugin
import pytest

from nodegraph import loads_graph
from nodegraph.spec.bundle import BundleError, check_recipe, read_png_recipe, unbundle
from nodegraph.spec.limits import InputRefused

GRAPH = "nodes:\n  one: {type: Int, value: 1}\noutputs: {x: $one.value}\n"
COMMIT = "1" * 40


def bundle(files=None, main="g.yaml"):
    return {"format": 1, "main": main, "files": files if files is not None else {"g.yaml": GRAPH}}


@pytest.mark.parametrize("hostile, code", [
    (bundle({f"f{i}.yaml": "" for i in range(30_000)}, main="f0.yaml"), "bundle_too_large"),
    (bundle({"g.yaml": GRAPH, "big.yaml": "x" * (5 * 2**20)}), "bundle_too_large"),
    (bundle({"g.yaml": GRAPH, "a\x00b.yaml": GRAPH}), "bad_bundle"),
    (bundle({"g.yaml": GRAPH, "/tmp/abs.yaml": GRAPH}), "bad_bundle"),
    (bundle({"g.yaml": GRAPH, "../up.yaml": GRAPH}), "bad_bundle"),
    (bundle({"g.yaml": GRAPH, "a/../../up.yaml": GRAPH}), "bad_bundle"),
    (bundle({"g.yaml": GRAPH, "..%2Fup.yaml": GRAPH}), "bad_bundle"),
    (bundle({"g.yaml": GRAPH, "..\\up.yaml": GRAPH}), "bad_bundle"),
    (bundle({"g.yaml": GRAPH, "": GRAPH}), "bad_bundle"),
    (bundle(main=["g.yaml"]), "bad_bundle"),
    (bundle(main={"a": 1}), "bad_bundle"),
    (bundle(main="other.yaml"), "bad_bundle"),
    (bundle({"g.yaml": 5}), "bad_bundle"),
    (bundle(["g.yaml"]), "bad_bundle"),
    ({**bundle(), "format": "1"}, "bad_bundle"),
    ([1, 2], "bad_bundle"), ("text", "bad_bundle"), (None, "bad_bundle"),
])
def test_a_hostile_bundle_is_refused_before_anything_is_written(tmp_path, hostile, code):
    folder = tmp_path / "out"
    started = time.perf_counter()
    with pytest.raises(BundleError) as caught:
        unbundle(hostile, folder)
    assert caught.value.code == code, str(caught.value)
    assert not folder.exists() or not any(folder.rglob("*"))  # nothing written, not even a folder of files
    assert not (tmp_path / "up.yaml").exists() and not (tmp_path / "abs.yaml").exists()
    assert time.perf_counter() - started < 2  # a guard against writing 30,000 files first, not a speed goal


def test_a_bundle_within_the_limits_still_unpacks(tmp_path):
    main = unbundle(bundle({"g.yaml": GRAPH, "parts/p.yaml": GRAPH}), tmp_path)
    assert main.read_text() == GRAPH and (tmp_path / "parts" / "p.yaml").is_file()


@pytest.mark.parametrize("recipe, code", [
    ({"graph": bundle(), "inputs": {}, "hub_pins": {"hf://a/b/g.yaml": "../../../etc/passwd"}}, "invalid_pin"),
    ({"graph": bundle(), "inputs": {}, "hub_pins": {"hf://a/b/g.yaml": "main"}}, "invalid_pin"),
    ({"graph": bundle(), "inputs": {}, "hub_pins": {"hf://a/b/g.yaml": "A" * 40}}, "invalid_pin"),
    ({"graph": bundle(), "inputs": {}, "hub_pins": {"hf://a/b/g.yaml": 5}}, "bad_recipe"),
    ({"graph": bundle(), "inputs": {}, "hub_pins": ["x"]}, "bad_recipe"),
    ({"graph": bundle(), "inputs": {}, "source": "hf://a/b@main/g.yaml"}, "invalid_pin"),
    ({"graph": bundle(), "inputs": {}, "source": "hf://a/b@%2Fetc%2Fpasswd/g.yaml"}, "invalid_pin"),
    ({"graph": bundle(), "inputs": [1]}, "bad_recipe"),
    ({"graph": bundle(), "inputs": {}, "fast": "yes"}, "bad_recipe"),
    ({"graph": [1], "inputs": {}}, "bad_recipe"),
    ({"graph": bundle(main=["g.yaml"]), "inputs": {}}, "bad_bundle"),
    ({"inputs": {}}, "bad_recipe"),
])
def test_a_hostile_recipe_is_refused_with_a_code(recipe, code):
    with pytest.raises(BundleError) as caught:
        check_recipe(recipe)
    assert caught.value.code == code, str(caught.value)


def test_a_recipe_pinned_to_commits_is_accepted():
    recipe = {"graph": bundle(), "inputs": {"a": 1}, "hub_pins": {"hf://a/b/g.yaml": COMMIT},
              "output": "image", "dtype": "fp32", "fast": True}
    assert check_recipe(recipe)["hub_pins"] == {"hf://a/b/g.yaml": COMMIT}
    assert check_recipe({**recipe, "source": f"hf://a/b@{COMMIT}/g.yaml"})["source"].endswith("/g.yaml")


def png_declaring(path, width, height, text=None):
    """A valid PNG of width × height gray pixels, all zero, written chunk by chunk (the zlib stream of a
    9000² image is about 90 kB): small on disk, huge once decoded."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    squeeze, row, body = zlib.compressobj(9), b"\x00" * (width + 1), b""
    for _ in range(height):
        body += squeeze.compress(row)
    body += squeeze.flush()
    extra = b"".join(chunk(b"tEXt", k.encode() + b"\x00" + v.encode()) for k, v in (text or {}).items())
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
                     + extra + chunk(b"IDAT", body) + chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="module")
def huge_png(tmp_path_factory):
    return png_declaring(tmp_path_factory.mktemp("png") / "huge.png", 9000, 9000,
                         {"nodegraph": '{"graph": {}, "inputs": {}}'})  # 81 MP: over the 67 MP default


def test_an_image_over_the_pixel_limit_is_refused_from_its_header(huge_png, tmp_path, capsys):
    import torch  # noqa: F401  (imported before measuring: only the refusal is measured)

    from nodegraph.cli import main

    assert huge_png.stat().st_size < 200_000
    graph = tmp_path / "g.yaml"
    graph.write_text(f"nodes:\n  i: {{type: LoadImage, path: '{huge_png}'}}\noutputs: {{image: $i.image}}\n")
    assert main(["run", str(graph), "--out", str(tmp_path / "out"), "-q"]) == 1
    err = capsys.readouterr().err
    assert "9000×9000 = 81,000,000 pixels, over the limit of 67,108,864" in err and "internal error" not in err
    loaded = loads_graph(graph.read_text())
    tracemalloc.start()
    try:
        with pytest.raises(Exception, match="over the limit"):
            loaded.run()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50 * 2**20  # decoding would allocate 1 GB of float32 pixels (numpy is traced)


def test_a_mask_over_the_pixel_limit_is_refused(huge_png):
    from nodegraph.nodes.inpaint import _read

    with pytest.raises(ValueError, match="`mask`: .* over the limit"):
        _read(str(huge_png), "mask")


def test_a_png_recipe_over_the_pixel_limit_is_refused_before_decoding(huge_png):
    with pytest.raises(InputRefused) as caught:
        read_png_recipe(huge_png)
    assert caught.value.code == "image_too_large"


def test_the_pixel_limit_is_raised_by_the_environment(tmp_path, monkeypatch):
    from nodegraph.nodes.image import read_image

    small = png_declaring(tmp_path / "s.png", 64, 64)
    monkeypatch.setenv("NODEGRAPH_MAX_IMAGE_PIXELS", "4000")
    with pytest.raises(ValueError, match="over the limit of 4,000"):
        read_image(str(small), "path")
    monkeypatch.setenv("NODEGRAPH_MAX_IMAGE_PIXELS", "4096")
    assert read_image(str(small), "path").size == (64, 64)


def test_an_upload_over_the_pixel_limit_is_refused_from_its_header(huge_png):
    fastapi = pytest.importorskip("fastapi")
    from nodegraph.serve.uploads import _checked_image

    def reject(code, where, message, hint, status):
        return fastapi.HTTPException(status, f"{code}: {message}")

    with pytest.raises(fastapi.HTTPException) as caught:
        _checked_image(huge_png.read_bytes(), reject)
    assert caught.value.status_code == 422 and "image_too_large" in caught.value.detail


def test_a_recipe_in_a_png_is_read_checked(tmp_path):
    info = PIL.PngImagePlugin.PngInfo()
    info.add_text("nodegraph", '{"graph": {"format": 1, "main": ["g.yaml"], "files": {}}, "inputs": {}}')
    path = tmp_path / "r.png"
    PIL.Image.new("RGB", (8, 8)).save(path, pnginfo=info)
    with pytest.raises(BundleError):
        read_png_recipe(path)
    info = PIL.PngImagePlugin.PngInfo()
    info.add_text("nodegraph", '{"graph": ' + str(bundle()).replace("'", '"') + ', "inputs": {"n": '
                  + "9" * 5000 + "}}")
    PIL.Image.new("RGB", (8, 8)).save(path, pnginfo=info)
    with pytest.raises(BundleError, match="5,000 characters"):
        read_png_recipe(path)


def fifo_with_a_rescue(path):
    """A FIFO, and a function that unblocks a reader stuck on it (so a failing test ends instead of hanging)."""
    import os

    os.mkfifo(path)

    def rescue():
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)  # succeeds only while a reader has it open
        os.close(fd)
    return rescue


def run_guarded(argv, rescue):
    """main(argv) in a thread; if it is still blocked after 30 s, unblock it and fail (a FIFO read)."""
    import threading

    from nodegraph.cli import main

    result = []
    thread = threading.Thread(target=lambda: result.append(main(argv)), daemon=True)
    thread.start()
    thread.join(30)
    if thread.is_alive():
        try:
            rescue()
        except OSError:
            pass
        thread.join(30)
        pytest.fail(f"{argv} blocked on a FIFO")
    return result[0]


@pytest.mark.parametrize("command", ["validate", "show", "run"])
@pytest.mark.parametrize("name", ["pipe.yaml", "pipe.json"])
def test_a_fifo_is_refused_without_blocking(tmp_path, capsys, command, name):
    rescue = fifo_with_a_rescue(tmp_path / name)
    assert run_guarded([command, str(tmp_path / name)], rescue) == 2
    err = capsys.readouterr().err
    assert "pipe" in err and "not a regular file" in err and "internal error" not in err


@pytest.mark.parametrize("command", ["validate", "run"])
def test_dev_zero_and_links_to_it_are_refused_without_reading(tmp_path, capsys, command):
    from nodegraph.cli import main

    (tmp_path / "zero.yaml").symlink_to("/dev/zero")
    for target in ("/dev/zero", str(tmp_path / "zero.yaml")):
        assert main([command, target]) == 2
        err = capsys.readouterr().err
        assert "a device, not a regular file" in err and "internal error" not in err


def test_a_malformed_limit_in_the_environment_is_a_clear_error(tmp_path, monkeypatch, capsys):
    from nodegraph.cli import main

    (tmp_path / "g.yaml").write_text(GRAPH)
    monkeypatch.setenv("NODEGRAPH_MAX_LIST_LENGTH", "lots")
    assert main(["validate", str(tmp_path / "g.yaml")]) == 2
    err = capsys.readouterr().err
    assert "NODEGRAPH_MAX_LIST_LENGTH='lots' is not a positive whole number" in err and "internal" not in err


def test_an_image_over_pils_own_limit_is_refused_as_too_large_without_a_warning(tmp_path, recwarn):
    from nodegraph.nodes.image import read_image

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path = tmp_path / "bomb.png"  # 20000x20000 declared in the header: PIL itself refuses past 179 MP
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 20000, 20000, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\0" * 20001)) + chunk(b"IEND", b""))
    with pytest.raises(InputRefused) as caught:
        read_png_recipe(path)
    assert caught.value.code == "image_too_large"
    with pytest.raises(ValueError, match="over the limit of 67,108,864"):
        read_image(str(path), "path")
    assert not [w for w in recwarn if "DecompressionBomb" in type(w.message).__name__]
