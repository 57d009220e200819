"""`POST /inputs`: an image a run may then name in a file input (img2img's `image`, inpainting's `mask`, ...).

The body is the file's bytes. It is checked to be one image of a common format and a sane size, then kept
as `<data>/inputs/<sha256 prefix>.<ext>` (the same bytes always get the same name, so uploading twice keeps
one file), written to a temporary file and renamed into place: never half-written. The answer's `path` is
absolute and inside `<data>/inputs`, which the server's path rules accept for file ports.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile

from fastapi import Request

FORMATS = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp", "BMP": "bmp", "GIF": "gif"}
MAX_PIXELS = 8192 * 8192  # the default of spec/limits.py's max_image_pixels (NODEGRAPH_MAX_IMAGE_PIXELS raises it)


def add_upload_route(app, service) -> None:
    from nodegraph.serve.documents import reject

    @app.post("/inputs", status_code=201, summary="Upload an image for a file input; answers its server path")
    async def upload(request: Request):
        data = await request.body()
        if not data:
            raise reject("bad_request", "body", "the request has no file", "send the image's bytes as the body",
                         status=400)
        width, height, kind = _checked_image(data, reject)
        folder = service.documents.inputs_dir
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{hashlib.sha256(data).hexdigest()[:32]}.{FORMATS[kind]}"
        if not path.exists():
            handle, temporary = tempfile.mkstemp(dir=folder, prefix=".upload.", suffix=".part")
            with os.fdopen(handle, "wb") as out:
                out.write(data)
            os.replace(temporary, path)
        return {"path": str(path.resolve()), "name": path.name, "width": width, "height": height,
                "format": kind.lower()}


def _checked_image(data: bytes, reject) -> tuple[int, int, str]:
    from PIL import Image

    from nodegraph.spec.limits import active_limits

    try:
        with Image.open(io.BytesIO(data)) as image:  # reads the header only
            kind, (width, height) = image.format, image.size
            if kind not in FORMATS:
                raise reject("unsupported_image", "body", f"{kind} images are not accepted",
                             f"send one of {', '.join(FORMATS)}", status=422)
            limit = active_limits().max_image_pixels  # the graphs' own limit, checked before decoding a pixel
            if width * height > limit:
                raise reject("image_too_large", "body", f"the image is {width}×{height}",
                             f"at most {limit:,} pixels", status=422)
            image.verify()  # the whole file is well formed
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise reject("not_an_image", "body", f"the file is not a readable image ({exc})",
                     "send a PNG, JPEG or WebP file", status=422) from None
    return width, height, kind
