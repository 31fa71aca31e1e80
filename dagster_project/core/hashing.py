"""Content identities: file and folder hashes and cache keys.

One module, so that probing, the text encoders and the cache agree on what "the same content"
means. (What changed under the raw folder, for automation, is dataset/arrivals.py.)
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in chunks."""
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def folder_sha256(folder: Path) -> str:
    """Identity of a folder (a model): the hash of every file's relative name and bytes."""
    digest = hashlib.sha256()
    for file in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(file.relative_to(folder).as_posix().encode())
        digest.update(bytes.fromhex(sha256_file(file)))
    return digest.hexdigest()


def cache_key(**parts: object) -> str:
    """A stable hex key for the given named parts (order-insensitive)."""
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()
