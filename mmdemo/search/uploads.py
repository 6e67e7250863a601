"""Uploaded files -> image files to index: plain images as they are, .zip archives unpacked safely."""

from __future__ import annotations

import contextlib
import zipfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from mmdemo.embedding.images import MEDIA_SUFFIXES, Skipped
from mmdemo.embedding.ingest import ImageFile
from mmdemo.errors import UserFacingError


def expand_uploads(
    paths: Sequence[str | Path], workdir: Path, max_files: int, max_zip_bytes: int, max_members: int = 10_000
) -> tuple[list[ImageFile], list[Skipped]]:
    """Images to index and files left out. Archives are unpacked into `workdir`.

    A zip member is only ever written below `workdir` under a flat generated name (no path from
    the archive is trusted). The member count is read from the archive's last record before its
    directory is parsed (a million-entry directory costs memory in itself), and the declared
    sizes are checked against `max_zip_bytes` before anything is extracted; extraction stops at
    that many bytes anyway, whatever the headers claim.
    """
    files: list[ImageFile] = []
    skipped: list[Skipped] = []
    for raw in paths:
        path = Path(raw)
        if path.suffix.lower() == ".zip":
            files += _unzip(path, workdir, max_zip_bytes, max_members, skipped)
        else:
            files.append(ImageFile(str(path), path.name))
        if len(files) > max_files:
            raise UserFacingError(key="upload.too_many", n=max_files)
    return files, skipped


def discard(paths: Sequence[str | Path]) -> None:
    """Delete uploaded files (and the folders Gradio made for them, when left empty)."""
    for raw in paths:
        path = Path(raw)
        path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            path.parent.rmdir()


def _member_count(path: Path) -> int | None:
    """Entries in a zip's central directory, from its end record (None: not a zip)."""
    with open(path, "rb") as fp:
        # The stdlib's own end-record reader (handles zip64); private, listed in docs/private-apis.md.
        end = zipfile._EndRecData(fp)  # type: ignore[attr-defined]
    return None if end is None else end[zipfile._ECD_ENTRIES_TOTAL]  # type: ignore[attr-defined]


def _unzip(path: Path, workdir: Path, max_bytes: int, max_members: int, skipped: list[Skipped]) -> list[ImageFile]:
    try:
        count = _member_count(path)
        if count is not None and count > max_members:
            skipped.append(Skipped.keyed(path.name, "skip.zip_members", n=count, limit=max_members))
            return []
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        skipped.append(Skipped.keyed(path.name, "skip.not_a_zip", error=exc))
        return []
    out: list[ImageFile] = []
    with archive:
        members = [m for m in archive.infolist() if not m.is_dir()]
        declared = sum(m.file_size for m in members)
        if declared > max_bytes:
            skipped.append(
                Skipped.keyed(path.name, "skip.zip_size", mb=f"{declared / 1e6:.0f}", limit=f"{max_bytes / 1e6:.0f}")
            )
            return []
        target = workdir / f"{path.stem}-unzipped"
        target.mkdir(parents=True, exist_ok=True)
        budget = max_bytes
        for number, member in enumerate(members):
            name = f"{path.name}/{member.filename}"
            member_path = PurePosixPath(member.filename)
            if member_path.name.startswith(".") or "__MACOSX" in member_path.parts:
                continue  # macOS resource forks and hidden files: not photos
            suffix = PurePosixPath(member.filename).suffix.lower()
            if suffix not in MEDIA_SUFFIXES:
                skipped.append(Skipped.keyed(name, "skip.not_image_type"))
                continue
            dest = target / f"{number:06d}{suffix}"
            try:
                with archive.open(member) as src, open(dest, "wb") as dst:
                    while chunk := src.read(1 << 20):
                        budget -= len(chunk)
                        if budget < 0:  # sizes in the header lied
                            raise UserFacingError(key="upload.zip_too_big", name=path.name, mb=f"{max_bytes / 1e6:.0f}")
                        dst.write(chunk)
            except UserFacingError as exc:
                dest.unlink(missing_ok=True)
                skipped.append(Skipped(path.name, str(exc), exc.key or "", exc.fields))
                break
            except (zipfile.BadZipFile, OSError, RuntimeError, EOFError) as exc:  # corrupt, encrypted
                dest.unlink(missing_ok=True)
                skipped.append(Skipped.keyed(name, "skip.not_extracted", error=exc))
                continue
            out.append(ImageFile(str(dest), name))
    return out
