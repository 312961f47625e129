"""Database backups: pg_dump (custom format) for Postgres, the online backup API for SQLite.

A backup is written under a temporary name and renamed when complete, with a ``.sha256`` file
beside it (``sha256sum -c`` format), so a half-written file never passes for a backup.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

SUFFIXES = {"postgresql": ".dump", "sqlite": ".sqlite3"}


class BackupError(Exception):
    """The backup could not be made."""


@dataclass(frozen=True)
class Backup:
    path: Path
    bytes: int
    sha256: str


def kind(url: str) -> str:
    """``postgresql`` or ``sqlite``."""
    return "postgresql" if make_url(url).get_backend_name() == "postgresql" else "sqlite"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _pg_dump(url: str, target: Path, timeout_s: float) -> None:
    parsed = make_url(url)
    env = {**os.environ, "PGCONNECT_TIMEOUT": "10"}
    if parsed.password:
        env["PGPASSWORD"] = str(parsed.password)
    args = ["pg_dump", "--format=custom", "--no-owner", f"--file={target}"]
    if parsed.host:
        args.append(f"--host={parsed.host}")
    if parsed.port:
        args.append(f"--port={parsed.port}")
    if parsed.username:
        args.append(f"--username={parsed.username}")
    args.append(f"--dbname={parsed.database}")
    try:
        done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout_s, check=False)
    except FileNotFoundError as error:
        raise BackupError("pg_dump is not installed on this host") from error
    except subprocess.TimeoutExpired as error:
        raise BackupError(f"pg_dump did not finish within {timeout_s:g}s") from error
    if done.returncode != 0:
        raise BackupError(f"pg_dump failed ({done.returncode}): {done.stderr.strip()[:500]}")


def _sqlite_backup(url: str, target: Path) -> None:
    source_path = make_url(url).database
    if not source_path or source_path == ":memory:":
        raise BackupError("an in-memory SQLite database cannot be backed up")
    source = sqlite3.connect(f"file:{source_path}?mode=ro", uri=True)
    try:
        copy = sqlite3.connect(target)
        try:
            source.backup(copy, pages=1024)  # pages at a time: writers are not blocked for the whole copy
        finally:
            copy.close()
    except sqlite3.Error as error:
        raise BackupError(f"SQLite backup failed: {error}") from error
    finally:
        source.close()


def _private_file(path: Path) -> None:
    """Creates ``path`` empty and readable by its owner only (0600), before anything is written to it."""
    os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    os.chmod(path, 0o600)  # whatever the umask


def make_backup(url: str, directory: Path, stem: str, timeout_s: float) -> Backup:
    """Backs up the database at ``url`` to ``directory/stem<suffix>``, with its checksum file.

    Backups hold every row of the database: the files are readable by their owner only (0600), in a
    directory only the owner may list (0700, when this creates it).
    """
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    final = directory / f"{stem}{SUFFIXES[kind(url)]}"
    partial = final.with_name(final.name + ".partial")
    partial.unlink(missing_ok=True)
    _private_file(partial)  # pg_dump and SQLite write into it, keeping its mode
    try:
        if kind(url) == "postgresql":
            _pg_dump(url, partial, timeout_s)
        else:
            _sqlite_backup(url, partial)
        digest = _sha256(partial)
        os.replace(partial, final)
    finally:
        partial.unlink(missing_ok=True)
    checksum = final.with_name(final.name + ".sha256")
    checksum.unlink(missing_ok=True)
    _private_file(checksum)
    checksum.write_text(f"{digest}  {final.name}\n")
    return Backup(final, final.stat().st_size, digest)


def verify(path: Path) -> bool:
    """Whether the backup's content still matches its checksum file."""
    recorded = path.with_name(path.name + ".sha256").read_text().split()[0]
    return recorded == _sha256(path)


def prune(directory: Path, prefix: str, keep: int) -> list[str]:
    """Deletes all but the ``keep`` newest backups named ``prefix*``; returns the deleted names.

    Names embed the UTC instant (``prefix-YYYYmmddTHHMMSSZ``), so name order is age order.
    """
    backups = sorted(
        p for p in directory.glob(f"{prefix}-*") if p.suffix in SUFFIXES.values() and not p.name.endswith(".partial")
    )
    doomed = backups[: max(len(backups) - keep, 0)]
    for path in doomed:
        path.unlink()
        path.with_name(path.name + ".sha256").unlink(missing_ok=True)
    return [p.name for p in doomed]
