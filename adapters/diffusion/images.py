"""Image files of samples: the formats :func:`.digits.save_grid` writes, from a file's
extension. No torch or diffusers: ``parareal sample`` checks ``--out`` before it loads them.
Re-exported by :mod:`.digits`, where it is documented.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any

from ._extra import missing

__all__ = ["IMAGE_EXTENSIONS", "image_format"]


#: Image formats :func:`save_grid` writes, by file extension (where Pillow can write them).
IMAGE_EXTENSIONS: dict[str, str] = {
    ".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP", ".gif": "GIF",
    ".tif": "TIFF", ".tiff": "TIFF", ".webp": "WEBP",
}
#: Options passed to Pillow per format: near-lossless JPEG, lossless WebP.
_SAVE_OPTIONS: dict[str, dict[str, Any]] = {"JPEG": {"quality": 95}, "WEBP": {"lossless": True}}


def _pillow() -> Any:
    try:
        from PIL import Image
    except ImportError as err:
        raise missing("Pillow", "writing images", err) from err
    return Image


def image_format(path: str | os.PathLike[str]) -> str:
    """The Pillow format that :func:`save_grid` writes to ``path``, from its extension.

    Parameters
    ----------
    path : path
        The image file; its extension (any case) names the format: ``.png``, ``.jpg`` /
        ``.jpeg`` (quality 95), ``.bmp``, ``.gif``, ``.tif`` / ``.tiff``, ``.webp``
        (lossless), each where the installed Pillow can write it.

    Returns
    -------
    str
        The Pillow format name, e.g. ``"PNG"``.

    Raises
    ------
    TypeError
        ``path`` is not a string or path.
    ValueError
        ``path`` is empty, or has no extension or one of another format; the message lists
        the supported extensions.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"the image path must be a string or path, got {type(path).__name__}")
    name = os.fspath(path)
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"the image path must be a non-empty file name, got {name!r}")
    image = _pillow()
    savable = image.registered_extensions()
    supported = {ext: fmt for ext, fmt in IMAGE_EXTENSIONS.items()
                 if savable.get(ext) == fmt and fmt in image.SAVE}
    suffix = pathlib.Path(name).suffix.lower()
    if suffix not in supported:
        what = f"extension {suffix!r}" if suffix else "no extension"
        raise ValueError(
            f"cannot write an image to {name!r}: {what}; supported: {', '.join(supported)}"
        )
    return supported[suffix]
