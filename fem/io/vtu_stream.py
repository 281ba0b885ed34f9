"""Write a VTU file (or a VTI image) array by array from chunks, so that no whole field is ever
in memory.

The format is VTK's XML UnstructuredGrid with inline binary arrays (base64), zlib-compressed in
blocks of :data:`BLOCK` bytes as VTK writes them (header ``[blocks, block size, last block size,
compressed sizes...]`` as UInt64), or uncompressed (header ``[bytes]``): what meshio writes and
what ParaView, VTK and meshio read. An array's chunks are compressed as they come; only the
compressed blocks of the array being written are held, to write its header first. Field data
are one-value Int64 arrays, as :func:`fem.io.atomic.write_vtu` writes them.
"""

from __future__ import annotations

import base64
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import quoteattr

import numpy as np

from ..parallel import map_ordered
from .atomic import atomic_path

#: raw bytes per compressed block (VTK's default)
BLOCK = 1 << 15
#: blocks compressed at a time on the CPU threads (2 MB of raw data)
BATCH = 64
VTK_TYPES = {np.dtype(np.float64): "Float64", np.dtype(np.float32): "Float32",
             np.dtype(np.int64): "Int64", np.dtype(np.int32): "Int32",
             np.dtype(np.uint8): "UInt8"}
#: VTK cell type of a hexahedron (hex8, VTK node order)
VTK_HEXAHEDRON = 12


@dataclass
class StreamedArray:
    """One data array: name, dtype, components per tuple and a function that yields its chunks
    (arrays of any length whose flattening, concatenated, is the array in C order)."""

    name: str
    dtype: object
    components: int
    chunks: Callable[[], Iterable[np.ndarray]]


class _Blocks:
    """Cut a byte stream into BLOCK-sized blocks and compress each (or keep them raw). Blocks
    are compressed independently, so :data:`BATCH` of them at a time go to the CPU threads
    (zlib releases the GIL): the same bytes as one by one, in less time."""

    def __init__(self, compress: bool):
        self.compress = compress
        self.pending = bytearray()
        self.blocks: list[bytes] = []
        self.sizes: list[int] = []
        self.raw: list[bytes] = []  # blocks waiting to be compressed

    def feed(self, data: bytes) -> None:
        view = memoryview(data)
        if self.pending:
            need = BLOCK - len(self.pending)
            self.pending += view[:need]
            view = view[need:]
            if len(self.pending) < BLOCK:
                return
            self._emit(bytes(self.pending))
        full = len(view) // BLOCK
        for b in range(full):
            self._emit(view[b * BLOCK:(b + 1) * BLOCK])
        self.pending = bytearray(view[full * BLOCK:])

    def _emit(self, raw: bytes) -> None:
        self.sizes.append(len(raw))
        if not self.compress:
            self.blocks.append(bytes(raw))
            return
        self.raw.append(bytes(raw))
        if len(self.raw) >= BATCH:
            self._compress_waiting()

    def _compress_waiting(self) -> None:
        self.blocks.extend(map_ordered(zlib.compress, self.raw))
        self.raw = []

    def finish(self) -> tuple[bytes, list]:
        """(header, the data's blocks) as VTK reads them."""
        if self.pending or not self.sizes:
            self._emit(bytes(self.pending))
            self.pending = bytearray()
        self._compress_waiting()
        if not self.compress:
            total = sum(len(b) for b in self.blocks)
            return np.array([total], dtype=np.uint64).tobytes(), self.blocks
        last = self.sizes[-1]
        header = [len(self.blocks), BLOCK if len(self.blocks) > 1 else last, last]
        return (np.array(header + [len(b) for b in self.blocks], dtype=np.uint64).tobytes(),
                self.blocks)


def _data_array(f, arr: StreamedArray, compress: bool) -> None:
    dtype = np.dtype(arr.dtype)
    blocks = _Blocks(compress)
    for chunk in arr.chunks():
        blocks.feed(np.ascontiguousarray(chunk, dtype=dtype).tobytes())
    header, data = blocks.finish()
    comps = f' NumberOfComponents="{arr.components}"' if arr.components != 1 else ""
    f.write(f'<DataArray type="{VTK_TYPES[dtype]}" Name={quoteattr(arr.name)}{comps} '
            'format="binary">\n'.encode())
    f.write(base64.b64encode(header))
    _write_base64(f, data)
    f.write(b"\n</DataArray>\n")


def _field_data(f, field_data: dict | None) -> None:
    """One-value Int64 arrays of the dataset (``{name: integer}``), if any."""
    if not field_data:
        return
    f.write(b"<FieldData>\n")
    for name, value in field_data.items():
        f.write(f'<DataArray type="Int64" Name={quoteattr(str(name))} '
                f'NumberOfTuples="1" format="ascii">{int(value)}</DataArray>\n'.encode())
    f.write(b"</FieldData>\n")


