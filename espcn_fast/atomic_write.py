"""Files written whole or not at all: a temporary name beside the target, renamed over it."""

from __future__ import annotations

import errno
import os
import re
import stat
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# Bytes of the target's name kept in the temporary one: with the rest of that name
# (".", ".<12 hex>.tmp" and the suffix) it must fit where the target's 255 do.
_NAME_BYTES = 180


def _head(name: str, size: int) -> str:
    """The first ``size`` bytes of the file name ``name``, as a name again.

    Bytes, not characters, and through ``os.fsencode``: a name that is not valid
    UTF-8 comes as surrogate escapes, which ``str.encode`` refuses. A UTF-8
    character cut in two is dropped whole.
    """
    raw = os.fsencode(name)
    if len(raw) <= size:
        return name
    head = raw[: max(size, 0)]
    end = len(head)
    while end and head[end - 1] & 0xC0 == 0x80:  # continuation bytes of the last character
        end -= 1
    if end and head[end - 1] >= 0xC0 and len(head) - end + 1 < _utf8_length(head[end - 1]):
        head = head[: end - 1]  # its lead byte, the character incomplete
    return os.fsdecode(head)


def _utf8_length(lead: int) -> int:
    """How many bytes the UTF-8 character starting with ``lead`` has."""
    return 4 if lead >= 0xF0 else 3 if lead >= 0xE0 else 2


def _umask() -> int:
    """The process's umask, read without changing it where the system says it (Linux: another
    thread creating a file meanwhile would get a wrong one from the ``os.umask`` round trip)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _follow_umask(path: Path) -> None:
    """Give ``path`` the mode a new file gets: some writers create theirs private (safetensors
    writes 0600 through a temporary file of its own), which no other output is."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:  # nothing written: os.replace says so
        return
    wanted = 0o666 & ~_umask()
    if stat.S_ISREG(mode) and stat.S_IMODE(mode) != wanted:
        os.chmod(path, wanted)


class WriteError(OSError):
    """A file that could not be written; its text is one line naming the file and the cause."""

    def __str__(self) -> str:
        if self.errno is None:
            return f"could not write {self.filename} (disk full or write error: {self.strerror})"
        return f"cannot write {self.filename}: {self.strerror}"


# The system's error number in a library's text: Rust's I/O errors (safetensors), Python's.
_ERRNO_IN_TEXT = re.compile(r"\(os error (\d+)\)|\[Errno (\d+)\]")


def _errno_of(exc: BaseException) -> int | None:
    """The system's error number behind ``exc``: its own, or that of an error in its chain (torch.save
    raises "unexpected pos" over the OSError of its file object), or one its text names."""
    seen: set[int] = set()
    chain: list[BaseException | None] = [exc]
    while chain:
        error = chain.pop()
        if error is None or id(error) in seen:
            continue
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno:
            return error.errno
        match = _ERRNO_IN_TEXT.search(str(error))
        if match:
            return int(match.group(1) or match.group(2))
        chain += [error.__cause__, error.__context__]
    return None


def _disk_full(folder: Path) -> bool:
    try:
        return os.statvfs(folder).f_bavail == 0
    except (OSError, AttributeError):  # no statvfs (Windows), or the folder gone
        return False


def _file_size_limit() -> int | None:
    """The process's file size limit (``ulimit -f``) in bytes, or None when there is none."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    return None if limit == resource.RLIM_INFINITY else limit


def write_error(path: str | os.PathLike, exc: BaseException) -> WriteError:
    """The error to report for a write of ``path`` that failed with ``exc``: the system's reason
    (No space left on device, ...) where one can be found, else ``exc``'s own text, on one line."""
    path = Path(path)
    code = _errno_of(exc)
    if code is None and _disk_full(path.parent):
        code = errno.ENOSPC
    if code is None:
        return WriteError(None, " ".join(str(exc).split()) or type(exc).__name__, str(path))
    reason = os.strerror(code)
    limit = _file_size_limit() if code == errno.EFBIG else None
    if limit is not None:
        reason += f" (over the file size limit of {limit} bytes, ulimit -f)"
    return WriteError(code, reason, str(path))


@contextmanager
def replacing(
    path: str | os.PathLike, suffix: str = "", errors: tuple[type[BaseException], ...] = ()
) -> Iterator[Path]:
    """Yields a temporary path beside ``path`` to write to; renames it over ``path`` when the block
    ends without an error, and removes it in every case, so that a crash or a failed write (disk
    full, a folder in the way, an interrupt) leaves ``path`` as it was and nothing else behind. The
    name is new each call (two writers of one path do not share it). The file gets the usual
    permissions, 0666 less the umask, whatever mode the writer created it with. ``suffix`` ends the
    temporary name, for writers that choose the format by it (FFmpeg's muxers: ``".mp4"``). Any file
    name the system takes works, one that is not UTF-8 included. ``errors`` are the exceptions
    that mean the write failed (OSError; torch's RuntimeError over a full disk): raised from the
    block or the rename, they become a :class:`WriteError` naming ``path`` and the cause."""
    path = Path(path)
    stem = _head(path.name, _NAME_BYTES - len(os.fsencode(suffix)))
    tmp = path.with_name(f".{stem}.{uuid.uuid4().hex[:12]}.tmp{suffix}")
    try:
        try:
            yield tmp
            _follow_umask(tmp)
            os.replace(tmp, path)
        except errors as exc:
            raise write_error(path, exc) from exc
    finally:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:  # e.g. a read-only folder: the write's own error is the one to see
            pass


_TEMPORARY = re.compile(r"\.(?P<stem>.+)\.[0-9a-f]{12}\.tmp(?P<suffix>.*)", re.DOTALL)


def leftover_temporaries(path: str | os.PathLike) -> list[Path]:
    """The temporary files of writes of ``path`` by :func:`replacing` that never finished (a process
    killed while writing): never a complete output, safe to delete once no writer of ``path`` runs."""
    path = Path(path)
    try:
        names = os.listdir(path.parent)
    except OSError:
        return []
    found = []
    for name in names:
        match = _TEMPORARY.fullmatch(name)
        if match and match["stem"] == _head(path.name, _NAME_BYTES - len(os.fsencode(match["suffix"]))):
            found.append(path.parent / name)
    return found


def existing_output(path: str | os.PathLike, overwrite: bool) -> str | None:
    """Why ``path`` must not be written (it exists and ``overwrite`` was not given), or None: the one
    rule for every output of the command line (an existing file is replaced only when asked)."""
    if overwrite or not os.path.lexists(path):
        return None
    return f"{path} exists; pass --overwrite to replace it"
