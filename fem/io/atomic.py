"""Write files so that a reader never sees half of one: temporary file beside it, then rename."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

from ..errors import InputFileError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path, suffix: str = ".part"):
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path`` (with the
    permissions a new file would get), on failure removed."""
    path = Path(path)
    if not path.parent.exists():
        raise InputFileError(f"output folder {path.parent} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
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
