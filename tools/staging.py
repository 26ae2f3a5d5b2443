"""Where an export is written before it exists: a hidden `.OUT.tmp-PID` folder beside OUT, renamed
into place at the very end, so a crash, Ctrl-C or full disk leaves no half-written model; the
staging folders of exports whose process is gone are removed on the next export to that OUT."""

import os
import shutil
from pathlib import Path


def staging_folder(out: Path) -> Path:
    """This process's staging folder for `out` (not yet created), after clearing dead exports' ones."""
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_staging(out)
    return out.parent / f".{out.name}.tmp-{os.getpid()}"


def _remove_stale_staging(out: Path) -> None:
    """Staging folders of exports to `out` whose process is gone (killed, machine crashed)."""
    for folder in out.parent.glob(f".{out.name}.tmp-*"):
        pid = folder.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _process_alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def move_into_place(model_dir: Path, out: Path, staging: Path) -> None:
    """Move the finished export to `out`; an old `out` is moved aside first, removed after."""
    old = None
    if out.exists():
        old = staging / "previous"
        os.rename(out, old)
    try:
        os.rename(model_dir, out)
    except OSError:
        if old is not None:
            os.rename(old, out)
        raise

