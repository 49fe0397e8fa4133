"""Fetch the published checkpoint archives and install what they hold (``oldphoto models
download``). Importing this touches no network, and nothing else in the engine calls it.

The reference's release page has ``global_checkpoints.zip`` (unzipped inside ``Global/``) and
``face_checkpoints.zip`` (inside ``Face_Enhancement/``), each holding ``checkpoints/...``. We
install into a models folder laid out the same way, so every file lands at its role's
``published_path`` and :func:`~oldphoto_core.models.resolve_models` finds it. A zip from the
network is untrusted input, so:

* the whole zip is refused before anything is extracted when a member could escape the folder
  (absolute path, ``..``, a drive letter, a symlink) or declares an absurd size;
* members go to a staging folder inside the target (same file system: the final ``os.replace``
  is atomic), under a suffix no model scan picks up; staging is removed whatever happens;
* a checkpoint is installed only when its content is the network its published path names and
  it loads strictly; the destination comes from ``ROLES``, never from the zip.

Downloads go to ``NAME.zip.part`` and resume with an HTTP ``Range`` request: the face archive
is large and connections drop.
"""

from __future__ import annotations

import http.client
import os
import re
import shutil
import stat
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from .. import __version__
from ..errors import CheckpointError, DownloadError, OldPhotoError, OutputError
from ..loading import (
    canonicalize_state_dict,
    load_model,
    model_from_state_dict,
    peek_state_dict,
    read_state_dict,
    save_safetensors,
)
from ..models import ROLES
from ..registry import detect_architecture, get_architecture

__all__ = ["Archive", "ARCHIVES", "DEFAULT_BASE_URL", "URL_ENV", "ArchiveRefused",
           "InstallReport", "download_base_url", "fetch", "check_members", "install_archive",
           "download_models"]

DEFAULT_BASE_URL = ("https://github.com/microsoft/Bringing-Old-Photos-Back-to-Life/releases/"
                    "download/v1.0")
#: environment variable overriding the base URL (a mirror, a local server)
URL_ENV = "OLDPHOTO_DOWNLOAD_URL"
#: the published face generators are ~370 MB; nothing legitimate comes near these
MAX_MEMBER_BYTES = 2 * 1024**3
MAX_TOTAL_BYTES = 8 * 1024**3
MAX_MEMBERS = 10_000
_CHUNK = 1 << 20
_STAGED = ".staged"  # suffix of files in staging: not a checkpoint suffix, so never scanned

Log = Callable[[str], None]


@dataclass(frozen=True)
class Archive:
    """One published zip and the folder the reference unzips it in."""

    key: str
    file: str
    folder: str

    def roles(self) -> list[str]:  # those whose published path lies under our folder
        return [r.name for r in ROLES.values() if r.published_path.startswith(self.folder + "/")]


ARCHIVES: dict[str, Archive] = {a.key: a for a in (
    Archive("global", "global_checkpoints.zip", "Global"),
    Archive("faces", "face_checkpoints.zip", "Face_Enhancement"),
)}


class ArchiveRefused(OldPhotoError):
    """A whole archive is refused (unsafe member names, absurd sizes, not a zip)."""