def _point_and_cell_data(f, point_data: list, cell_data: list, compress: bool) -> None:
    for tag, arrays in (("PointData", point_data), ("CellData", cell_data)):
        f.write(f"<{tag}>\n".encode())
        for arr in arrays:
            _data_array(f, arr, compress)
        f.write(f"</{tag}>\n".encode())


def _write_base64(f, parts) -> None:
    """Write the base64 of the concatenated ``parts`` piece by piece (cut at multiples of 3
    bytes, where base64 of a concatenation is the concatenation of base64s)."""
    carry = b""
    for part in parts:
        buf = carry + bytes(part)
        cut = len(buf) - len(buf) % 3
        f.write(base64.b64encode(buf[:cut]))
        carry = buf[cut:]
    f.write(base64.b64encode(carry))


def write_vtu_streamed(path, n_points: int, n_cells: int, points: StreamedArray,
                       connectivity: StreamedArray, nodes_per_cell: int, cell_type: int,
                       point_data: list, cell_data: list, field_data: dict | None = None, *,
                       compression: str | None = "zlib") -> Path:
    """Write an unstructured grid of ``n_cells`` cells of one VTK ``cell_type`` with
    ``nodes_per_cell`` nodes each, atomically (temporary file, then rename). ``points`` and
    ``connectivity`` and every entry of ``point_data`` / ``cell_data`` are
    :class:`StreamedArray`; ``field_data`` maps names to integers."""
    if compression not in ("zlib", None):
        raise ValueError(f"compression must be 'zlib' or None, got {compression!r}")
    compress = compression == "zlib"
    path = Path(path)
    per = int(nodes_per_cell)

    def offsets():
        step = 1 << 20
        for a in range(0, n_cells, step):
            yield per * np.arange(a + 1, min(n_cells, a + step) + 1, dtype=np.int64)

    def types():
        step = 1 << 20
        for a in range(0, n_cells, step):
            yield np.full(min(n_cells, a + step) - a, cell_type, dtype=np.uint8)

    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        compressor = ' compressor="vtkZLibDataCompressor"' if compress else ""
        f.write(b'<?xml version="1.0"?>\n')
        f.write(f'<VTKFile type="UnstructuredGrid" version="1.0" byte_order="LittleEndian" '
                f'header_type="UInt64"{compressor}>\n<UnstructuredGrid>\n'.encode())
        _field_data(f, field_data)
        f.write(f'<Piece NumberOfPoints="{n_points}" NumberOfCells="{n_cells}">\n'.encode())
        f.write(b"<Points>\n")
        _data_array(f, points, compress)
        f.write(b"</Points>\n<Cells>\n")
        _data_array(f, connectivity, compress)
        _data_array(f, StreamedArray("offsets", np.int64, 1, offsets), compress)
        _data_array(f, StreamedArray("types", np.uint8, 1, types), compress)
        f.write(b"</Cells>\n")
        _point_and_cell_data(f, point_data, cell_data, compress)
        f.write(b"</Piece>\n</UnstructuredGrid>\n</VTKFile>\n")
    return path


def write_vti_streamed(path, shape, origin, spacing, point_data: list, cell_data: list,
                       field_data: dict | None = None, *,
                       compression: str | None = "zlib") -> Path:
    """Write VTK XML ImageData (``.vti``) of ``shape`` = (nx, ny, nz) cells, atomically: the
    points and cells of a regular grid are implicit (origin, spacing), so only the arrays are
    written, each a :class:`StreamedArray` in VTK's order (x fastest, then y, then z), point
    arrays over the (nx+1)(ny+1)(nz+1) nodes and cell arrays over the nx ny nz cells."""
    if compression not in ("zlib", None):
        raise ValueError(f"compression must be 'zlib' or None, got {compression!r}")
    compress = compression == "zlib"
    path = Path(path)
    extent = " ".join(f"0 {int(n)}" for n in shape)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        compressor = ' compressor="vtkZLibDataCompressor"' if compress else ""
        f.write(b'<?xml version="1.0"?>\n')
        f.write(f'<VTKFile type="ImageData" version="1.0" byte_order="LittleEndian" '
                f'header_type="UInt64"{compressor}>\n'.encode())
        f.write(f'<ImageData WholeExtent="{extent}" '
                f'Origin="{" ".join(repr(float(v)) for v in origin)}" '
                f'Spacing="{" ".join(repr(float(v)) for v in spacing)}">\n'.encode())
        _field_data(f, field_data)
        f.write(f'<Piece Extent="{extent}">\n'.encode())
        _point_and_cell_data(f, point_data, cell_data, compress)
        f.write(b"</Piece>\n</ImageData>\n</VTKFile>\n")
    return path
