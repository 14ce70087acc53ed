"""A read-only artifact cache shared between shards of one night (or handed from one night to the next).

Artifacts are keyed by content (:class:`harness.build.artifacts.ArtifactStore`: weights, architecture source,
input shape, calibration images, tool versions), so an artifact another machine built from the same inputs is
the same artifact, and a shard that finds it here never rebuilds it. The cache is a folder (another store's
``artifacts`` folder, e.g. on a network share, mounted read-only) or an archive of one (``.tar``, ``.tar.gz``:
what a CI job uploads). Nothing is ever written into it: a folder is read in place; from an archive the one
artifact asked for is extracted into the local store (a scratch folder renamed into place, as a build is), so the
shard keeps it for its later sessions. Every artifact taken from it is verified first (the hash and size of each
file against its manifest); one that fails is refused, naming it, and built locally.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
import warnings
from pathlib import Path, PurePosixPath

from .artifact import Artifact
from .verified import MANIFEST, CacheWarning, Verified, artifact_problem


class SharedCacheError(ValueError):
    """A shared cache that cannot be read; the message names the path and the problem."""


class SharedCache:
    """One shared cache: a store's artifacts folder, or a tar archive of one (its folders at the top level or
    under a single ``artifacts/``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._verified: Verified = {}
        if path.is_dir():
            self._members: dict[str, str] | None = None
        elif path.is_file() and tarfile.is_tarfile(path):
            self._members = self._index(path)
        else:
            raise SharedCacheError(f"shared artifact cache {path}: neither a folder nor a tar archive")

    @staticmethod
    def _index(path: Path) -> dict[str, str]:
        """Artifact folder name -> its prefix inside the archive, for folders that hold a manifest."""
        try:
            with tarfile.open(path) as archive:
                names = archive.getnames()
        except (tarfile.TarError, OSError) as error:
            raise SharedCacheError(f"shared artifact cache {path}: unreadable archive ({error})") from None
        found = {}
        for name in names:
            parts = PurePosixPath(name).parts
            if parts and parts[-1] == MANIFEST and len(parts) >= 2:
                found[parts[-2]] = "/".join(parts[:-1])
        return found

    def find(self, folder_name: str, filename: str, local_root: Path) -> Artifact | None:
        """The artifact stored under ``folder_name`` when every file is the one its manifest records, or None: absent,
        or refused (a :class:`~harness.build.verified.CacheWarning` names it; the cache is read-only, so it is left as
        it is and the artifact is built locally)."""
        if self._members is None:
            folder = self.path / folder_name
            if not folder.is_dir():
                return None
            return Artifact.from_dir(folder, filename) if self._accepted(folder, folder, filename) else None
        prefix = self._members.get(folder_name)
        if prefix is None:
            return None
        return self._extract(prefix, folder_name, filename, local_root)

    def _accepted(self, folder: Path, named: Path, filename: str) -> bool:
        """Whether the artifact in ``folder`` (shown as ``named``) passes its verification; a refusal is warned."""
        problem = artifact_problem(folder, filename, self._verified)
        if problem is not None:
            warnings.warn(CacheWarning(f"{named}: artifact in the read-only shared cache {self.path} refused: "
                                       f"{problem}; building it locally"), stacklevel=4)
        return problem is None

    def _extract(self, prefix: str, folder_name: str, filename: str, local_root: Path) -> Artifact | None:
        local_root.mkdir(parents=True, exist_ok=True)
        target = local_root / folder_name
        scratch = Path(tempfile.mkdtemp(prefix=".shared-", dir=local_root))
        try:
            with tarfile.open(self.path) as archive:
                members = [m for m in archive.getmembers() if m.name == prefix or m.name.startswith(prefix + "/")]
                for member in members:
                    member.name = member.name[len(prefix):].lstrip("/")
                archive.extractall(scratch, members=[m for m in members if m.name], filter="data")
            if not self._accepted(scratch, Path(f"{self.path}:{prefix}"), filename):
                return None
            if not target.exists():  # another process may have put it there meanwhile: theirs is the same content
                os.replace(scratch, target)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return Artifact.from_dir(target, filename)
