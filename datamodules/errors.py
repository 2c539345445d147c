"""The one exception for bad dataset input."""


class DatasetFormatError(ValueError):
    """A dataset file is malformed; the message names the file, the annotation (or image) id and what is wrong."""
