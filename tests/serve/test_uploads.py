"""POST /inputs: an uploaded image is kept under <data>/inputs and its path is accepted by file inputs."""

import io
import pathlib

import httpx
from PIL import Image


def png_bytes(colour="red", size=(16, 16)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def test_an_uploaded_image_is_stored_once_under_data_inputs(server):
    data = png_bytes()
    first = httpx.post(f"{server.url}/inputs", content=data, headers={**server.headers, "content-type": "image/png"})
    assert first.status_code == 201, first.text
    stored = first.json()
    path = pathlib.Path(stored["path"])
    assert path.parent == (server.data / "inputs").resolve()
    assert path.read_bytes() == data
    assert (stored["width"], stored["height"], stored["format"]) == (16, 16, "png")
    again = httpx.post(f"{server.url}/inputs", content=data, headers=server.headers)
    assert again.json()["path"] == stored["path"]
    other = httpx.post(f"{server.url}/inputs", content=png_bytes("blue"), headers=server.headers)
    assert other.json()["path"] != stored["path"]
    assert not list(path.parent.glob(".*.part"))


def test_an_upload_that_is_not_an_image_or_has_no_token_is_refused(server):
    garbage = httpx.post(f"{server.url}/inputs", content=b"nodegraph: 1\n", headers=server.headers)
    assert garbage.status_code == 422 and garbage.json()["errors"][0]["code"] == "not_an_image"
    truncated = httpx.post(f"{server.url}/inputs", content=png_bytes()[:60], headers=server.headers)
    assert truncated.status_code == 422
    empty = httpx.post(f"{server.url}/inputs", content=b"", headers=server.headers)
    assert empty.status_code == 400
    assert httpx.post(f"{server.url}/inputs", content=png_bytes()).status_code == 401


def test_an_uploaded_path_is_accepted_by_an_image_input(server, client):
    stored = httpx.post(f"{server.url}/inputs", content=png_bytes("white", (32, 32)), headers=server.headers).json()
    handle = client.submit("img2img", inputs={"model": "builtin:digits", "image": stored["path"], "steps": 2})
    assert handle.result()["image"][0]["file"].endswith(".png")
