"""Abaqus/CalculiX input decks: the linear static subset, read into a :class:`fem.Model`, and written.

Supported keywords (case-insensitive; ``**`` starts a comment):

``*HEADING``, ``*NODE`` (``NSET=``), ``*ELEMENT`` (``TYPE=C3D4|C3D10|C3D8``, ``ELSET=``),
``*NSET`` and ``*ELSET`` (``GENERATE``; members may be labels or other set names), ``*MATERIAL``
with ``*ELASTIC`` (isotropic E, nu, or ``TYPE=ENGINEERING CONSTANTS`` in the global axes) and
``*PLASTIC`` (von Mises, ``HARDENING=ISOTROPIC``: data lines "yield stress, plastic strain",
one line for perfect plasticity, two, or more on one straight line, for linear hardening;
:mod:`fem.plasticity`), ``*SOLID SECTION`` (``ELSET=``, ``MATERIAL=``, ``ORIENTATION=``),
``*ORIENTATION`` (``SYSTEM=CYLINDRICAL`` only: points a and b on the axis; orthotropic
constants in its radial, circumferential and axial directions), ``*STEP`` with
``*STATIC`` (its data line: initial increment, step time, minimum and maximum increment, and
``DIRECT`` for fixed increments, kept in ``model.metadata["static"]`` for the increments of a
plastic analysis) and ``*END STEP`` (one static step), ``*BOUNDARY`` (dofs 1-3, zero or prescribed;
``ENCASTRE``/``PINNED``/``XSYMM``/``YSYMM``/``ZSYMM``), ``*CLOAD``, ``*DLOAD`` with face pressure
``P1``..``P6``, ``*SURFACE`` (``TYPE=ELEMENT``) with ``*DSLOAD`` (``P``), and ``*INCLUDE``
(``INPUT=``, relative to the including file). Output requests (``*NODE PRINT``, ``*EL PRINT``,
``*NODE FILE``, ``*EL FILE``, ``*OUTPUT``, ``*NODE OUTPUT``, ``*ELEMENT OUTPUT``) are accepted and
ignored. Any other keyword is an error naming it and its line.

Node and element labels need not be contiguous. Set, material and surface names are
case-insensitive, as in Abaqus; the first spelling is kept. An element's data may continue on the
following lines (a line ending in a comma, or too few nodes on the line); a keyword line ending in
a comma continues on the next.
"""

from __future__ import annotations

import logging
import math
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import loads as L
from ..arrays import unique_sorted
from ..elements import ABAQUS_TO_TYPE, ELEMENT_TYPES
from ..errors import DeckError, InputFileError, MaterialError, ModelError, format_labels
from ..limits import LIMITS
from ..model import Model
from .atomic import atomic_path
from .meshio_io import check_readable

logger = logging.getLogger(__name__)

OUTPUT_KEYWORDS = {"NODE PRINT", "EL PRINT", "NODE FILE", "EL FILE", "OUTPUT", "NODE OUTPUT",
                   "ELEMENT OUTPUT"}
KNOWN = {"HEADING", "NODE", "ELEMENT", "NSET", "ELSET", "MATERIAL", "ELASTIC", "PLASTIC",
         "SOLID SECTION", "ORIENTATION",
         "STEP", "STATIC", "END STEP", "BOUNDARY", "CLOAD", "DLOAD", "SURFACE", "DSLOAD",
         "INCLUDE"} | OUTPUT_KEYWORDS
NO_DATA = {"STEP", "END STEP", "MATERIAL", "INCLUDE"}
BOUNDARY_TYPES = {"ENCASTRE": (1, 3), "PINNED": (1, 3), "XSYMM": (1, 1), "YSYMM": (2, 2),
                  "ZSYMM": (3, 3)}
MAX_INCLUDE_DEPTH = 20


@dataclass
class Card:
    """One keyword with its parameters and data lines (texts and their line numbers)."""

    keyword: str
    params: dict
    path: str
    line: int
    texts: list = field(default_factory=list)
    numbers: object = field(default_factory=list)  # a list, or a range for contiguous lines

    @property
    def data(self) -> list:
        """[(line number, text)] of the data lines."""
        return list(zip(self.numbers, self.texts))

    def error(self, message: str, line: int | None = None) -> DeckError:
        return DeckError(message, self.path, line if line is not None else self.line)


# ------------------------------------------------------------------------------------- lexing


def _input_error(message: str, where: tuple[str, int] | None) -> ModelError:
    """An unreadable file: an InputFileError, or a DeckError at the ``*INCLUDE`` naming it."""
    if where is not None:
        return DeckError(f"*INCLUDE: {message}", *where)
    return InputFileError(message)


def _readable(path: Path, where: tuple[str, int] | None) -> Path:
    """``path`` with its symbolic links followed, once it is known to be a readable file."""
    try:
        check_readable(path)
        return path.resolve(strict=True)
    except InputFileError as exc:
        raise _input_error(str(exc), where) from None
    except (OSError, RuntimeError) as exc:  # a link changed under us (3.11 raises RuntimeError)
        raise _input_error(f"{path}: cannot be opened ({getattr(exc, 'strerror', None) or exc})",
                           where) from None


def _read_text(path: Path, where: tuple[str, int] | None) -> str:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise _input_error(f"{path}: cannot be read ({exc.strerror or exc})", where) from None
    if b"\x00" in raw[:65536]:
        raise _input_error(f"{path}: binary file, not an Abaqus/CalculiX text deck", where)
    try:
        return raw.decode("utf-8-sig")  # tolerates a byte-order mark
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _parse_params(text: str, card_path: str, line: int) -> tuple[str, dict]:
    parts = [p.strip() for p in text.split(",")]
    keyword = " ".join(parts[0][1:].split()).upper()
    if not keyword:
        raise DeckError("empty keyword ('*' alone)", card_path, line)
    params = {}
    for p in parts[1:]:
        if not p:
            continue
        k, v = (p.split("=", 1) + [None])[:2] if "=" in p else (p, None)
        key = " ".join(k.split()).upper()
        if not key:
            raise DeckError(f"*{keyword}: parameter without a name ({p!r})", card_path, line)
        if key in params:
            raise DeckError(f"*{keyword}: parameter {key} given twice", card_path, line)
        params[key] = v.strip() if v is not None else None
    return keyword, params


