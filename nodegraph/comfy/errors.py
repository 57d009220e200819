"""The one error the ComfyUI import raises: a message that says where (file, node id, input) and what to do."""


class ComfyError(Exception):
    """A workflow that cannot be read, resolved or translated; `str()` is the whole user-facing message."""
