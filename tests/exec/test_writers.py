import pytest
import torch
from PIL import Image as PILImage

from nodegraph.core.types import PortType
from nodegraph.exec.writers import IMAGE_WRITER, OutputError, OutputInfo, write_atomic, writer_for

IMAGE = PortType("Image")


def info(name="image"):
    return OutputInfo(name, IMAGE, inputs={"prompt": "a cat"})


def test_a_batch_is_written_as_numbered_pngs(tmp_path):
    batch = torch.zeros(2, 3, 4, 5)
    batch[1, 0] = 1.0
    paths = writer_for(IMAGE, batch).write(batch, tmp_path, info())
    assert [p.name for p in paths] == ["image_0.png", "image_1.png"]
    red = PILImage.open(paths[1])
    assert red.size == (5, 4) and red.getpixel((0, 0)) == (255, 0, 0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["image_0.png", "image_1.png"]


def test_existing_files_are_never_overwritten(tmp_path):
    image = torch.ones(1, 3, 2, 2)
    (tmp_path / "image.png").write_bytes(b"keep me")
    first = IMAGE_WRITER.write(image, tmp_path, info())
    second = IMAGE_WRITER.write(image, tmp_path, info())
    assert [p.name for p in first + second] == ["image-2.png", "image-3.png"]
    assert (tmp_path / "image.png").read_bytes() == b"keep me"
    with pytest.raises(OutputError, match="never overwrites"):
        write_atomic(tmp_path / "image.png", lambda f: f.write(b"x"))


def test_metadata_hooks_add_png_text(tmp_path, monkeypatch):
    monkeypatch.setattr(IMAGE_WRITER, "metadata_hooks", [lambda i, index: {"prompt": i.inputs["prompt"],
                                                                              "index": index}])
    (path,) = IMAGE_WRITER.write([PILImage.new("RGB", (2, 2))], tmp_path, info())
    assert PILImage.open(path).text == {"prompt": "a cat", "index": "0"}


def test_a_failed_write_leaves_no_file(tmp_path):
    def explode(f):
        f.write(b"half")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        write_atomic(tmp_path / "x.png", explode)
    assert list(tmp_path.iterdir()) == []


def test_a_value_that_is_no_image_is_refused_clearly(tmp_path):
    with pytest.raises(OutputError, match="declared Image"):
        IMAGE_WRITER.write(torch.zeros(1, 4, 2, 2), tmp_path, info())
    assert writer_for(PortType("float"), 1.0) is None


def test_outputs_get_the_users_file_mode_not_the_temporary_files(tmp_path):
    import os

    previous = os.umask(0o022)
    try:
        path = IMAGE_WRITER.write(torch.ones(1, 3, 2, 2), tmp_path, info())[0]
        os.umask(0o077)
        private = IMAGE_WRITER.write(torch.ones(1, 3, 2, 2), tmp_path, info())[0]
    finally:
        os.umask(previous)
    assert path.stat().st_mode & 0o777 == 0o644
    assert private.stat().st_mode & 0o777 == 0o600