def lex(path, _depth: int = 0, _where=None, _stack=()) -> list[Card]:
    """Split a deck (following ``*INCLUDE``) into keyword cards with their data lines."""
    path = Path(path)
    if _depth > MAX_INCLUDE_DEPTH:
        raise DeckError(f"*INCLUDE nested more than {MAX_INCLUDE_DEPTH} deep (a cycle?)", *_where)
    resolved = _readable(path, _where)
    if resolved in _stack:
        raise DeckError(f"*INCLUDE cycle: {path} includes itself", *_where)
    text = _read_text(path, _where)
    spath = str(path)
    cards: list[Card] = []
    lines = [ln.strip() for ln in text.splitlines()]
    n = len(lines)
    # lines starting with '*': keywords and '**' comments; between them only data and blanks
    stars = [i for i, ln in enumerate(lines) if ln[:1] == "*"] + [n]
    current = None
    if stars[0] > 0:
        first = next((i for i in range(stars[0]) if lines[i]), None)
        if first is not None:
            raise DeckError(f"data line before any keyword: {lines[first][:60]!r}", spath,
                            first + 1)
    k = 0
    while k < len(stars) - 1:
        i = stars[k]
        raw = lines[i]
        nxt = stars[k + 1]
        k += 1
        if raw.startswith("**"):
            a = i + 1
        else:
            lineno = i + 1
            a = i + 1
            while raw.endswith(",") and a < nxt and lines[a]:  # keyword line continued
                raw += lines[a]
                a += 1
            keyword, params = _parse_params(raw, spath, lineno)
            if keyword == "INCLUDE":
                inp = params.get("INPUT")
                if not inp:
                    raise DeckError("*INCLUDE needs INPUT=file", spath, lineno)
                inc = Path(inp.strip('"').strip("'"))
                if not inc.is_absolute():
                    inc = path.parent / inc
                cards.extend(lex(inc, _depth + 1, (spath, lineno), _stack + (resolved,)))
                current = None
            else:
                current = Card(keyword, params, spath, lineno)
                cards.append(current)
        if a < nxt:  # data lines of the current card
            seg = lines[a:nxt]
            if current is None:
                j = next((j for j, t in enumerate(seg) if t), None)
                if j is not None:
                    raise DeckError(f"data line after *INCLUDE or a comment, before any keyword: "
                                    f"{seg[j][:60]!r}", spath, a + j + 1)
                continue
            if "" in seg:
                keep = [j for j, t in enumerate(seg) if t]
                current.texts += [seg[j] for j in keep]
                nums = [a + j + 1 for j in keep]
            else:
                current.texts += seg
                nums = range(a + 1, nxt + 1)
            if isinstance(current.numbers, range) or current.numbers:
                current.numbers = list(current.numbers) + list(nums)
            else:
                current.numbers = nums
    if _depth == 0 and not cards:
        raise InputFileError(f"{path}: no keyword lines (*NODE, *ELEMENT, ...): not an "
                             "Abaqus/CalculiX deck")
    return cards


def _fields(raw: str) -> list[str]:
    f = [x.strip() for x in raw.split(",")]
    while f and f[-1] == "":
        f.pop()
    return f


#: a number as decks write it, in ASCII (float() also takes '٣', '１２' and '1_000')
NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eEdD][+-]?[0-9]+)?")
#: a label where a label or a set name may stand: ASCII digits only (str.isdigit() and \d also
#: take '¹' and '٣', which int() then refuses or reads as another number)
LABEL = re.compile(r"[0-9]+")
#: largest node or element label (CalculiX and Abaqus store labels as 32-bit integers)
MAX_LABEL = 2**31 - 1


def _number(tok: str, card: Card, line: int, what: str) -> float:
    if not NUMBER.fullmatch(tok):
        finite = tok.strip().lower().lstrip("+-") not in ("nan", "inf", "infinity")
        raise card.error(f"{what}: {tok!r} is not a{'' if finite else ' finite'} number", line)
    v = float(tok.replace("D", "E").replace("d", "e"))
    if not np.isfinite(v):
        raise card.error(f"{what}: {tok!r} is not a finite number", line)
    return v


def _not_a_label(tok: str) -> str:
    """A hint for a set name that looks like a label written with other digits ('¹', '٣')."""
    if any(not ch.isascii() and ch.isnumeric() for ch in tok):
        return " (nor a label: labels are written with the digits 0-9)"
    return ""


def _reference(tok: str, card: Card, line: int, kind: str) -> int | None:
    """The label a token of a set, surface, load or support names (``kind`` "node" or
    "element"), checked against 1..MAX_LABEL; None where the token is a set name instead."""
    if not LABEL.fullmatch(tok):
        return None
    digits = tok.lstrip("0")
    if len(digits) > len(str(MAX_LABEL)) or not 0 < int(digits or "0") <= MAX_LABEL:
        raise card.error(f"{kind} label {tok} is not a positive integer label (1..{MAX_LABEL})",
                         line)
    return int(digits)


def _label(tok: str, card: Card, line: int, what: str) -> int:
    v = _number(tok, card, line, what)
    if v != int(v) or v <= 0 or v > MAX_LABEL:
        raise card.error(f"{what}: {tok!r} is not a positive integer label (1..{MAX_LABEL})",
                         line)
    return int(v)


def _table(card: Card, width: int, what: str) -> np.ndarray:
    """Data lines as a float table (rows, width); an element's data may span several lines."""
    texts = card.texts
    if not texts:
        return np.zeros((0, width))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            arr = np.loadtxt(texts, delimiter=",", ndmin=2, dtype=float)
        if arr.shape[1] == width and np.isfinite(arr).all():
            return arr
    except (ValueError, UserWarning):
        pass
    # careful path: continuation lines and exact error positions
    rows = []
    pending: list[str] = []
    start = None
    for ln, text in card.data:
        toks = [x.strip() for x in text.split(",")]
        cont = toks[-1] == ""
        toks = [t for t in toks if t != ""] if cont else toks
        if start is None:
            start = ln
        if "" in toks:
            raise card.error(f"{what}: empty field", ln)
        pending += toks
        if len(pending) < width and (cont or card.keyword == "ELEMENT"):
            continue
        if len(pending) != width:
            raise card.error(f"{what}: expected {width} values, got {len(pending)}", start)
        rows.append([_number(t, card, start, what) for t in pending])
        pending, start = [], None
    if pending:
        raise card.error(f"{what}: incomplete data at the end of the block (expected {width} "
                         f"values, got {len(pending)})", start)
    return np.asarray(rows, dtype=float)


def _tokens(card: Card) -> tuple[list[str], list[int]]:
    """All non-empty comma-separated tokens of a card's data lines, with their line numbers."""
    toks: list[str] = []
    lines: list[int] = []
    for ln, text in card.data:
        parts = [t for t in (x.strip() for x in text.split(",")) if t]
        toks += parts
        lines += [ln] * len(parts)
    return toks, lines


def _labels(col: np.ndarray, card: Card, what: str) -> np.ndarray:
    bad = (col != np.round(col)) | (col <= 0) | (col > MAX_LABEL)
    if bad.any():
        i = int(np.argmax(bad))
        raise card.error(f"{what}: {col[i]:.15g} is not a positive integer label (1..{MAX_LABEL})",
                         _row_line(card, i))
    return col.astype(np.int64)


