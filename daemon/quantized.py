"""The int8 copy of the embedding model: made once from the float ONNX file and kept in a cache directory.

onnxruntime's dynamic quantization stores the weights as int8, one scale per output channel (one per tensor
loses too much: cosine to the float vectors 0.953 on average against 0.993), and quantizes activations on
the fly. The file is named for its source (path, size, modification time) and the settings, so another
model or another onnxruntime makes another file. It is written to a temporary name and renamed, so a crash
never leaves a half file under the real name; a file that does not load anyway is made again.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

log = logging.getLogger(__name__)

_SETTINGS = "dynamic QInt8 weights per channel"
_TIMEOUT_S = 600.0  # ~3 s of CPU for MiniLM; a busy machine may take many times that
T = TypeVar("T")


def int8_path(source: Path, directory: Path) -> Path:
    """Where the int8 copy of `source` is kept in `directory`."""
    import onnxruntime

    real = source.resolve()
    stat = real.stat()
    key = f"{real}|{stat.st_size}|{stat.st_mtime_ns}|{_SETTINGS}|onnxruntime {onnxruntime.__version__}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return directory / f"{real.stem}-int8-{digest}.onnx"


def quantize(source: Path, target: Path) -> None:
    """Write the int8 copy of `source` to `target`, whole or not at all.

    In a child process: the quantizer holds the model as protobuf several times over (~200 MiB for a
    moment), which would otherwise stay in the daemon's peak memory.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    fd, partial = tempfile.mkstemp(dir=target.parent, prefix=f".{target.stem}-", suffix=".partial")
    os.close(fd)
    try:
        done = subprocess.run(
            [sys.executable, "-c", _CHILD, str(Path(__file__).resolve().parents[1]), str(source), partial],
            capture_output=True, text=True, timeout=_TIMEOUT_S, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            lines = done.stderr.strip().splitlines() or [f"exit status {done.returncode}"]
            raise RuntimeError(f"quantizing {source} to int8 failed: {lines[-1]}")
        with open(partial, "rb") as written:
            os.fsync(written.fileno())  # on disk before it gets the real name
        os.replace(partial, target)
    finally:
        Path(partial).unlink(missing_ok=True)
    log.info("made the int8 copy of %s in %s (%.1f s)", source, target, time.monotonic() - started)


def open_int8(source: Path, directory: Path, load: Callable[[Path], T]) -> T:
    """`load` the int8 copy of `source`, made first if it is missing, and made again if it does not load."""
    from onnxruntime.capi.onnxruntime_pybind11_state import Fail, InvalidGraph, InvalidProtobuf

    target = int8_path(source, directory)
    if target.is_file():
        try:
            return load(target)
        # A damaged file (a crash of the disk, a copy by hand): it is only a cache, so it is made again.
        except (InvalidProtobuf, InvalidGraph, Fail) as exc:
            log.warning("the int8 model %s does not load (%s): making it again", target, exc)
    quantize(source, target)
    return load(target)


# The child imports this very module (from the directory holding this `daemon` package, whatever its cwd).
_CHILD = "import sys; sys.path.insert(0, sys.argv[1]); from daemon.quantized import _quantize_here as q; q(*sys.argv[2:4])"


def _quantize_here(source: str, target: str) -> None:
    """The child's work."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    logging.disable(logging.WARNING)  # a line per tensor, and advice meant for image models
    quantize_dynamic(source, target, weight_type=QuantType.QInt8, per_channel=True)
