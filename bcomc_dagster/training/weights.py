"""The identity of a set of weights: content hashes, and the record a cached base folder keeps of its
origin."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

BASE_META = "bcomc_base.json"  # in a base folder this project built or converted: where it came from


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def weights_fingerprint(folder: Path) -> str:
    """Hash of every safetensors file in a folder: the identity of a set of weights."""
    h = hashlib.sha256()
    files = sorted(Path(folder).glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{folder}: no .safetensors weights")
    for f in files:
        h.update(f.name.encode())
        h.update(file_sha256(f).encode())
    return h.hexdigest()[:16]


def base_name(folder: Path) -> str:
    """The name a base folder was made for (``bcomc-tiny``, ``smollm2-135m``), else its path."""
    meta = Path(folder) / BASE_META
    return json.loads(meta.read_text())["name"] if meta.is_file() else str(folder)
