"""NumPy ``.npy`` files that hold pickled objects, read without running code.

``np.save`` of a dict (descript-audio-codec's ``.dac`` files, YourMT3's note-event files) writes a
pickle that only ever needs NumPy's array and dtype constructors. :func:`load_npy` reads such a
file with an unpickler that resolves exactly those names and refuses every other one, so a
crafted file cannot import or call anything (``np.load(allow_pickle=True)`` would run it).
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

from umt.errors import InputError

ALLOWED_GLOBALS = frozenset(
    {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }
)
"""The only names a pickled array of plain values refers to (NumPy 1 and 2 spellings)."""

MAX_NPY_BYTES = 1 << 30
"""Larger files are refused before reading (a token file is a few MB)."""


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused to load {module}.{name} (only NumPy arrays are read)")


def load_npy(path: str | Path) -> Any:
    """The value an ``np.save`` file holds (an array, or for an object array its pickled value:
    a dict, a list ...), with arrays and plain Python values only.

    Raises :class:`InputError` naming the file when it is missing, too large, not ``.npy``, or its
    pickle names anything but NumPy's array constructors.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("no such file", path)
    if path.stat().st_size > MAX_NPY_BYTES:
        raise InputError(f"larger than {MAX_NPY_BYTES >> 20} MiB; refused", path)
    try:
        with path.open("rb") as handle:
            version = np.lib.format.read_magic(handle)
            read_header = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            _, _, dtype = read_header(handle)
            if not dtype.hasobject:
                handle.seek(0)
                return np.lib.format.read_array(handle, allow_pickle=False)
            value = _ArraysOnly(handle).load()
    except pickle.UnpicklingError as error:
        raise InputError(f"unsafe or corrupt pickle ({error})", path) from None
    except (ValueError, EOFError, OSError, TypeError, AttributeError, IndexError) as error:
        raise InputError(f"not a readable .npy file ({type(error).__name__}: {error})", path) from None
    if isinstance(value, np.ndarray) and value.dtype.hasobject and value.shape == ():
        return value.item()  # np.save of a dict: a 0-d object array around it
    return value
