"""File helpers: atomic writes (temp file + rename, so a killed run never leaves a broken file) and
TOML reading whose errors a user can act on."""

from __future__ import annotations

import json
import os
import tempfile
import tomllib
from pathlib import Path
from typing import Any, Callable

_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write(path: str | os.PathLike, write: Callable[[Any], None], mode: str = "wb",
                 durable: bool = True) -> Path:
    """Call ``write(fileobj)`` on a temp file beside ``path``, then rename it over ``path``.

    The rename alone means no reader or killed process ever sees half a file; ``durable`` also
    fsyncs first, which only matters if the machine itself loses power.
    """
    path = Path(path)
    ensure_dir(path.parent)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise _cannot("write", path, exc) from None
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; results are for everyone the umask allows
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError):
            raise _cannot("write", path, exc) from None
        raise
    return path


def ensure_dir(path: str | os.PathLike) -> Path:
    """``path`` as an existing folder (created with its parents), or an InputError saying why not."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise _cannot("create the folder", path, None, "a file of that name is in the way") from None
    except OSError as exc:
        raise _cannot("create the folder", path, exc) from None
    return path


def _cannot(action: str, path: Path, exc: OSError | None, reason: str | None = None):
    from deeptest_iot.errors import InputError

    if reason is None:
        reason = exc.strerror or str(exc)
        if isinstance(exc, (NotADirectoryError, FileExistsError)) or exc.errno == 20:
            reason += " (a part of the path is a file, not a folder)"
    return InputError(f"cannot {action} {path}: {reason}")


def atomic_write_bytes(path: str | os.PathLike, data: bytes, durable: bool = True) -> Path:
    return atomic_write(path, lambda f: f.write(data), durable=durable)


def atomic_write_text(path: str | os.PathLike, text: str, durable: bool = True) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"), durable=durable)


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2, durable: bool = True) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=indent, allow_nan=False) + "\n", durable=durable)


def read_toml(path: str | os.PathLike, what: str) -> dict:
    """The parsed TOML file ``path``; a missing or malformed file is a ConfigError naming ``what`` it was."""
    from deeptest_iot.errors import ConfigError

    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{what} {path}: file not found") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{what} {path}: not valid TOML: {exc}") from None
