"""Guarded HDF5: a damaged file is refused before the HDF5 library parses it in this process.

The HDF5 C library trusts the bytes it reads: a single changed byte in an object header can
make it crash (a segmentation fault) instead of raising. Two guards keep that out of our
process:

1. **A whole-file digest.** :func:`write_digest_header` fills the file's HDF5 *user block*
   (the first :data:`USERBLOCK_SIZE` bytes, which HDF5 reserves for the application and skips
   when it looks for the superblock) with a small text header::

       QCFS-LAVA DIGEST 1
       sha256 <64 hex digits of every byte after the user block>
       length <number of bytes after the user block>

   :func:`verify_hdf5` recomputes the digest before anything parses the file, so a damaged
   file is refused by a byte comparison alone. h5py and lava-dl read such a file unchanged.
2. **A child-process probe**, for files without a digest (written before the digest existed,
   or by another program): :func:`probe_in_child` opens the file in a fresh interpreter and
   reads every object and attribute; if the HDF5 library crashes there, only the child dies
   and the file is refused.

This module knows nothing of NetX: :mod:`qcfs_lava.netx` calls it.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "USERBLOCK_SIZE",
    "DIGEST_MAGIC",
    "HDF5_SIGNATURE",
    "HDF5Check",
    "file_kind",
    "hdf5_offset",
    "probe_in_child",
    "verify_hdf5",
    "write_digest_header",
    "hdf5_bytes",
    "stamp_digest",
]

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
USERBLOCK_SIZE = 512
DIGEST_MAGIC = b"QCFS-LAVA DIGEST 1\n"
PROBE_TIMEOUT_S = 120.0


class HDF5GuardError(Exception):
    """Raised by :func:`verify_hdf5`; the caller turns it into its own typed error."""


@dataclass(frozen=True)
class HDF5Check:
    """What :func:`verify_hdf5` established about a file.

    Attributes:
        digest: True when the file carries a digest header and every byte after it matched.
        probed: True when the file has no digest and a child process parsed it without
            crashing.
    """

    digest: bool
    probed: bool


def _sha256_from(path: Path, offset: int) -> tuple[str, int]:
    h = hashlib.sha256()
    n = 0
    with open(path, "rb") as f:
        f.seek(offset)
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
            n += len(block)
    return h.hexdigest(), n


def write_digest_header(path: str | os.PathLike) -> str:
    """Write the digest header into the user block of an HDF5 file written with
    ``userblock_size=USERBLOCK_SIZE`` (call it after the file is closed).

    Returns:
        The hex sha256 of the bytes after the user block.
    """
    path = Path(path)
    digest, length = _sha256_from(path, USERBLOCK_SIZE)
    header = DIGEST_MAGIC + f"sha256 {digest}\nlength {length}\n".encode("ascii")
    with open(path, "r+b") as f:
        if f.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE:
            raise ValueError(f"{path} has no user block to hold a digest")
        f.seek(0)
        f.write(header.ljust(USERBLOCK_SIZE, b"\0"))
    return digest


def stamp_digest(data: bytes) -> tuple[bytes, str]:
    """``data`` (an HDF5 file image whose first :data:`USERBLOCK_SIZE` bytes are a user block)
    with the digest header written into its user block.

    Returns:
        The stamped bytes and the hex sha256 of the bytes after the user block.
    """
    if len(data) < USERBLOCK_SIZE or data[:len(HDF5_SIGNATURE)] == HDF5_SIGNATURE:
        raise ValueError("the HDF5 image has no user block to hold a digest")
    body = memoryview(data)[USERBLOCK_SIZE:]
    digest = hashlib.sha256(body).hexdigest()
    header = DIGEST_MAGIC + f"sha256 {digest}\nlength {len(body)}\n".encode("ascii")
    return header.ljust(USERBLOCK_SIZE, b"\0") + bytes(body), digest


def hdf5_bytes(fill, *, digest: bool = True) -> tuple[bytes, str | None]:
    """Build an HDF5 file in memory: ``fill(h5py.File)`` writes its contents.

    h5py never touches a disk (it writes into a ``BytesIO``); the caller writes the bytes
    with ordinary I/O (:func:`qcfs_lava.io.write_bytes`), so a full disk is an ``OSError``.

    Args:
        fill: called with the open, writable file.
        digest: reserve the user block and stamp the digest header (:func:`stamp_digest`).

    Returns:
        The file's bytes and its digest (None without one).
    """
    import io

    import h5py

    buffer = io.BytesIO()
    with h5py.File(buffer, "w", userblock_size=USERBLOCK_SIZE if digest else 0) as f:
        fill(f)
    data = buffer.getvalue()
    if not digest:
        return data, None
    return stamp_digest(data)


def prepend_digest(data: bytes) -> tuple[bytes, str]:
    """An HDF5 image written without a user block, given one holding the digest header.

    The HDF5 library finds a superblock at 512 bytes and takes that as the base of every
    address, so h5py (and every HDF5 reader) reads the result unchanged.
    """
    if data[:len(HDF5_SIGNATURE)] != HDF5_SIGNATURE:
        raise ValueError("not an HDF5 image starting with its superblock")
    return stamp_digest(b"\0" * USERBLOCK_SIZE + data)


def hdf5_offset(path: str | os.PathLike) -> int | None:
    """Where the HDF5 superblock signature is (0, 512, 1024, 2048, ...), or None.

    Reads bytes only (``h5py.is_hdf5`` may parse the superblock, which this avoids).
    """
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        offset = 0
        while offset + len(HDF5_SIGNATURE) <= size:
            f.seek(offset)
            if f.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE:
                return offset
            offset = 512 if offset == 0 else offset * 2
    return None


def file_kind(path: str | os.PathLike) -> str:
    """A guess of what a file holds, from its first bytes.

    Returns:
        ``"missing"``, ``"directory"``, ``"empty"``, ``"hdf5"`` (a NetX file or other HDF5),
        ``"torch"`` (a zip or pickle, as ``torch.save`` writes), ``"json"`` or ``"other"``.
    """
    path = Path(path)
    if path.is_dir():
        return "directory"
    if not path.exists():
        return "missing"
    try:
        with open(path, "rb") as f:
            head = f.read(USERBLOCK_SIZE)
    except OSError:
        return "other"
    if not head:
        return "empty"
    if head.startswith((HDF5_SIGNATURE, DIGEST_MAGIC)):
        return "hdf5"
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":
        return "torch"
    if head.lstrip()[:1] in (b"{", b"["):
        return "json"
    try:
        if hdf5_offset(path) is not None:
            return "hdf5"
    except OSError:
        pass
    return "other"


def verify_hdf5(path: str | os.PathLike, *, probe: bool = True) -> HDF5Check:
    """Make sure parsing ``path`` with h5py cannot crash this process.

    A file with a digest header must match it byte for byte. A file without one is parsed
    in a child process first (``probe``).

    Raises:
        HDF5GuardError: not an HDF5 file, a digest that does not match (the message says how),
            or a file that crashed the HDF5 library in the child process.
    """
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(USERBLOCK_SIZE)
    if head.startswith(DIGEST_MAGIC):
        lines = head[len(DIGEST_MAGIC):].split(b"\0", 1)[0].decode("ascii", "replace").split("\n")
        fields = dict(line.split(" ", 1) for line in lines if " " in line)
        stored, length = fields.get("sha256", ""), fields.get("length", "")
        if len(stored) != 64 or not length.isdigit() or len(head) < USERBLOCK_SIZE:
            raise HDF5GuardError("the digest header (its first 512 bytes) is damaged")
        digest, actual_length = _sha256_from(path, USERBLOCK_SIZE)
        if actual_length != int(length):
            raise HDF5GuardError(
                f"the file is {USERBLOCK_SIZE + actual_length} bytes long but was written with "
                f"{USERBLOCK_SIZE + int(length)} (truncated or appended to)"
            )
        if digest != stored:
            raise HDF5GuardError(
                f"contents do not match the digest written with it (sha256 {digest[:16]}... "
                f"instead of {stored[:16]}...): the file was modified or damaged"
            )
        return HDF5Check(digest=True, probed=False)
    if hdf5_offset(path) is None:
        raise HDF5GuardError("not an HDF5 file")
    if probe:
        probe_in_child(path)
    return HDF5Check(digest=False, probed=probe)


def probe_in_child(path: str | os.PathLike, timeout: float = PROBE_TIMEOUT_S) -> None:
    """Open ``path`` with h5py in a child process and read every object and attribute.

    Raises:
        HDF5GuardError: the child was killed by a signal (the HDF5 library crashed) or hung.
    """
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "qcfs_lava.safe_hdf5", str(path)],
            capture_output=True, timeout=timeout, check=False,
            env={**os.environ, "PYTHONFAULTHANDLER": ""},
        )
    except subprocess.TimeoutExpired:
        raise HDF5GuardError(f"the HDF5 library did not finish parsing it in {timeout:.0f} s "
                             "(damaged file)") from None
    if proc.returncode < 0:
        try:
            name = signal.Signals(-proc.returncode).name
        except ValueError:
            name = f"signal {-proc.returncode}"
        raise HDF5GuardError(f"parsing it crashes the HDF5 library ({name}): the file is damaged")


def _read_everything(path: str) -> None:
    """Touch every object, attribute and dataset value of ``path`` (the probe's body)."""
    import h5py

    def visit(name, obj) -> None:
        for key in obj.attrs:
            obj.attrs[key]
        if isinstance(obj, h5py.Dataset):
            obj[()]

    with h5py.File(path, "r") as f:
        for key in f.attrs:
            f.attrs[key]
        f.visititems(visit)


if __name__ == "__main__":  # the child process of probe_in_child
    try:
        _read_everything(sys.argv[1])
    except Exception:  # a Python-level error is not a crash; the parent reports it properly
        sys.exit(1)
