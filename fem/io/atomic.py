"""Write files so that a reader never sees half of one: temporary file beside it, then rename."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

from ..errors import InputFileError, OutputError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_writable(path) -> Path:
    """Raise :class:`~fem.errors.OutputError` unless a file can be written at ``path`` (its
    folder exists and takes a new file, and ``path`` is not a folder): checked before the work
    that produces the file, not after it."""
    path = Path(path)
    if not path.parent.is_dir():
        raise OutputError(f"cannot write {path}: folder {path.parent} does not exist")
    if path.is_dir():
        raise OutputError(f"cannot write {path}: it is a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=path.parent)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    os.close(fd)
    os.unlink(probe)
    return path


@contextmanager
def atomic_path(path, suffix: str = ".part"):
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path`` (with the
    permissions a new file would get), on failure removed, with any ``<tmp>.*`` companion the
    writer made. An OSError (a full disk, no permission) becomes an
    :class:`~fem.errors.OutputError` naming ``path``, not the temporary."""
    path = Path(path)
    if not path.parent.exists():
        raise InputFileError(f"output folder {path.parent} does not exist")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException as exc:
        for t in [tmp, *Path(tmp).parent.glob(Path(tmp).name + ".*")]:
            if os.path.lexists(t):
                os.unlink(t)
        if isinstance(exc, OSError):
            raise OutputError(f"cannot write {path}: {exc.strerror or exc} (nothing was left "
                              "behind)") from None
        raise


def write_vtu(path, mesh, *, compression: str | None = "zlib") -> Path:
    """Write a meshio mesh as VTU atomically, with its integer field data.

    meshio's VTU writer drops ``field_data``; it is added here as a ``<FieldData>`` block of
    one-value integer arrays (how region names and units travel: "region 3: L2/cortex" = 3), which
    ParaView, VTK and meshio's reader all read.
    """
    import shutil
    from xml.sax.saxutils import quoteattr

    import meshio

    path = Path(path)
    with atomic_path(path) as tmp:
        meshio.write(tmp, mesh, file_format="vtu", compression=compression)
        if mesh.field_data:
            arrays = "".join(
                f'<DataArray type="Int64" Name={quoteattr(str(k))} NumberOfTuples="{len(v)}" '
                f'format="ascii">{" ".join(str(int(x)) for x in v)}</DataArray>\n'
                for k, v in ((k, list(map(int, list(v.ravel())))) for k, v in mesh.field_data.items()))
            block = f"<FieldData>\n{arrays}</FieldData>\n".encode()
            marker = b"<UnstructuredGrid>"
            with open(tmp, "rb") as src, open(tmp + ".fd", "wb") as dst:
                head = src.read(1 << 16)
                i = head.find(marker)
                if i < 0:
                    raise RuntimeError("meshio wrote a VTU without <UnstructuredGrid>")
                j = i + len(marker)
                dst.write(head[:j] + b"\n" + block + head[j:])
                shutil.copyfileobj(src, dst, 1 << 22)
            os.replace(tmp + ".fd", tmp)
    return path
