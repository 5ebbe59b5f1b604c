"""Atomic files, output directories and manifests (DESIGN.md section 4).

Every stage writes into a staging directory beside its output and renames it into
place at the end, so an interrupted stage leaves either the previous complete
output or nothing. `manifest.json` is written last; a directory without one is
incomplete.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pangu_cli import __version__
from pangu_cli.errors import UserError

MANIFEST = "manifest.json"


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write to a temporary name, fsync, rename: readers see the old file or the new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def file_fingerprint(path: str | Path) -> str:
    """sha256 of a file's bytes, as 'sha256:<hex>'."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return "sha256:" + h.hexdigest()


def input_fingerprint(path: str | Path) -> str:
    """Fingerprint of a stage input: a file's hash, or a complete directory's manifest hash."""
    path = Path(path)
    if path.is_dir():
        manifest = path / MANIFEST
        if manifest.exists():
            return file_fingerprint(manifest)
        h = hashlib.sha256()
        for f in sorted(p for p in path.rglob("*") if p.is_file()):
            h.update(str(f.relative_to(path)).encode())
            h.update(file_fingerprint(f).encode())
        return "sha256:" + h.hexdigest()
    return file_fingerprint(path)


def read_manifest(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / MANIFEST
    if not Path(directory).is_dir():
        raise UserError(f"{directory}: no such directory")
    if not path.exists():
        raise UserError(f"{directory}: no {MANIFEST}; the stage that writes it did not finish")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not valid JSON ({e})") from None


def write_manifest(
    directory: str | Path,
    *,
    stage: str,
    config: dict[str, Any],
    inputs: Iterable[str | Path] = (),
    outputs: Iterable[str] = (),
    counts: dict[str, Any] | None = None,
    wall_time_s: float,
    **extra: Any,
) -> dict[str, Any]:
    """Write `manifest.json` atomically; call it last, after every output is in place."""
    directory = Path(directory)
    manifest = {
        "stage": stage,
        "version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "config": config,
        "inputs": [{"path": str(p), "fingerprint": input_fingerprint(p)} for p in inputs],
        "outputs": sorted(outputs),
        "counts": counts or {},
        "wall_time_s": round(wall_time_s, 3),
        **extra,
    }
    atomic_write_json(directory / MANIFEST, manifest)
    return manifest


class StagedOutput:
    """An output directory built aside and swapped into place when complete.

    with StagedOutput(out, force) as staging:
        ...write files under staging...
        staging.commit()   # after write_manifest(staging.path, ...)
    """

    def __init__(self, out: str | Path, force: bool = False) -> None:
        self.out = Path(out)
        if self.out.exists() and not self.out.is_dir():
            raise UserError(f"{self.out}: exists and is not a directory")
        if (self.out / MANIFEST).exists() and not force:
            raise UserError(
                f"{self.out}: already holds a complete output; pass --force to replace it"
            )
        if self.out.exists() and any(self.out.iterdir()) and not (self.out / MANIFEST).exists():
            if not force:
                raise UserError(
                    f"{self.out}: not empty and holds no {MANIFEST}; "
                    "pass --force to replace it, or choose another --out"
                )
        self.path = self.out.with_name(f".{self.out.name}.staging-{os.getpid()}")
        self.committed = False

    def __enter__(self) -> StagedOutput:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            shutil.rmtree(self.path)
        self.path.mkdir()
        return self

    def commit(self) -> None:
        """Swap the staging directory in; the old output stays until the new one is whole."""
        fsync_dir(self.path)
        old = None
        if self.out.exists():
            old = self.out.with_name(f".{self.out.name}.old-{os.getpid()}")
            os.replace(self.out, old)
        os.replace(self.path, self.out)
        fsync_dir(self.out.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        self.committed = True

    def __exit__(self, *exc: object) -> None:
        if not self.committed:
            shutil.rmtree(self.path, ignore_errors=True)
