"""The one error type the model loaders raise."""


class CheckpointError(Exception):
    """A checkpoint could not be found, read or fitted to its model.

    The message names the file (or folder, or hub repo) at fault and says what to do about it.
    """
