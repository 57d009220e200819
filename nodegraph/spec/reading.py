"""Reading files and JSON from strangers within the limits (spec/limits.py): regular files only, a bounded
number of bytes whatever the file system claims, JSON numbers of bounded length.

`st_size` is not trusted: /dev/zero reports 0 bytes and never ends, a FIFO blocks the reader forever, a file
may grow while it is read. So a file is opened without blocking, refused unless it is a regular file, and
read up to one byte past the limit.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import warnings
from typing import Any, BinaryIO, Optional

from nodegraph.spec.limits import InputRefused, Limits, active_limits


def open_regular(path: str | os.PathLike, shown: Optional[str] = None) -> BinaryIO:
    """`path` opened for binary reading; InputRefused unless it is a regular file (symlinks followed)."""
    shown = shown or os.fspath(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise InputRefused("file_not_found", f"no such file: {shown}", "check the path") from None
    except IsADirectoryError:
        raise InputRefused("not_a_file", f"{shown} is a folder, not a file", "name a file") from None
    except OSError as exc:
        raise InputRefused("unreadable_file", f"cannot read {shown} ({(exc.strerror or 'error').lower()})",
                           "") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = ("a folder" if stat.S_ISDIR(mode) else "a pipe" if stat.S_ISFIFO(mode)
                    else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file")
            raise InputRefused("not_a_file", f"{shown} is {kind}, not a regular file",
                               "only regular files are read (not pipes, devices or sockets)")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _read_at_most(f: BinaryIO, n: int) -> bytes:
    """Up to `n` bytes, read in 1 MiB pieces (f.read(n) would allocate all `n` bytes up front)."""
    parts, total = [], 0
    while total < n:
        part = f.read(min(1 << 20, n - total))
        if not part:
            break
        parts.append(part)
        total += len(part)
    return b"".join(parts)


def read_limited(path: str | os.PathLike, limit: int, shown: Optional[str] = None, what: str = "file",
                 limit_name: str = "max_input_bytes") -> bytes:
    """At most `limit` bytes of the regular file `path`; InputRefused if it holds more."""
    shown = shown or os.fspath(path)
    with open_regular(path, shown) as f:
        data = _read_at_most(f, limit + 1)
    if len(data) > limit:
        raise InputRefused("file_too_large", f"{shown} holds more than {limit:,} bytes, over the limit for a "
                           f"{what}", f"raise it with NODEGRAPH_{limit_name.upper()} if this file is genuine")
    return data


def read_document(path: str | os.PathLike, limit: int, shown: str) -> str:
    """The UTF-8 text of a graph file: a regular file of at most `limit` bytes (codes document_too_large,
    file_not_found, not_a_file, unreadable_file)."""
    with open_regular(path, shown) as f:
        size = os.fstat(f.fileno()).st_size
        data = _read_at_most(f, limit + 1) if size <= limit else b""
    if size > limit or len(data) > limit:
        raise InputRefused("document_too_large", f"{shown} is {max(size, len(data)):,}{'+' if size <= limit else ''}"
                           f" bytes, over the limit of {limit:,} for a graph file", "a graph file is a few kilobytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputRefused("unreadable_file", f"cannot read {shown}: not UTF-8 text ({exc.reason} at byte "
                           f"{exc.start})", "save the file as UTF-8") from None


class JsonProblem(InputRefused):
    """Malformed or oversized JSON; `line` and `col` (1-based) locate it."""

    def __init__(self, message: str, line: int = 1, col: int = 1, hint: str = ""):
        super().__init__("malformed_json", message, hint)
        self.line, self.col = line, col


def load_json(text: str | bytes, limits: Optional[Limits] = None) -> Any:
    """json.loads with every number's length bounded; JsonProblem (located) for anything malformed."""
    limits = limits or active_limits()
    longest = limits.max_json_number_chars

    def number(kind):
        def parse(token: str):
            if len(token) > longest:
                raise _NumberTooLong(token)
            return kind(token)
        return parse

    try:
        return json.loads(text, parse_int=number(int), parse_float=number(float))
    except _NumberTooLong as exc:
        where = _locate(text, exc.token)
        raise JsonProblem(f"a number of {len(exc.token):,} characters (the limit is {longest})", *where,
                          hint=f"raise it with NODEGRAPH_MAX_JSON_NUMBER_CHARS if genuine") from None
    except json.JSONDecodeError as exc:
        raise JsonProblem(f"malformed JSON: {exc.msg}", exc.lineno, exc.colno) from None
    except UnicodeDecodeError as exc:
        raise JsonProblem(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except RecursionError:
        raise JsonProblem("JSON nested too deeply") from None
    except ValueError as exc:  # anything else json or a number conversion refuses: said without its text
        raise JsonProblem(f"malformed JSON ({type(exc).__name__})") from None


class _NumberTooLong(ValueError):
    def __init__(self, token: str):
        super().__init__("number too long")
        self.token = token


def _locate(text: str | bytes, token: str) -> tuple[int, int]:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    at = text.find(token)
    if at < 0:
        return 1, 1
    line = text.count("\n", 0, at) + 1
    return line, at - (text.rfind("\n", 0, at) + 1) + 1


def check_pixels(width: int, height: int, shown: str, limits: Optional[Limits] = None) -> None:
    """InputRefused if an image of width × height is over `max_image_pixels`."""
    limit = (limits or active_limits()).max_image_pixels
    if width * height > limit:
        raise InputRefused("image_too_large", f"{shown} is {width}×{height} = {width * height:,} pixels, over "
                           f"the limit of {limit:,}", "use a smaller image, or raise the limit with "
                           "NODEGRAPH_MAX_IMAGE_PIXELS")


@contextlib.contextmanager
def open_image(path: str | os.PathLike, shown: Optional[str] = None, limits: Optional[Limits] = None):
    """`with open_image(p) as img:` a PIL image from a regular file, its size checked from the header before
    anything is decoded. InputRefused when it is not a regular file, not an image, or over
    `max_image_pixels`."""
    import PIL.Image

    shown = shown or os.fspath(path)
    with open_regular(path, shown) as f:
        try:
            with warnings.catch_warnings():  # PIL warns from the header alone; the check below decides
                warnings.simplefilter("ignore", PIL.Image.DecompressionBombWarning)
                image = PIL.Image.open(f)
        except PIL.Image.DecompressionBombError:  # over twice PIL's own limit: refused by PIL from the header
            raise InputRefused("image_too_large", f"{shown} declares more than {2 * PIL.Image.MAX_IMAGE_PIXELS:,} "
                               f"pixels, over the limit of {(limits or active_limits()).max_image_pixels:,}",
                               "use a smaller image") from None
        except (OSError, ValueError, SyntaxError) as exc:
            raise InputRefused("not_an_image", f"{shown} cannot be read as an image ({type(exc).__name__})",
                               "give a PNG, JPEG or WebP file") from None
        with image:
            check_pixels(image.width, image.height, shown, limits)
            yield image