def _lookup(sorted_labels: np.ndarray, order: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Indices of ``labels`` among the defined ones (-1 where undefined)."""
    pos = np.clip(np.searchsorted(sorted_labels, labels), 0, len(sorted_labels) - 1)
    return np.where(sorted_labels[pos] == labels, order[pos], -1)


def _row_line(card: Card, row: int) -> int:
    """Best-effort line number of data row ``row`` (exact when each row is one line)."""
    return card.numbers[min(row, len(card.texts) - 1)] if card.texts else card.line


# ------------------------------------------------------------------------------------- reading


class _Names:
    """Case-insensitive names that remember their first spelling."""

    def __init__(self):
        self.items: dict[str, object] = {}
        self.spelling: dict[str, str] = {}

    def key(self, name: str) -> str:
        return name.strip().strip('"').upper()

    def get(self, name: str):
        return self.items.get(self.key(name))

    def __contains__(self, name: str) -> bool:
        return self.key(name) in self.items

    def set(self, name: str, value) -> None:
        k = self.key(name)
        self.spelling.setdefault(k, name.strip().strip('"'))
        self.items[k] = value

    def name(self, name: str) -> str:
        return self.spelling.get(self.key(name), name)


def read_inp(path) -> Model:
    """Read an Abaqus/CalculiX deck into a :class:`~fem.model.Model` (see the module docstring).

    Raises :class:`~fem.errors.DeckError` (file and line in the message) for faults in the deck
    and :class:`~fem.errors.InputFileError` for files that cannot be read.
    """
    cards = lex(path)
    return _Builder(cards, str(path)).build()


class _Builder:
    def __init__(self, cards: list[Card], path: str):
        self.cards = cards
        self.path = path
        self.node_blocks: list[tuple[np.ndarray, np.ndarray, Card]] = []
        self.elem_blocks: list[tuple[str, np.ndarray, np.ndarray, Card]] = []
        self.nsets = _Names()  # name -> list of (kind, payload, card, line)
        self.elsets = _Names()
        self.surfaces = _Names()  # name -> list of (element token, face, card, line)
        self.materials = _Names()
        self.plastics = _Names()  # material -> (yield stress, hardening modulus, card line)
        self.orientations = _Names()  # name -> (point a, point b, card)
        self.static: dict | None = None
        self.sections: list[tuple[str, str, Card]] = []
        self.conditions: list[tuple[str, object, Card, int]] = []  # (family, cond, card, line)
        self.heading: list[str] = []

    # ----------------------------------------------------------------- pass 1: collect

    def build(self) -> Model:
        in_step = None
        step_seen = False
        has_static = False
        material = None
        for card in self.cards:
            kw = card.keyword
            if kw not in KNOWN:
                raise card.error(f"unsupported keyword *{kw}: vertebra-fem reads the linear "
                                 "static subset (see fem.io.inp); remove it or replace it")
            if kw in OUTPUT_KEYWORDS:
                continue
            if kw in NO_DATA and card.texts:
                raise card.error(f"*{kw} takes no data lines, found {card.texts[0][:40]!r}",
                                 card.numbers[0])
            if kw == "HEADING":
                self.heading += list(card.texts)
            elif kw == "NODE":
                self._node(card)
            elif kw == "ELEMENT":
                self._element(card)
            elif kw in ("NSET", "ELSET"):
                self._set(card)
            elif kw == "MATERIAL":
                name = card.params.get("NAME")
                if not name:
                    raise card.error("*MATERIAL needs NAME=")
                material = name
                self.materials.set(name, None)
            elif kw == "ELASTIC":
                if material is None:
                    raise card.error("*ELASTIC outside a *MATERIAL")
                self.materials.set(material, self._elastic(card))
            elif kw == "PLASTIC":
                if material is None:
                    raise card.error("*PLASTIC outside a *MATERIAL")
                self.plastics.set(material, self._plastic(card))
            elif kw == "SOLID SECTION":
                self._section(card)
            elif kw == "ORIENTATION":
                self._orientation(card)
            elif kw == "SURFACE":
                self._surface(card)
            elif kw == "STEP":
                if step_seen:
                    raise card.error("a second *STEP: vertebra-fem solves one linear static step")
                nl = (card.params.get("NLGEOM") or "YES").upper()  # bare NLGEOM means YES
                if "NLGEOM" in card.params and nl not in ("NO",):
                    raise card.error("*STEP, NLGEOM: geometric nonlinearity is not supported "
                                     "(linear static analysis only)")
                in_step, step_seen = card, True
            elif kw == "STATIC":
                if in_step is None:
                    raise card.error("*STATIC outside a *STEP")
                has_static = True
                self._static(card)
            elif kw == "END STEP":
                if in_step is None:
                    raise card.error("*END STEP without *STEP")
                if not has_static:
                    raise in_step.error("the *STEP has no *STATIC procedure")
                in_step = None
            elif kw == "BOUNDARY":
                self._boundary(card)
            elif kw in ("CLOAD", "DLOAD", "DSLOAD"):
                if in_step is None:
                    raise card.error(f"*{kw} outside a *STEP: loads belong to a step")
                getattr(self, "_" + kw.lower())(card)
            if material is not None and kw not in ("MATERIAL", "ELASTIC", "PLASTIC"):
                material = None
        if in_step is not None:
            raise in_step.error("*STEP without *END STEP")
        return self._assemble()

    def _node(self, card: Card):
        arr = _table(card, 4, "*NODE data (label, x, y, z)")
        labels = _labels(arr[:, 0], card, "*NODE label")
        self.node_blocks.append((labels, arr[:, 1:4], card))
        if card.params.get("NSET"):
            self._add_members(self.nsets, card.params["NSET"], ("labels", labels), card, card.line)

    def _element(self, card: Card):
        etype = (card.params.get("TYPE") or "").upper()
        if not etype:
            raise card.error("*ELEMENT needs TYPE=")
        if etype not in ABAQUS_TO_TYPE:
            hint = ""
            if re.match(r"(CPS|CPE|CAX|S|M3D|T3D|T2D|B3|R3D|SFM3D)\d", etype):
                hint = " (a surface or line element: mesh generators such as gmsh export them " \
                       "beside the volume; delete that *ELEMENT block)"
            raise card.error(f"element type {etype} is not supported: use C3D4, C3D10 or C3D8"
                             + hint)
        name = ABAQUS_TO_TYPE[etype]
        k = ELEMENT_TYPES[name].n_nodes
        arr = _table(card, k + 1, f"*ELEMENT, TYPE={etype} data (label and {k} nodes)")
        labels = _labels(arr[:, 0], card, "element label")
        nodes = arr[:, 1:]
        bad = (nodes != np.round(nodes)) | (nodes <= 0) | (nodes > MAX_LABEL)
        if bad.any():
            row = int(np.argmax(bad.any(axis=1)))
            raise card.error(f"element {labels[row]}: node {nodes[row][bad[row]][0]:.15g} is not a "
                             f"positive integer label (1..{MAX_LABEL})", _row_line(card, row))
        conn = nodes.astype(np.int64)
        self.elem_blocks.append((name, labels, conn, card))
        if card.params.get("ELSET"):
            self._add_members(self.elsets, card.params["ELSET"], ("labels", labels), card, card.line)

    def _add_members(self, names: _Names, name: str, member, card: Card, line: int):
        cur = names.get(name)
        if cur is None:
            cur = []
            names.set(name, cur)
        cur.append((member, card, line))

    def _set(self, card: Card):
        kind = card.keyword
        key = kind  # NSET= or ELSET=
        name = card.params.get(key)
        if not name:
            raise card.error(f"*{kind} needs {key}=name")
        names = self.nsets if kind == "NSET" else self.elsets
        if "GENERATE" in card.params:
            for ln, text in card.data:
                f = _fields(text)
                if len(f) not in (2, 3):
                    raise card.error("GENERATE data must be: first, last[, increment]", ln)
                what = f"*{kind} {name}, GENERATE"
                a, b = _label(f[0], card, ln, f"{what}: first"), _label(f[1], card, ln, f"{what}: last")
                inc = _label(f[2], card, ln, f"{what}: increment") if len(f) == 3 else 1
                if b < a:
                    raise card.error(f"GENERATE: last ({b}) is smaller than first ({a})", ln)
                self._add_members(names, name, ("range", (a, b, inc)), card, ln)
        else:
            toks, lines = _tokens(card)
            labels = None
            joined = "".join(toks)
            if joined.isascii() and "_" not in joined:  # int() also takes '٣', '1_0'
                try:  # fast path: every member is an integer label
                    labels = np.array(toks, dtype=np.int64) if toks else np.zeros(0, np.int64)
                except (ValueError, OverflowError):
                    pass
            if labels is not None:
                if ((labels <= 0) | (labels > MAX_LABEL)).any():
                    i = int(np.argmax((labels <= 0) | (labels > MAX_LABEL)))
                    raise card.error(f"*{kind} member: {toks[i]!r} is not a positive integer "
                                     f"label (1..{MAX_LABEL})", lines[i])
                if len(labels):
                    self._add_members(names, name, ("labels", labels), card, np.asarray(lines))
            else:
                for tok, ln in zip(toks, lines):
                    if re.fullmatch(r"[+-]?[0-9]+(\.0*)?", tok):
                        lab = np.array([_label(tok, card, ln, f"*{kind} member")])
                        self._add_members(names, name, ("labels", lab), card, ln)
                    else:
                        self._add_members(names, name, ("set", tok), card, ln)
        if names.get(name) is None:
            names.set(name, [])

    def _elastic(self, card: Card):
        typ = (card.params.get("TYPE") or "ISOTROPIC").upper()
        if typ == "ENGINEERING CONSTANTS":
            return self._engineering_constants(card)
        if typ not in ("ISOTROPIC", "ISO"):
            raise card.error(f"*ELASTIC, TYPE={typ} is not supported (ISOTROPIC or "
                             "ENGINEERING CONSTANTS only)")
        if not card.data:
            raise card.error("*ELASTIC needs a data line: E, nu")
        if len(card.data) > 1:
            raise card.error("temperature-dependent *ELASTIC (several data lines) is not supported",
                             card.data[1][0])
        ln, text = card.data[0]
        f = _fields(text)
        if len(f) < 2 or len(f) > 3:
            raise card.error("*ELASTIC data must be: E, nu[, temperature]", ln)
        E = _number(f[0], card, ln, "Young's modulus")
        nu = _number(f[1], card, ln, "Poisson's ratio")
        if E <= 0:
            raise card.error(f"Young's modulus must be > 0, got {E:g}", ln)
        if not LIMITS["poisson"].contains(nu):
            raise card.error(f"Poisson's ratio must lie in {LIMITS['poisson'].describe()}, "
                             f"got {nu:g}", ln)
        return (E, nu, ln)

    def _plastic(self, card: Card):
        """(yield stress, hardening modulus, line) of a *PLASTIC card: one data line is perfect
        plasticity, two (or more on one straight line) linear isotropic hardening."""
        hard = (card.params.get("HARDENING") or "ISOTROPIC").upper()
        if hard != "ISOTROPIC":
            raise card.error(f"*PLASTIC, HARDENING={hard} is not supported (ISOTROPIC only)")
        if not card.data:
            raise card.error("*PLASTIC needs data lines: yield stress, plastic strain")
        pts = []
        for ln, text in card.data:
            f = _fields(text)
            if len(f) == 3:
                raise card.error("temperature-dependent *PLASTIC (a third value) is not "
                                 "supported", ln)
            if len(f) != 2:
                raise card.error("*PLASTIC data must be: yield stress, plastic strain", ln)
            pts.append((_number(f[0], card, ln, "yield stress"),
                        _number(f[1], card, ln, "plastic strain"), ln))
        s0, p0, ln0 = pts[0]
        if s0 <= 0:
            raise card.error(f"the initial yield stress must be > 0 MPa, got {s0:g}", ln0)
        if p0 != 0:
            raise card.error(f"the first *PLASTIC line must be at plastic strain 0 (the initial "
                             f"yield stress), got {p0:g}", ln0)
        if len(pts) == 1:
            return (s0, 0.0, card.line)
        for (_, pa, _), (_, pb, lb) in zip(pts, pts[1:]):
            if pb <= pa:
                raise card.error(f"*PLASTIC plastic strains must increase, got {pb:g} after "
                                 f"{pa:g}", lb)
        s1, p1, ln1 = pts[1]
        H = (s1 - s0) / (p1 - p0)
        if H < 0:
            raise card.error(f"softening (stress falling from {s0:g} to {s1:g} MPa) is not "
                             "supported: the hardening modulus must be >= 0", ln1)
        for s, p, ln in pts[2:]:
            if abs(s - (s0 + H * p)) > 1e-6 * max(abs(s), s0):
                raise card.error(f"*PLASTIC point ({s:g} MPa, {p:g}) is not on the straight line "
                                 f"through the first two: only linear hardening is supported "
                                 f"(H = {H:g} MPa)", ln)
        return (s0, H, card.line)

    def _static(self, card: Card):
        """The *STATIC increment control: initial increment, step time, minimum, maximum."""
        direct = "DIRECT" in card.params
        if not card.data:
            if direct:
                self.static = {"initial": 1.0, "total": 1.0, "direct": True}
            return
        if len(card.data) > 1:
            raise card.error("*STATIC takes one data line: initial increment, step time, "
                             "minimum, maximum", card.data[1][0])
        ln, text = card.data[0]
        f = _fields(text)
        if len(f) > 4:
            raise card.error("*STATIC data must be: initial increment, step time[, minimum"
                             "[, maximum]]", ln)
        names = ("initial", "total", "minimum", "maximum")
        vals = {}
        for name, tok in zip(names, f):
            if tok == "":
                continue
            v = _number(tok, card, ln, f"*STATIC {name}")
            if v <= 0:
                raise card.error(f"*STATIC {name} must be > 0, got {v:g}", ln)
            vals[name] = v
        vals.setdefault("initial", 1.0)
        vals.setdefault("total", 1.0)
        if vals["initial"] > vals["total"] * (1 + 1e-12):
            raise card.error(f"*STATIC initial increment {vals['initial']:g} exceeds the step "
                             f"time {vals['total']:g}", ln)
        if vals.get("minimum", 0.0) > vals.get("maximum", math.inf):
            raise card.error(f"*STATIC minimum increment {vals['minimum']:g} exceeds the "
                             f"maximum {vals['maximum']:g}", ln)
        self.static = {**vals, "direct": direct}

    def _engineering_constants(self, card: Card):
        """(("ortho", 9 constants), line): E1, E2, E3, nu12, nu13, nu23, G12, G13 / G23[, T]."""
        fields = [(ln, f) for ln, text in card.data for f in _fields(text)]
        if len(fields) < 9:
            raise card.error("*ELASTIC, TYPE=ENGINEERING CONSTANTS needs 9 values on two lines: "
                             "E1, E2, E3, nu12, nu13, nu23, G12, G13 / G23")
        if len(fields) > 10:
            raise card.error("temperature-dependent *ELASTIC (several pairs of data lines) is not "
                             "supported", fields[10][0])
        c = tuple(_number(f, card, ln, "engineering constant") for ln, f in fields[:9])
        return (("ortho", c), None, card.data[0][0])

    def _section(self, card: Card):
        elset = card.params.get("ELSET")
        mat = card.params.get("MATERIAL")
        if not elset or not mat:
            raise card.error("*SOLID SECTION needs ELSET= and MATERIAL=")
        self.sections.append((elset, mat, card))

    def _orientation(self, card: Card):
        """``*ORIENTATION, NAME=, SYSTEM=CYLINDRICAL``: points a and b on the axis (a -> b is
        the local 3-direction; 1 radial, 2 circumferential). Rectangular systems are refused."""
        name = card.params.get("NAME")
        if not name:
            raise card.error("*ORIENTATION needs NAME=")
        system = (card.params.get("SYSTEM") or "RECTANGULAR").upper()
        if system != "CYLINDRICAL":
            raise card.error(f"*ORIENTATION, SYSTEM={system} is not supported (CYLINDRICAL only: "
                             "write orthotropic constants in the global axes instead)")
        if not card.data:
            raise card.error("*ORIENTATION needs a data line: a1, a2, a3, b1, b2, b3")
        ln, text = card.data[0]
        f = _fields(text)
        if len(f) != 6:
            raise card.error("*ORIENTATION, SYSTEM=CYLINDRICAL data must be six numbers: the "
                             "points a and b on the axis", ln)
        v = np.array([_number(t, card, ln, "orientation coordinate") for t in f])
        for ln2, extra in card.data[1:]:
            vals = [_number(t, card, ln2, "orientation angle") for t in _fields(extra)]
            if any(x != 0.0 for x in vals[1:]):
                raise card.error("an additional rotation of a cylindrical *ORIENTATION is not "
                                 "supported", ln2)
        if not np.linalg.norm(v[3:] - v[:3]) > 0:
            raise card.error("*ORIENTATION: points a and b coincide: the axis is undefined", ln)
        self.orientations.set(name, (v[:3], v[3:], card))

    def _surface(self, card: Card):
        name = card.params.get("NAME")
        if not name:
            raise card.error("*SURFACE needs NAME=")
        typ = (card.params.get("TYPE") or "ELEMENT").upper()
        if typ != "ELEMENT":
            raise card.error(f"*SURFACE, TYPE={typ} is not supported: use TYPE=ELEMENT "
                             "(element faces S1..S6), or an *NSET for nodes")
        items = self.surfaces.get(name)
        if items is None:
            items = []
            self.surfaces.set(name, items)
        for ln, text in card.data:
            f = _fields(text)
            if len(f) != 2:
                raise card.error("*SURFACE data must be: element or element set, face (S1..S6)", ln)
            m = re.fullmatch(r"S([1-6])", f[1].upper())
            if not m:
                raise card.error(f"face {f[1]!r} is not one of S1..S6", ln)
            items.append((f[0], int(m.group(1)) - 1, card, ln))

    def _boundary(self, card: Card):
        if "AMPLITUDE" in card.params:
            raise card.error("*BOUNDARY, AMPLITUDE is not supported (linear static, one step)")
        typ = (card.params.get("TYPE") or "DISPLACEMENT").upper()
        if typ != "DISPLACEMENT":
            raise card.error(f"*BOUNDARY, TYPE={typ} is not supported")
        if (card.params.get("OP") or "MOD").upper() == "NEW":
            self.conditions = [c for c in self.conditions if c[0] != "BOUNDARY"]
        for ln, text in card.data:
            f = _fields(text)
            if len(f) < 2 or len(f) > 4:
                raise card.error("*BOUNDARY data must be: node or set, first dof[, last dof"
                                 "[, magnitude]] or node or set, ENCASTRE|PINNED|XSYMM|...", ln)
            if f[1].upper() in BOUNDARY_TYPES:
                if len(f) != 2:
                    raise card.error(f"*BOUNDARY {f[1].upper()} takes no further values", ln)
                first, last = BOUNDARY_TYPES[f[1].upper()]
                value = 0.0
            else:
                first = _label(f[1], card, ln, "first dof")
                last = _label(f[2], card, ln, "last dof") if len(f) > 2 and f[2] else first
                value = _number(f[3], card, ln, "magnitude") if len(f) > 3 else 0.0
            if last < first or first > 6 or last > 6:
                raise card.error(f"dofs {first}..{last} are not a valid range within 1..6", ln)
            if first > 3:
                warnings.warn(f"{card.path}, line {ln}: rotational dofs {first}-{last} ignored "
                              "(solid elements have translations only)", stacklevel=2)
                continue
            if last > 3:
                warnings.warn(f"{card.path}, line {ln}: rotational dofs 4-{last} ignored "
                              "(solid elements have translations only)", stacklevel=2)
                last = 3
            comps = "".join("xyz"[d - 1] for d in range(first, last + 1))
            vals = tuple(value if a in comps else None for a in "xyz")
            self.conditions.append(("BOUNDARY", ("disp", f[0], vals), card, ln))

    def _cload(self, card: Card):
        if (card.params.get("OP") or "MOD").upper() == "NEW":
            self.conditions = [c for c in self.conditions if c[0] != "CLOAD"]
        for ln, text in card.data:
            f = _fields(text)
            if len(f) != 3:
                raise card.error("*CLOAD data must be: node or set, dof, magnitude", ln)
            dof = _label(f[1], card, ln, "dof")
            if dof > 3:
                raise card.error(f"*CLOAD dof {dof}: solid nodes take forces in dofs 1-3 only "
                                 "(no moments)", ln)
            mag = _number(f[2], card, ln, "magnitude")
            force = tuple(mag if i == dof - 1 else 0.0 for i in range(3))
            self.conditions.append(("CLOAD", ("force", f[0], force), card, ln))

    def _dload(self, card: Card):
        if (card.params.get("OP") or "MOD").upper() == "NEW":
            self.conditions = [c for c in self.conditions if c[0] != "DLOAD"]
        for ln, text in card.data:
            f = _fields(text)
            if len(f) != 3:
                raise card.error("*DLOAD data must be: element or set, P1..P6, magnitude", ln)
            m = re.fullmatch(r"P([1-6])", f[1].upper())
            if not m:
                raise card.error(f"*DLOAD type {f[1]!r} is not supported: face pressures P1..P6 "
                                 "only", ln)
            mag = _number(f[2], card, ln, "magnitude")
            self.conditions.append(("DLOAD", ("dload", f[0], int(m.group(1)) - 1, mag), card, ln))

    def _dsload(self, card: Card):
        if (card.params.get("OP") or "MOD").upper() == "NEW":
            self.conditions = [c for c in self.conditions if c[0] != "DSLOAD"]
        for ln, text in card.data:
            f = _fields(text)
            if len(f) != 3:
                raise card.error("*DSLOAD data must be: surface, P, magnitude", ln)
            if f[1].upper() != "P":
                raise card.error(f"*DSLOAD type {f[1]!r} is not supported: uniform pressure P "
                                 "only", ln)
            mag = _number(f[2], card, ln, "magnitude")
            self.conditions.append(("DSLOAD", ("dsload", f[0], mag), card, ln))

    # ----------------------------------------------------------------- pass 2: build the model

    def _assemble(self) -> Model:
        if not sum(len(b[0]) for b in self.node_blocks):
            raise DeckError("the deck defines no nodes (*NODE with data lines)", self.path)
        if not sum(len(b[1]) for b in self.elem_blocks):
            raise DeckError("the deck defines no elements (*ELEMENT with data lines)", self.path)
        node_labels = np.concatenate([b[0] for b in self.node_blocks])
        coords = np.concatenate([b[1] for b in self.node_blocks])
        order = np.argsort(node_labels, kind="stable")
        sl = node_labels[order]
        dup = np.nonzero(sl[1:] == sl[:-1])[0]
        if len(dup):
            raise DeckError(f"node {sl[dup[0]]} is defined twice", self.path)
        self.node_sorted, self.node_order = sl, order

        elem_labels = np.concatenate([b[1] for b in self.elem_blocks])
        eorder = np.argsort(elem_labels, kind="stable")
        el = elem_labels[eorder]
        dup = np.nonzero(el[1:] == el[:-1])[0]
        if len(dup):
            raise DeckError(f"element {el[dup[0]]} is defined twice", self.path)
        self.elem_sorted, self.elem_order = el, eorder

        cells = []
        for name, labels, conn, card in self.elem_blocks:
            idx = self._node_index(conn.ravel())
            if (idx < 0).any():
                bad = int(np.argmax(idx < 0))
                row = bad // conn.shape[1]
                raise card.error(f"element {labels[row]} refers to undefined node "
                                 f"{conn.ravel()[bad]}", _row_line(card, row))
            cells.append((name, idx.reshape(conn.shape)))
        model = Model.from_arrays(coords, cells, node_ids=node_labels, element_ids=elem_labels,
                                  source=self.path)
        model.metadata["heading"] = "\n".join(self.heading)
        if self.static is not None:
            model.metadata["static"] = dict(self.static)

        for key in self.elsets.items:
            name = self.elsets.spelling[key]
            model.add_region(name, self._resolve(self.elsets, name, "element", set()))
        for key in self.nsets.items:
            name = self.nsets.spelling[key]
            model.add_node_set(name, self._resolve(self.nsets, name, "node", set()))
        for key, items in self.surfaces.items.items():
            name = self.surfaces.spelling[key]
            e, f = self._surface_faces(items)
            model.add_face_set(name, e, f)

        owner = np.full(model.n_elements, -1)
        for elset, mat, card in self.sections:
            if elset not in self.elsets:
                raise card.error(f"*SOLID SECTION: unknown element set {elset!r}")
            if mat not in self.materials:
                raise card.error(f"*SOLID SECTION: unknown material {mat!r}")
            props = self.materials.get(mat)
            if props is None:
                raise card.error(f"material {mat!r} has no *ELASTIC properties")
            name = self.elsets.name(elset)
            elems = model.regions[name]
            if len(elems) == 0:
                raise card.error(f"*SOLID SECTION: element set {elset!r} is empty")
            clash = elems[owner[elems] >= 0]
            if len(clash):
                raise card.error(f"element(s) {format_labels(model.element_ids[clash])} already "
                                 f"have a *SOLID SECTION (line {self.sections[owner[clash[0]]][2].line})")
            owner[elems] = [i for i, s in enumerate(self.sections) if s[2] is card][0]
            orient = card.params.get("ORIENTATION")
            cylinder = None
            if orient:
                if orient not in self.orientations:
                    raise card.error(f"*SOLID SECTION: unknown orientation {orient!r}")
                a, b, _ = self.orientations.get(orient)
                cylinder = (a, b - a)
            if isinstance(props[0], tuple):
                c = props[0][1]
                try:
                    model.set_orthotropic(name, E=c[:3], nu=c[3:6], G=c[6:], cylinder=cylinder)
                except MaterialError as exc:
                    raise card.error(f"material {mat!r}: {exc}", props[2]) from None
            else:
                model.set_material(name, E=props[0], nu=props[1])
            plastic = self.plastics.get(mat)
            if plastic is not None:
                if isinstance(props[0], tuple):
                    raise card.error(f"material {mat!r}: *PLASTIC needs an isotropic *ELASTIC "
                                     "(von Mises plasticity is isotropic)", plastic[2])
                model.set_plastic(name, plastic[0], plastic[1])

        for _, spec, card, ln in self.conditions:
            model.conditions.append(self._condition(model, spec, card, ln))
        return model

    def _node_index(self, labels: np.ndarray) -> np.ndarray:
        return _lookup(self.node_sorted, self.node_order, labels)

    def _elem_index(self, labels: np.ndarray) -> np.ndarray:
        return _lookup(self.elem_sorted, self.elem_order, labels)

    def _resolve(self, names: _Names, name: str, kind: str, seen: set) -> np.ndarray:
        key = names.key(name)
        if key in seen:
            raise DeckError(f"set {name!r} refers to itself", self.path)
        seen = seen | {key}
        out = []
        for (mtype, payload), card, ln in names.get(name):
            if mtype == "range":
                a, b, inc = payload
                defined = self.node_sorted if kind == "node" else self.elem_sorted
                if (b - a) // inc + 1 > len(defined):
                    raise card.error(f"set {name!r}, GENERATE {a}..{b}: more {kind} labels than "
                                     f"the deck defines ({len(defined)}): some are undefined", ln)
                mtype, payload = "labels", np.arange(a, b + 1, inc)
            if mtype == "labels":
                idx = self._node_index(payload) if kind == "node" else self._elem_index(payload)
                if (idx < 0).any():
                    i = int(np.argmax(idx < 0))
                    line = int(ln[i]) if np.ndim(ln) else ln
                    raise card.error(f"{'*NSET' if kind == 'node' else '*ELSET'} {name!r}: "
                                     f"{kind} {payload[i]} is not defined", line)
                out.append(idx)
            else:
                if payload not in names:
                    what = "node set" if kind == "node" else "element set"
                    raise card.error(f"{name!r} refers to unknown {what} {payload!r}"
                                     + _not_a_label(payload), ln)
                out.append(self._resolve(names, payload, kind, seen))
        return unique_sorted(np.concatenate(out)) if out else np.zeros(0, np.int64)

    def _elements_of(self, token: str, card: Card, ln: int) -> np.ndarray:
        label = _reference(token, card, ln, "element")
        if label is not None:
            idx = self._elem_index(np.array([label], dtype=np.int64))
            if idx[0] < 0:
                raise card.error(f"element {token} is not defined", ln)
            return idx
        if token not in self.elsets:
            raise card.error(f"unknown element set {token!r}" + _not_a_label(token), ln)
        idx = self._resolve(self.elsets, token, "element", set())
        if len(idx) == 0:
            raise card.error(f"element set {token!r} is empty", ln)
        return idx

    def _nodes_of(self, token: str, card: Card, ln: int) -> tuple[object, np.ndarray]:
        label = _reference(token, card, ln, "node")
        if label is not None:
            idx = self._node_index(np.array([label], dtype=np.int64))
            if idx[0] < 0:
                raise card.error(f"node {token} is not defined", ln)
            return None, idx
        if token not in self.nsets:
            raise card.error(f"unknown node set {token!r}" + _not_a_label(token), ln)
        idx = self._resolve(self.nsets, token, "node", set())
        if len(idx) == 0:
            raise card.error(f"node set {token!r} is empty", ln)
        return self.nsets.name(token), idx

    def _surface_faces(self, items):
        es, fs = [], []
        refs = [_reference(t, c, ln, "element") for t, _, c, ln in items]
        numeric = [(r, f, c, ln) for r, (_, f, c, ln) in zip(refs, items) if r is not None]
        if numeric:
            labels = np.array([x[0] for x in numeric], dtype=np.int64)
            idx = self._elem_index(labels)
            if (idx < 0).any():
                _, _, card, ln = numeric[int(np.argmax(idx < 0))]
                raise card.error(f"element {labels[int(np.argmax(idx < 0))]} is not defined", ln)
            es.append(idx)
            fs.append(np.array([x[1] for x in numeric], dtype=np.int64))
        for r, (token, face, card, ln) in zip(refs, items):
            if r is None:
                e = self._elements_of(token, card, ln)
                es.append(e)
                fs.append(np.full(len(e), face))
        if not es:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        return np.concatenate(es), np.concatenate(fs)

    def _condition(self, model: Model, spec, card: Card, ln: int):
        kind = spec[0]
        try:
            if kind in ("disp", "force"):
                name, nodes = self._nodes_of(spec[1], card, ln)
                target = name if name is not None else nodes
                used = model.used_nodes()[nodes]
                if kind == "force" and not used.all():
                    raise card.error(f"load on node {model.node_ids[nodes[~used][0]]}, which "
                                     "belongs to no element", ln)
                if kind == "force":
                    return L.NodalForce(target, spec[2])
                vals = spec[2]
                if all(v in (None, 0.0) for v in vals):
                    return L.Fixed(target, "".join(a for a, v in zip("xyz", vals) if v is not None))
                return L.Displacement(target, vals)
            if kind == "dload":
                e = self._elements_of(spec[1], card, ln)
                f = np.full(len(e), spec[2])
                self._check_faces(model, e, f, card, ln)
                return L.Pressure((e, f), spec[3])
            if kind == "dsload":
                if spec[1] not in self.surfaces:
                    raise card.error(f"unknown surface {spec[1]!r}", ln)
                name = self.surfaces.name(spec[1])
                if len(model.face_sets[name]) == 0:
                    raise card.error(f"surface {spec[1]!r} is empty", ln)
                return L.Pressure(name, spec[2])
        except DeckError:
            raise
        except ModelError as exc:
            raise card.error(str(exc), ln) from None
        raise AssertionError(kind)

    def _check_faces(self, model: Model, e, f, card, ln):
        nf = np.array([b.etype.n_faces for b in model.blocks])[model.element_type_of(e)]
        bad = f >= nf
        if bad.any():
            raise card.error(f"element {model.element_ids[e[bad][0]]} has no face "
                             f"P{f[0] + 1}/S{f[0] + 1}", ln)


# ------------------------------------------------------------------------------------- writing


def _labels_lines(labels, per_line: int = 16) -> str:
    labels = np.asarray(labels)
    out = []
    for i in range(0, len(labels), per_line):
        out.append(", ".join(str(int(x)) for x in labels[i:i + per_line]))
    return "\n".join(out)


def write_inp(model: Model, path, *, heading: str = "") -> Path:
    """Write the model as a deck that :func:`read_inp` and CalculiX both read.

    Materials are grouped by unique (E, nu); face sets become element-face ``*SURFACE``s;
    fixed/prescribed displacements become ``*BOUNDARY``, nodal forces ``*CLOAD``, pressures
    ``*DSLOAD``; tractions and total forces are written as their consistent nodal forces
    (``*CLOAD``); rigid plates become a reference node and a rotation node tied to the coupled
    nodes by linear ``*EQUATION``s, which CalculiX solves exactly as vertebra-fem does but
    :func:`read_inp` does not read (``*EQUATION`` is outside its subset). The file appears
    atomically.
    """
    path = Path(path)
    model.check_materials()
    title = heading or model.metadata.get("heading") or "vertebra-fem model"
    parts = [f"*HEADING\n{title}", "** units: mm, N, MPa"]
    parts += _mesh_cards(model) + _set_cards(model) + _material_cards(model)
    loads = _LoadCards(model)
    for c in model.conditions:
        loads.add(c)
    parts += loads.model_cards()
    text = "\n".join(parts + _step_cards(model, loads)) + "\n"
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)
    return path


def _mesh_cards(model: Model) -> list[str]:
    """``*NODE`` (all in NALL) and one ``*ELEMENT`` card per block (all in EALL)."""
    ids, eids = model.node_ids, model.element_ids
    node_txt = "\n".join(f"{int(i)}, {x:.14g}, {y:.14g}, {z:.14g}"
                         for i, (x, y, z) in zip(ids, model.points.tolist()))
    cards = ["*NODE, NSET=NALL\n" + node_txt]
    for b in model.blocks:
        rows = np.column_stack([eids[b.start:b.stop], ids[b.conn]])
        txt = "\n".join(", ".join(str(int(v)) for v in r) for r in rows.tolist())
        cards.append(f"*ELEMENT, TYPE={b.etype.abaqus}, ELSET=EALL\n{txt}")
    return cards


def _set_cards(model: Model) -> list[str]:
    """The regions as ``*ELSET``, node sets as ``*NSET``, face sets as element ``*SURFACE``."""
    ids, eids = model.node_ids, model.element_ids
    reserved = {"NALL", "EALL"}
    cards = [f"*ELSET, ELSET={_inp_name(name)}\n{_labels_lines(eids[elems])}"
             for name, elems in model.regions.items()
             if len(elems) and name.upper() not in reserved]
    cards += [f"*NSET, NSET={_inp_name(name)}\n{_labels_lines(ids[nodes])}"
              for name, nodes in model.node_sets.items()
              if len(nodes) and name.upper() not in reserved]
    for name, fs in model.face_sets.items():
        if len(fs):
            lines = "\n".join(f"{int(eids[e])}, S{int(f) + 1}"
                              for e, f in zip(fs.elements, fs.faces))
            cards.append(f"*SURFACE, NAME={_inp_name(name)}, TYPE=ELEMENT\n{lines}")
    return cards


#: columns of the per-element material table of :func:`_material_table`
_E, _NU, _ORTHO, _YIELD, _HARDENING, _AXIS = 0, 1, slice(0, 9), 9, 10, slice(11, 17)


def _material_table(model: Model) -> np.ndarray:
    """(n_elements, 17) constants, NaN where an element lacks them: E, nu (isotropic) or the
    nine engineering constants E1, E2, E3, nu12, nu13, nu23, G12, G13, G23 (orthotropic) in
    columns 0-8; yield stress and hardening modulus (von Mises plastic) in 9-10; the cylindrical
    axis (point, direction) of cylindrical orthotropy in 11-16."""
    n = model.n_elements
    table = np.full((n, 17), np.nan)
    table[:, _E], table[:, _NU] = model.E, model.nu
    ortho, plastic, cyl = model.orthotropic_mask(), model.plastic_mask(), model.cylindrical_mask()
    if ortho.any():
        table[ortho, _ORTHO] = model.ortho[ortho]
    if plastic.any():
        table[plastic, _YIELD:_HARDENING + 1] = model.plastic[plastic]
    if cyl.any():
        table[cyl, _AXIS] = model.ortho_axis[cyl]
    return table


def _elastic_card(c) -> str:
    """``*ELASTIC`` (isotropic or engineering constants) and, for a plastic material,
    ``*PLASTIC``: the yield stress at plastic strain 0 and, with hardening, a second point at
    plastic strain 1 (CalculiX keeps the stress constant beyond the last point, vertebra-fem's
    linear hardening goes on)."""
    if np.isnan(c[2]):
        text = f"*ELASTIC\n{c[0]:.14g}, {c[1]:.14g}"
    else:
        text = ("*ELASTIC, TYPE=ENGINEERING CONSTANTS\n"
                + ", ".join(f"{v:.14g}" for v in c[:8]) + f"\n{c[8]:.14g}")
    if not np.isnan(c[_YIELD]):
        text += f"\n*PLASTIC, HARDENING=ISOTROPIC\n{c[_YIELD]:.14g}, 0"
        if c[_HARDENING] > 0:
            text += f"\n{c[_YIELD] + c[_HARDENING]:.14g}, 1"
    return text


def _section_card(elset: str, material: str, c) -> str:
    """``*SOLID SECTION``; for cylindrical orthotropy preceded by its ``*ORIENTATION, SYSTEM=
    CYLINDRICAL`` with a = the axis point, b = point + direction."""
    text = f"*SOLID SECTION, ELSET={elset}, MATERIAL={material}"
    if np.isnan(c[_AXIS.start]):
        return text
    a, d = c[11:14], c[14:17]
    pts = ", ".join(f"{v:.14g}" for v in np.concatenate([a, a + d]))
    return (f"*ORIENTATION, NAME=OR_{elset}, SYSTEM=CYLINDRICAL\n{pts}\n"
            f"{text}, ORIENTATION=OR_{elset}")


def _material_cards(model: Model) -> list[str]:
    """One material and section per material region whose elements share their constants (it
    keeps its name); the other elements grouped by unique constants (``VFEM_MAT<k>``)."""
    table = _material_table(model)
    cards = []
    done = np.zeros(model.n_elements, dtype=bool)
    for code, name in enumerate(model.region_names):
        sel = np.nonzero(model.element_region == code)[0]
        if len(sel) == 0 or name not in model.regions or not np.array_equal(
                np.sort(model.regions[name]), sel):
            continue
        c = table[sel]
        if np.all((c == c[0]) | (np.isnan(c) & np.isnan(c[0]))):
            elset = _inp_name(name)
            cards += [f"*MATERIAL, NAME=M_{elset}\n{_elastic_card(c[0])}",
                      _section_card(elset, f"M_{elset}", c[0])]
            done[sel] = True
    rest = np.nonzero(~done)[0]
    if len(rest):
        rows, inv = np.unique(np.nan_to_num(table[rest], nan=-np.inf), axis=0,
                              return_inverse=True)
        rows = np.where(np.isneginf(rows), np.nan, rows)
        # one material per constants as written: rows a few ulps apart (a power or logarithm
        # rounds its last bit differently on another CPU) print alike and are one material, so
        # a deck does not depend on the machine that wrote it (rounding is monotonic, so the
        # groups keep the order of their values)
        group, firsts, ids = {}, [], []
        for c in rows:
            text = _elastic_card(c) + "\n" + _section_card("", "", c)
            if text not in group:
                group[text] = len(firsts)
                firsts.append(c)  # the group's constants: its first row
            ids.append(group[text])
        inv = np.asarray(ids, np.int64)[inv.ravel()]
        for k, c in enumerate(firsts):
            labels = _labels_lines(model.element_ids[rest[inv == k]])
            cards += [f"*ELSET, ELSET=VFEM_MAT{k}\n{labels}",
                      f"*MATERIAL, NAME=VFEM_MAT{k}\n{_elastic_card(c)}",
                      _section_card(f"VFEM_MAT{k}", f"VFEM_MAT{k}", c)]
    return cards


class _LoadCards:
    """The conditions as deck lines: node sets they need (model data), the plates' extra nodes
    and ``*EQUATION``s, and the step's ``*BOUNDARY``, ``*CLOAD`` and ``*DSLOAD`` lines."""

    def __init__(self, model: Model):
        self.model = model
        self.ids = model.node_ids
        self.nsets: list[str] = []
        self.extra_nodes: list[str] = []
        self.equations: list[str] = []
        self.boundary: list[str] = []
        self.cload: list[str] = []
        self.dsload: list[str] = []
        self._next_node = int(self.ids.max()) + 1
        self._count = 0
        self._written: dict[str, str] = {}

    def add(self, c) -> None:
        if isinstance(c, L.CONSTRAINTS):
            self._constraint(c)
        elif isinstance(c, L.NodalForce) and c.is_field:  # one line per node and component
            nodes = self.model.nodes_of(c.target)
            F = c.forces(nodes)
            self.cload += [f"{self.ids[node]}, {d + 1}, {float(F[i, d]):.14g}"
                           for i, node in enumerate(nodes.tolist()) for d in range(3) if F[i, d]]
        elif isinstance(c, L.NodalForce):
            s = self._nset(c.target)
            self.cload += [f"{s}, {d + 1}, {float(v):.14g}" for d, v in enumerate(c.force) if v]
        elif isinstance(c, L.Pressure) and isinstance(c.target, str):
            self.dsload.append(f"{_inp_name(c.target)}, P, {c.pressure:.14g}")
        elif isinstance(c, L.FACE_LOADS):
            self._face_load(c)
        elif isinstance(c, L.RigidPlate):
            self._plate(c)

    def _nset(self, target) -> str:
        """The deck name of a condition's node set, writing one where the model has none."""
        model = self.model
        if isinstance(target, str) and target in model.node_sets:
            return _inp_name(target)
        if isinstance(target, str) and target in self._written:
            return self._written[target]
        nodes = model.nodes_of(target)
        if isinstance(target, str):  # a face set or region: its nodes, under a derived name
            name = _inp_name(f"{target}_nodes")
            self._written[target] = name
        else:
            self._count += 1
            name = f"VFEM_N{self._count}"
        self.nsets.append(f"*NSET, NSET={name}\n{_labels_lines(self.ids[nodes])}")
        return name

    def _constraint(self, c) -> None:
        """Runs of equal prescribed values become one "first, last" ``*BOUNDARY`` line."""
        s = self._nset(c.target)
        vals = c.values()
        d = 0
        while d < 3:
            if vals[d] is None:
                d += 1
                continue
            e = d
            while e + 1 < 3 and vals[e + 1] == vals[d]:
                e += 1
            self.boundary.append(f"{s}, {d + 1}, {e + 1}, {float(vals[d]):.14g}")
            d = e + 1

    def _face_load(self, c) -> None:
        """A traction or total force as its consistent nodal forces."""
        from ..system import add_face_load

        fv = np.zeros((self.model.n_nodes, 3))
        add_face_load(self.model, c, fv)
        for node in np.nonzero(np.abs(fv).sum(1))[0]:
            self.cload += [f"{int(self.ids[node])}, {d + 1}, {float(fv[node, d]):.14g}"
                           for d in range(3) if fv[node, d]]

    def _plate(self, c) -> None:
        """A reference node and a rotation node, tied to the plate's nodes by
        u_i - u_ref_i - (theta x d)_i = 0, d the node's offset from the reference point."""
        model = self.model
        nodes = model.nodes_of(c.target)
        ref = np.asarray(c.reference if c.reference is not None
                         else model.points[nodes].mean(0))
        rn, rot = self._next_node, self._next_node + 1
        self._next_node += 2
        xyz = ", ".join(f"{float(v):.14g}" for v in ref)
        self.extra_nodes += [f"{rn}, {xyz}", f"{rot}, {xyz}"]
        for node in nodes.tolist():
            d = model.points[node] - ref
            nid = int(self.ids[node])
            for i, (j, k) in enumerate(((1, 2), (2, 0), (0, 1))):
                terms = [(nid, i + 1, 1.0), (rn, i + 1, -1.0)]
                if d[k]:
                    terms.append((rot, j + 1, -float(d[k])))
                if d[j]:
                    terms.append((rot, k + 1, float(d[j])))
                self.equations.append(f"{len(terms)}\n" + ", ".join(
                    f"{a}, {b}, {v:.14g}" for a, b, v in terms))
        for d in range(3):
            self._prescribed_or_load(rn, d, c.displacement[d], c.force[d])
            self._prescribed_or_load(rot, d, c.rotation[d], c.moment[d])

    def _prescribed_or_load(self, node: int, d: int, value, load) -> None:
        if value is not None:
            self.boundary.append(f"{node}, {d + 1}, {d + 1}, {float(value):.14g}")
        elif load:
            self.cload.append(f"{node}, {d + 1}, {float(load):.14g}")

    def model_cards(self) -> list[str]:
        """What goes before the step: node sets, the plates' nodes and equations."""
        cards = list(self.nsets)
        if self.extra_nodes:
            cards.append("*NODE\n" + "\n".join(self.extra_nodes))
        if self.equations:
            cards.append("*EQUATION\n" + "\n".join(self.equations))
        return cards


def _step_cards(model: Model, loads: _LoadCards) -> list[str]:
    """The ``*STEP``: ``*STATIC`` (the model's increments, 10 equal ones for a plastic model
    without any), the boundary conditions and loads, and the printed output."""
    plastic = model.plastic_mask().any()
    static = model.metadata.get("static")
    if static is None and plastic:  # solve_plastic's default: 10 equal increments
        static = {"initial": 0.1, "total": 1.0, "direct": True}
    step = ["*STEP", "*STATIC"]
    if static is not None:
        vals = [static.get(k) for k in ("initial", "total", "minimum", "maximum")]
        while vals and vals[-1] is None:
            vals.pop()
        line = ", ".join("" if v is None else f"{float(v):.14g}" for v in vals)
        n_inc = math.ceil(float(static.get("total", 1.0)) / float(static.get("initial", 1.0)))
        step = [f"*STEP, INC={max(1000, 2 * n_inc)}",
                "*STATIC, DIRECT" if static.get("direct") else "*STATIC"]
        if line:
            step.append(line)
    for card, lines in (("*BOUNDARY", loads.boundary), ("*CLOAD", loads.cload),
                        ("*DSLOAD", loads.dsload)):
        if lines:
            step.append(card + "\n" + "\n".join(lines))
    fields = ("U, RF", "S, PEEQ") if plastic else ("U", "S")
    return step + [f"*NODE PRINT, NSET=NALL\n{fields[0]}", f"*EL PRINT, ELSET=EALL\n{fields[1]}",
                   "*END STEP"]


def _inp_name(name: str) -> str:
    """A set name Abaqus and CalculiX accept: no commas, '=', '*', quotes or blanks; not starting
    with a digit; at most 80 characters. '/' as in "L3/cortex" is kept."""
    clean = re.sub(r"[,=*\"'\s]", "_", name)
    if not clean or clean[0].isdigit():
        clean = "S_" + clean
    return clean[:80]
