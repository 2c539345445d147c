"""The one exception for bad dataset input."""


class DatasetFormatError(ValueError):
    """A dataset file is malformed; the message names the file, the annotation (or image) id and what
    is wrong.
    ``kind`` names the problem for reports that count them (e.g. ``missing_image``)."""

    def __init__(self, message: str, kind: str = "format_error") -> None:
        super().__init__(message)
        self.kind = kind