@dataclass
class InstallReport:
    """What a download did, for the summary and the exit code.

    ``installed``: ``(role, file)`` moved into place. ``failed``: ``(what, why)`` of refused
    archives and of corrupt, unreadable or foreign checkpoints (each fails the run).
    ``not_installed``: members that are no published checkpoint; ``absent``: roles an archive
    lacks (both informational). ``network``: downloads that could not complete.
    """

    installed: list[tuple[str, Path]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    not_installed: list[tuple[str, str]] = field(default_factory=list)
    absent: list[str] = field(default_factory=list)
    network: list[str] = field(default_factory=list)


def _log(msg: str) -> None:
    tqdm.write(msg, file=sys.stderr)  # between progress bars, not through them


def download_base_url(explicit: str | None = None) -> str:
    """``--base-url``, else ``$OLDPHOTO_DOWNLOAD_URL``, else the reference's release page;
    :class:`DownloadError` unless http(s) (urllib would also open ``file:`` and ``ftp:``)."""
    url = explicit or os.environ.get(URL_ENV) or DEFAULT_BASE_URL
    if not re.match(r"^https?://", url, re.IGNORECASE):
        raise DownloadError(f"base URL {url!r}: expected an http:// or https:// URL")
    return url.rstrip("/")


def fetch(url: str, dest: Path, *, timeout: float = 60.0, log: Log = _log) -> None:
    """Download ``url`` to ``dest`` through ``dest.part``, resuming a ``.part`` left earlier.

    A resumed request carries ``Range: bytes=N-``; a server that answers 200 instead of 206
    sends the whole file, so we start over. The size is checked against ``Content-Length``.

    Raises:
        DownloadError: no connection, an HTTP error, or a short download (``.part`` is kept).
        OutputError: the file cannot be written.
    """
    part = dest.with_name(dest.name + ".part")
    for _ in range(3):  # a stale .part (416, a wrong Content-Range) costs one more request
        have = part.stat().st_size if part.is_file() else 0
        headers = {"User-Agent": f"oldphoto/{__version__}",
                   **({"Range": f"bytes={have}-"} if have else {})}
        try:
            resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                          timeout=timeout)
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code == 416 and have:  # nothing after `have`: complete already, or stale
                if _content_range(exc.headers.get("Content-Range"))[1] == have:
                    break
                log(f"{dest.name}: the server cannot resume {part.name}; starting over")
                part.unlink()
                continue
            raise DownloadError(f"{url}: the server answered HTTP {exc.code} {exc.reason}"
                                ) from exc
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            raise DownloadError(f"{url}: cannot download: {getattr(exc, 'reason', exc)}"
                                ) from exc
        with resp:
            start = have if resp.status == 206 else 0
            if start and _content_range(resp.headers.get("Content-Range"))[0] != have:
                log(f"{dest.name}: the server sent another range; starting over")
                part.unlink()
                continue
            if have and not start:
                log(f"{dest.name}: the server does not resume downloads; starting over")
            _receive(resp, part, start, url, dest.name)
        break
    else:
        raise DownloadError(f"{url}: resuming {part} keeps failing; delete it and run again")
    os.replace(part, dest)


def _content_range(header: str | None) -> tuple[int | None, int | None]:
    """``(first byte, total)`` of ``bytes 100-199/1000`` or ``bytes */1000``."""
    m = re.match(r"^\s*bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)\s*$", header or "")
    start, total = m.groups() if m else (None, "")
    return int(start) if start else None, int(total) if total.isdigit() else None


def _receive(resp: http.client.HTTPResponse, part: Path, start: int, url: str,
             name: str) -> None:
    length = resp.headers.get("Content-Length", "")
    total = start + int(length) if length.strip().isdigit() else None
    got, error = start, ""
    try:
        with part.open("ab" if start else "wb") as f, tqdm(
                total=total, initial=start, desc=name, unit="B", unit_scale=True,
                unit_divisor=1024, file=sys.stderr) as bar:
            while True:
                try:
                    block = resp.read(_CHUNK)
                except (OSError, http.client.HTTPException) as exc:  # reset, timeout ...
                    error = f" ({type(exc).__name__}: {exc})"
                    break
                if not block:
                    break
                f.write(block)
                got += len(block)
                bar.update(len(block))
    except OSError as exc:  # the .part file: a full disk, no permission
        raise OutputError(f"{part}: cannot be written: {exc.strerror or exc}") from exc
    if error or (total is not None and got < total):
        of = f" of {total}" if total is not None else ""
        raise DownloadError(f"{url}: the download ended after {got}{of} bytes{error}; run the "
                            f"same command again to resume it ({part} is kept)")


def _unsafe(name: str) -> str | None:
    """Why a member name could write outside the folder it is extracted in, or ``None``."""
    n = name.replace("\\", "/")
    if n.startswith("/") or re.match(r"^[A-Za-z]:", n):
        return "an absolute path or a drive letter"
    if ".." in n.split("/"):
        return "'..' leads out of the folder"
    if "\x00" in n or ":" in n:
        return "a NUL byte or ':' (a drive or a Windows stream) in the name"
    return None


