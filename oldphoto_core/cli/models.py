"""``oldphoto models list | verify | download``: see, check and fetch model sets.

Which set a restoration uses is decided by :func:`~oldphoto_core.models.resolve_models` from
several places (``--models``, ``$OLDPHOTO_MODELS``, ``./models``, the bundled default set); a
user who wonders why ``--hr`` says "missing" needs to see every place, what was recognised there
by content, and which set won. ``verify`` loads a set strictly before a long batch finds a
broken file; ``download`` is the only code that touches the network, and only when asked.

Exit codes follow ``oldphoto restore``: 0 all well, 1 a file failed or was refused, 2 nothing
could be done (usage, network), 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path

from ..errors import CheckpointError, OldPhotoError
from ..models import (
    BUNDLED_LABEL,
    BUNDLED_MANIFEST,
    CHECKPOINT_SUFFIXES,
    ROLES,
    auto_mode,
    bundled_dir,
    bundled_files,
    candidate_dirs,
    default_models_dir,
    manifest_files,
    quality_reason,
    required_roles,
    resolve_models,
    scan_models_dir,
)

__all__ = ["add_models_parser", "run_list", "run_verify", "run_download"]

#: what ``list`` reports coverage for: (label, roles needed)
_MODES: tuple[tuple[str, list[str]], ...] = (
    *((m, required_roles(m)) for m in ("quality", "scratch", "hr", "auto")),
    ("faces 256 px", required_roles("quality", faces=True, face_size=256)[-1:]),
    ("faces 512 px", required_roles("quality", faces=True, face_size=512)[-1:]),
)


def add_models_parser(sub: argparse._SubParsersAction, debug: argparse.ArgumentParser) -> None:
    """Add ``models`` and its sub-commands to the top-level sub-parsers.

    ``--debug`` goes on each leaf only: argparse copies a sub-parser's defaults over the
    parent's values, so a flag on both levels would be reset.
    """
    p = sub.add_parser("models", help="list, verify or download checkpoint sets")
    msub = p.add_subparsers(dest="models_command", required=True, metavar="{list,verify,download}")
    models_help = ("checkpoint folder (published layout or flat files); default: every place "
                   "restore looks ($OLDPHOTO_MODELS, ./models, the bundled set)")

    q = msub.add_parser("list", parents=[debug],
                        help="show every place models are looked for, what each holds, and "
                             "which set restore would use")
    q.add_argument("--models", default=None, metavar="DIR", help=models_help)
    q.set_defaults(func=run_list)

    q = msub.add_parser("verify", parents=[debug],
                        help="load every file of the set restore would use, strictly")
    q.add_argument("--models", default=None, metavar="DIR", help=models_help)
    q.set_defaults(func=run_verify)

    q = msub.add_parser("download", parents=[debug],
                        help="fetch the published checkpoints and install what is recognised")
    q.add_argument("--to", "--models", dest="to", default=None, metavar="DIR",
                   help="models folder to install into (default $OLDPHOTO_MODELS or ./models)")
    q.add_argument("--base-url", default=None, metavar="URL",
                   help="where the zips are (default $OLDPHOTO_DOWNLOAD_URL, else the "
                        "reference's v1.0 release page)")
    q.add_argument("--only", choices=("global", "faces"), default=None,
                   help="fetch only global_checkpoints.zip or face_checkpoints.zip")
    q.add_argument("--convert", action="store_true",
                   help="install verified .safetensors copies instead of the .pth files")
    q.add_argument("--keep-zips", action="store_true",
                   help="keep the downloaded zips in the models folder")
    q.set_defaults(func=run_download)


def _explicit_dir(models: str | None) -> Path | None:
    """``--models DIR`` as a path; a folder that does not exist is a mistake worth stopping on
    (a user who names a folder means it)."""
    if models is None:
        return None
    folder = Path(models)
    if not folder.is_dir():
        raise OldPhotoError(f"--models {models}: no such folder")
    return folder


def _show(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _print_found(found: dict[str, Path], notes: list[str], root: Path) -> None:
    width = max(len(r) for r in ROLES)
    for role in ROLES:
        if role in found:
            gone = "" if found[role].is_file() else "  (file missing!)"
            print(f"  {role:<{width}}  {_show(found[role], root)}{gone}")
    if not found:
        print("  no recognised checkpoint")
    for note in notes:
        print(f"  note: {note}")


def _contents(folder: Path) -> tuple[dict[str, Path], list[str]]:
    """What a store takes from ``folder``, as :class:`~oldphoto_core.models.ModelStore` does:
    the roles of its ``manifest.json`` (a model set a training recipe wrote), else every
    checkpoint recognised by content."""
    try:
        listed = manifest_files(folder)
    except CheckpointError as exc:
        return {}, [str(exc)]
    if listed is not None:
        return listed, [f"roles as listed in its {BUNDLED_MANIFEST}"]
    return scan_models_dir(folder)


def run_list(args: argparse.Namespace) -> int:
    """Print each place, what is recognised there, and the set :func:`resolve_models` uses."""
    explicit = _explicit_dir(args.models)
    places = ([("--models", explicit)] if explicit is not None else candidate_dirs())
    for how, folder in places:
        print(f"{how}: {folder}")
        if not folder.is_dir():
            print("  (no such folder)")
            continue
        _print_found(*_contents(folder), folder)
    if explicit is None:
        print(f"{BUNDLED_LABEL}: {bundled_dir()}")
        files = bundled_files()
        if files:
            _print_found(files, [], bundled_dir())
        else:
            print("  (this installation ships none)")
    store = resolve_models(args.models)
    print(f"restore uses: {store.label}")
    width = max(len(m) for m, _ in _MODES)
    for mode, roles in _MODES:
        missing = store.missing(roles)
        if mode == "auto" and auto_mode(store) == "quality":  # what --scratch auto runs
            said = f"yes, the quality path ({quality_reason(store)})"
        else:
            said = "yes" if not missing else f"no (missing {', '.join(missing)})"
        print(f"  {mode:<{width}}  {said}")
    for note in store.notes:
        if note.startswith("this installation"):
            print(f"  note: {note}; `oldphoto models download` fetches the published weights")
    return 0


def run_verify(args: argparse.Namespace) -> int:
    """Load every file of the resolved set strictly; exit 1 when any fails."""
    from ..loading import load_model
    from .restore import describe_failure
    _explicit_dir(args.models)
    store = resolve_models(args.models)
    print(f"models: {store.label}")
    if not store.files:
        print("no checkpoint found; `oldphoto models list` shows where they are looked for, "
              "`oldphoto models download` fetches the published ones")
        return 1
    by_file: dict[Path, list[str]] = {}
    for role in ROLES:  # one file may serve several roles (the bundled clean-photo VAE)
        if role in store.files:
            by_file.setdefault(store.files[role], []).append(role)
    ok = failed = 0
    for path, roles in by_file.items():
        try:
            for arch in dict.fromkeys(ROLES[r].arch for r in roles):
                desc = load_model(path, expect=arch)
        except Exception as exc:  # every file gets its line, whatever is wrong with it
            failed += 1
            print(f"FAILED {', '.join(roles)}: {path}: {describe_failure(exc, path)}")
            if args.debug:
                traceback.print_exc()
            continue
        ok += 1
        n = sum(p.numel() for p in desc.model.parameters())
        print(f"OK     {', '.join(roles)}: {path} ({desc.arch.title}, {n / 1e6:.2f} M "
              "parameters)")
        del desc
    failed += _verify_unused(store.root, set(by_file), store.notes, args.debug)
    print(f"verified {ok + failed} files: {ok} OK, {failed} failed")
    return 1 if failed else 0


def _verify_unused(root: Path, used: set[Path], notes: list[str], debug: bool) -> int:
    """Checkpoint files in a scanned folder that the set does not use: the scan skips a corrupt
    file, and verify must say so. A file that cannot be read, or that sits at a role's published
    path (``.pth`` or converted) without holding that role's network, fails; a good duplicate
    or a readable file elsewhere is only noted. Returns how many failed."""
    from ..errors import UnsupportedModelError
    from ..loading import load_model
    from .restore import describe_failure
    if not root.is_dir() or (root / BUNDLED_MANIFEST).is_file():
        return 0  # a model set lists its files; anything else there is not ours to judge
    published: dict[Path, str] = {}  # a file at a role's place must be that role's network
    for r in ROLES.values():
        place = root / r.published_path
        published[place] = published[place.with_suffix(".safetensors")] = r.arch
    failed = 0
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p not in used
                       and p.suffix.lower() in CHECKPOINT_SUFFIXES):
        note = next((n for n in notes if str(path) in n), f"{path}: not used")
        reason, broken = None, False
        try:
            load_model(path, expect=published.get(path))
        except UnsupportedModelError as exc:  # readable, just no network oldphoto knows
            reason, broken = describe_failure(exc, path).splitlines()[0], path in published
        except Exception as exc:  # unreadable, truncated, another network, weights that misfit
            reason, broken = describe_failure(exc, path), True
            if debug:
                traceback.print_exc()
        if broken:
            failed += 1
            print(f"FAILED {path}: {reason}")
        else:
            print(f"UNUSED {note}")
    return failed


def run_download(args: argparse.Namespace) -> int:
    """Fetch and install the published archives; print what was installed and what was not."""
    from .download import download_base_url, download_models
    target = Path(args.to) if args.to else default_models_dir()
    base = download_base_url(args.base_url)
    try:
        report = download_models(target, base_url=base, only=args.only, convert=args.convert,
                                 keep_zips=args.keep_zips)
    except KeyboardInterrupt:
        kept = sorted(p.name for p in target.glob("*.zip*"))
        if kept:
            print(f"oldphoto models: interrupted; {', '.join(kept)} kept in {target}: the same "
                  "command goes on from there", file=sys.stderr)
        raise
    print(f"installed {len(report.installed)} files into {target}")
    for role, path in report.installed:
        print(f"  {path} ({ROLES[role].title})")
    print(f"refused or failed {len(report.failed) + len(report.network)}")
    for what, why in report.failed:
        print(f"  {what}: {why}")
    for msg in report.network:
        print(f"  {msg}")
    if report.not_installed:
        print(f"not installed {len(report.not_installed)} other archive members")
        for what, why in report.not_installed:
            print(f"  {what}: {why}")
    for role in report.absent:
        print(f"note: the archive holds no {ROLES[role].title} "
              f"({ROLES[role].published_path})")
    if report.network:
        return 2
    return 1 if report.failed else 0
