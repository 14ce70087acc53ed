"""Cached files verified when they are used, not only when they were written.

A cache outlives the process that filled it: a disk error, an interrupted copy, a hand edit or another tool can change
a weight file or an artifact long after it was hashed at download or build. So every cached file is checked against
the hash recorded for it each time a run takes it:

* a weight file against its pinned SHA-256 (:func:`sha256_of`, cheap: the hash is kept in a sidecar beside the file
  with the size and modification time it was computed at, and recomputed only when those change);
* an artifact folder against the hash and size of every file its manifest records (:func:`artifact_problem`), once
  per session while its files stay as they were (a session asks for the same artifact several times).

A file whose hash differs is never used: the caller fetches or builds it again, or refuses it where it may not
write (a read-only shared cache), and says which file it was (:class:`CacheWarning`).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"
#: Suffix of the sidecar that keeps a file's SHA-256 with the size and mtime it was computed at.
SIDECAR = ".sha256.json"


class CacheWarning(UserWarning):
    """A cached file failed its verification and was fetched or built again (or refused); the message names it."""


def file_sha256(path: Path) -> str:
    """The SHA-256 of ``path``'s bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _signature(path: Path) -> dict[str, int]:
    stat = path.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def sha256_of(path: Path) -> str:
    """``path``'s SHA-256, from its sidecar when the file's size and mtime are still those it was computed at, else
    computed again and the sidecar rewritten (left alone where the folder is read-only: then it is computed each
    time)."""
    sidecar = path.with_name(path.name + SIDECAR)
    signature = _signature(path)
    try:
        recorded = json.loads(sidecar.read_text(encoding="utf-8"))
        if isinstance(recorded, dict) and {k: recorded.get(k) for k in signature} == signature:
            return str(recorded["sha256"])
    except (OSError, ValueError, KeyError):
        pass
    digest = file_sha256(path)
    if _signature(path) == signature:  # not changed while it was read
        try:
            sidecar.write_text(json.dumps({"sha256": digest, **signature}), encoding="utf-8")
        except OSError:
            pass
    return digest


def forget(path: Path) -> None:
    """Remove ``path`` and its sidecar (a file that failed verification, before it is fetched again)."""
    for stale in (path, path.with_name(path.name + SIDECAR)):
        stale.unlink(missing_ok=True)


# --------------------------------------------------------------------------- artifacts


def file_records(folder: Path) -> dict[str, dict[str, Any]]:
    """The SHA-256 and size of every file of an artifact folder but its manifest, by path relative to the folder:
    what the manifest records when the artifact is built."""
    return {path.relative_to(folder).as_posix(): {"sha256": file_sha256(path), "size": path.stat().st_size}
            for path in sorted(folder.rglob("*")) if path.is_file() and path.name != MANIFEST}


#: Artifact folder -> the (name, size, mtime, inode) of each of its files when it was last verified: one store (one
#: session) asks for the fp32 export once per precision built from it, and need not hash it each time.
Verified = dict[str, tuple[tuple[str, int, int, int], ...]]


def _stats(folder: Path, names: list[str]) -> tuple[tuple[str, int, int, int], ...]:
    stats = []
    for name in names:
        stat = (folder / name).stat()
        stats.append((name, stat.st_size, stat.st_mtime_ns, stat.st_ino))
    return tuple(stats)


def artifact_problem(folder: Path, filename: str, verified: Verified) -> str | None:
    """What is wrong with the artifact stored in ``folder`` (its manifest unreadable, a file missing, of another size
    or another SHA-256 than the manifest records, or no hashes recorded at all), or None when every file is the one
    that was built. ``filename`` (the file a runtime loads) must be among the recorded files. ``verified``: the
    folders this session verified already, skipped while their files' size, mtime and inode stay the same."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return f"no {MANIFEST}"
    except (OSError, ValueError) as error:
        return f"{MANIFEST} is unreadable ({error})"
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict) or not files:
        return f"{MANIFEST} records no file hashes (built by an older segconform, or not a manifest of this cache)"
    if filename not in files:
        return f"{MANIFEST} records no {filename}"
    names = sorted(files)
    for name in names:
        if not (folder / name).is_file():
            return f"{name} is missing"
    stats = _stats(folder, names)
    if verified.get(str(folder)) == stats:
        return None
    for name in names:
        recorded, path = files[name], folder / name
        size = path.stat().st_size
        if size != recorded.get("size"):
            return f"{name} has {size} bytes, {MANIFEST} records {recorded.get('size')}"
        actual = file_sha256(path)
        if actual != recorded.get("sha256"):
            return f"{name} has SHA-256 {actual}, {MANIFEST} records {recorded.get('sha256')}"
    verified[str(folder)] = stats
    return None


def remember_verified(folder: Path, verified: Verified) -> None:
    """Note an artifact this session has just built and hashed, so its first use does not hash it again."""
    try:
        files = json.loads((folder / MANIFEST).read_text(encoding="utf-8")).get("files", {})
        verified[str(folder)] = _stats(folder, sorted(files))
    except (OSError, ValueError):
        pass


def moved_aside(path: Path) -> None:
    """Remove a corrupt folder without leaving it half-deleted under its name: renamed first, then deleted."""
    import shutil
    import tempfile

    if not path.exists():
        return
    stale = Path(tempfile.mkdtemp(prefix=".stale-", dir=path.parent))
    os.replace(path, stale / path.name)
    shutil.rmtree(stale, ignore_errors=True)