def _member_path(name: str) -> str:
    return "/".join(p for p in name.replace("\\", "/").split("/") if p not in ("", "."))


def check_members(infos: list[zipfile.ZipInfo], archive_name: str) -> None:
    """Refuse the whole archive if any member is unsafe; nothing has been extracted yet.

    Raises:
        ArchiveRefused: naming every offending member (the first few).
    """
    problems: list[str] = []
    if len(infos) > MAX_MEMBERS:
        problems.append(f"{len(infos)} members (more than {MAX_MEMBERS})")
    total = 0
    for info in infos:
        if why := _unsafe(info.filename):
            problems.append(f"{info.filename!r}: {why}")
        if stat.S_ISLNK(info.external_attr >> 16):  # extracted as a link, it could point out
            problems.append(f"{info.filename!r}: a symbolic link")
        if info.file_size > MAX_MEMBER_BYTES:
            problems.append(f"{info.filename!r}: declares {info.file_size} bytes (more than "
                            f"{MAX_MEMBER_BYTES}; a zip bomb?)")
        total += info.file_size
    if total > MAX_TOTAL_BYTES:
        problems.append(f"declares {total} bytes in all (more than {MAX_TOTAL_BYTES})")
    if problems:
        more = f"; ... ({len(problems)} in all)" if len(problems) > 5 else ""
        raise ArchiveRefused(f"{archive_name}: refused, nothing extracted: "
                             + "; ".join(problems[:5]) + more)


def _extract(zf: zipfile.ZipFile, info: zipfile.ZipInfo, dest: Path) -> None:
    """Copy one member out. zipfile stops at the size the member declares (checked against
    :data:`MAX_MEMBER_BYTES` already) and verifies its CRC, so a lying header cannot fill the
    disk."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with zf.open(info) as src, dest.open("wb") as out:
        shutil.copyfileobj(src, out, _CHUNK)


def _published_role(path: str, archive: Archive) -> str | None:
    """The role whose published path this member is: ``checkpoints/...`` as the reference's
    zips hold it, or under a wrapper folder (``Global/checkpoints/...``) as mirrors repack it."""
    for role in archive.roles():
        inner = ROLES[role].published_path[len(archive.folder) + 1:]
        if path == inner or path.endswith("/" + inner):
            return role
    return None


def _verified(staged: Path, role: str, convert: bool) -> Path:
    """Check that ``staged`` is the network of ``role`` and loads strictly; returns the file to
    install (a verified safetensors copy with ``convert``).

    Raises:
        CheckpointError: unreadable, corrupt, another network, or weights that do not fit.
    """
    want = ROLES[role].arch
    sd, _ = peek_state_dict(staged)  # keys and shapes only: a foreign file costs little
    spec = detect_architecture(sd)
    if spec is None:
        raise CheckpointError(f"{staged}: not a network oldphoto knows; expected the "
                              f"{get_architecture(want).title}")
    if spec.id != want:
        raise CheckpointError(f"{staged}: holds a {spec.title}, but this is the published path "
                              f"of the {ROLES[role].title} ({get_architecture(want).title})")
    raw, _ = read_state_dict(staged)
    sd = canonicalize_state_dict(raw, source=str(staged))
    desc = model_from_state_dict(sd, source=str(staged), expect=want)  # every key and shape
    if not convert:
        return staged
    # as `oldphoto convert` does; the source names the folder, which tells the three VAEs apart
    out = staged.with_name(Path(ROLES[role].published_path).stem + ".safetensors" + _STAGED)
    source = "/".join(ROLES[role].published_path.split("/")[-2:])
    save_safetensors(sd, out, arch_id=spec.id, source=source, metadata={"oldphoto.role": role})
    again = load_model(out, expect=want)
    if not all(torch.equal(a, b) for a, b in zip(desc.model.state_dict().values(),
                                                  again.model.state_dict().values(),
                                                  strict=True)):
        raise CheckpointError(f"{staged}: the safetensors copy does not reproduce it exactly")
    return out


def install_archive(zip_path: Path, target: Path, archive: Archive, *, convert: bool = False,
                    report: InstallReport | None = None, log: Log = _log) -> InstallReport:
    """Install the published checkpoints of ``zip_path`` into the models folder ``target``.

    Raises:
        ArchiveRefused: not a zip, or an unsafe member (nothing extracted then).
    """
    report = report if report is not None else InstallReport()
    try:
        zf = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ArchiveRefused(f"{zip_path.name}: not a valid zip archive (corrupt or truncated "
                             f"download?): {exc}") from exc
    with zf:
        infos = zf.infolist()
        check_members(infos, zip_path.name)
        plan: dict[str, zipfile.ZipInfo] = {}
        for info in infos:
            if info.is_dir():
                continue
            role = _published_role(_member_path(info.filename), archive)
            where = f"{zip_path.name}:{info.filename}"
            if role is None or role in plan:
                report.not_installed.append((where, "not one of the published checkpoints"
                                             if role is None else "a second copy"))
            else:
                plan[role] = info
        report.absent += [r for r in archive.roles() if r not in plan]
        staging = Path(tempfile.mkdtemp(prefix=".oldphoto-staging-", dir=target))
        try:
            for role, info in plan.items():
                _install_one(zf, info, role, staging, target, convert, report, log)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return report


def _install_one(zf: zipfile.ZipFile, info: zipfile.ZipInfo, role: str, staging: Path,
                 target: Path, convert: bool, report: InstallReport, log: Log) -> None:
    where = f"{Path(zf.filename or '').name}:{info.filename}"
    staged = staging / (ROLES[role].published_path + _STAGED)
    dest = target / ROLES[role].published_path
    dest = dest.with_suffix(".safetensors") if convert else dest
    try:
        _extract(zf, info, staged)
        ready = _verified(staged, role, convert)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(ready, dest)  # atomic: a reader sees the old file or the new, never half
    except Exception as exc:  # corrupt member, bad CRC, foreign network, full disk ...
        text = str(exc).replace(f"{staged}: ", "").replace(str(staged), info.filename)
        reason = text if isinstance(exc, OldPhotoError) else f"{type(exc).__name__}: {text}"
        report.failed.append((where, reason))
        log(f"NOT INSTALLED {where}: {reason}")
        return
    finally:
        staged.unlink(missing_ok=True)
    report.installed.append((role, dest))
    log(f"installed {dest} ({ROLES[role].title})")


def download_models(target: Path, *, base_url: str, only: str | None = None,
                    convert: bool = False, keep_zips: bool = False,
                    log: Log = _log) -> InstallReport:
    """Fetch the published archives into ``target`` and install what they hold. A zip kept
    there earlier is used again, a ``.part`` resumed; a failed download is recorded in
    ``network`` and the other archive still goes ahead.

    Raises:
        OutputError: ``target`` cannot be created.
    """
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"models folder {target} cannot be created: "
                          f"{exc.strerror or exc}") from exc
    report = InstallReport()
    for archive in ARCHIVES.values():
        if only is not None and archive.key != only:
            continue
        zip_path = target / archive.file
        if zip_path.is_file():
            log(f"using {zip_path}, downloaded before (delete it to download again)")
        else:
            url = f"{base_url}/{archive.file}"
            resume = zip_path.with_name(zip_path.name + ".part").is_file()
            log(f"{'resuming' if resume else 'downloading'} {url} -> {zip_path}")
            try:
                fetch(url, zip_path, log=log)
            except DownloadError as exc:
                report.network.append(str(exc))
                log(f"FAILED {exc}")
                continue
        try:
            install_archive(zip_path, target, archive, convert=convert, report=report, log=log)
        except ArchiveRefused as exc:
            report.failed.append((archive.file, str(exc).removeprefix(f"{archive.file}: ")))
            log(f"REFUSED {exc}")
        if not keep_zips:  # not on Ctrl-C: the next run installs from it without downloading
            zip_path.unlink(missing_ok=True)
    return report
