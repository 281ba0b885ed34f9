"""One package tree that every tool sees (issue 18, deliverable 1): ``fem.kernels`` and
``fem.meshes`` import and bind as attributes of ``fem`` the same way from the source checkout,
an editable install and a wheel.

Each form is imported in a fresh interpreter started without site-packages (``-S``), with only
the form under test and a folder that links numpy and scipy (what ``fem.meshes.vertebra``
needs) on ``sys.path``, so that the environment's own install of the project cannot answer in
its place; the child checks where ``fem`` came from.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

CHECK = r"""
import importlib, site, sys
form, where, deps = sys.argv[1:4]
if form == "editable":
    site.addsitedir(where)   # runs the install's .pth, as site-packages would
else:
    sys.path.insert(0, where)
sys.path.append(deps)
import fem.meshes.vertebra
import fem.kernels.backend
import fem
assert fem.meshes.vertebra is sys.modules["fem.meshes.vertebra"], "fem.meshes.vertebra unbound"
assert fem.kernels.backend is sys.modules["fem.kernels.backend"], "fem.kernels.backend unbound"
assert fem.meshes.__name__ == "fem.meshes" and fem.kernels.__name__ == "fem.kernels"
# a wheel holds fem/meshes; the checkout and an editable install read the top-level meshes/
print(fem.__file__)
print(fem.meshes.vertebra.__file__)
"""


@pytest.fixture(scope="module")
def deps(tmp_path_factory) -> Path:
    """A folder with numpy and scipy only (links into this environment's site-packages)."""
    out = tmp_path_factory.mktemp("deps")
    purelib = Path(sysconfig.get_paths()["purelib"])
    for name in ("numpy", "numpy.libs", "scipy", "scipy.libs"):
        if (purelib / name).exists():
            (out / name).symlink_to(purelib / name)
    return out


def _pip(*args, cwd) -> None:
    r = subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args],
                       cwd=cwd, capture_output=True, text=True, timeout=300)
    if r.returncode:
        pytest.fail(f"pip {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}")


def _site(prefix: Path) -> Path:
    return Path(sysconfig.get_path("purelib", vars={"base": str(prefix),
                                                     "platbase": str(prefix)}))


def _check(form: str, where: Path, deps: Path, cwd: Path) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    r = subprocess.run([sys.executable, "-S", "-c", CHECK, form, str(where), str(deps)],
                       cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"{form}: {r.stderr}"
    return r.stdout.split()


def test_checkout(deps, tmp_path):
    fem_file, vertebra_file = _check("checkout", ROOT, deps, tmp_path)
    assert Path(fem_file) == ROOT / "fem" / "__init__.py"
    assert Path(vertebra_file) == ROOT / "meshes" / "vertebra.py"


def test_wheel_and_editable_install(deps, tmp_path):
    """One test, not two: both builds write the checkout's build/ and *.egg-info folders, which
    two workers must not share at once."""
    for form in ("wheel", "editable"):
        _installed(form, deps, tmp_path / form)


def _installed(form, deps, tmp_path):
    tmp_path.mkdir()
    prefix = tmp_path / "prefix"
    if form == "wheel":
        _pip("wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"),
             str(ROOT), cwd=tmp_path)
        wheel, = (tmp_path / "dist").glob("vertebra_fem-*.whl")
        # --ignore-installed: never uninstall this environment's own install of the project
        _pip("install", "--no-deps", "--no-compile", "--ignore-installed", "--target",
             str(prefix), str(wheel), cwd=tmp_path)
        where = prefix
    else:
        _pip("install", "--no-deps", "--no-build-isolation", "--ignore-installed", "--prefix",
             str(prefix), "-e", str(ROOT), cwd=tmp_path)
        where = _site(prefix)
    fem_file, vertebra_file = _check(form, where, deps, tmp_path)
    if form == "wheel":
        assert Path(fem_file) == prefix / "fem" / "__init__.py"
        assert Path(vertebra_file) == prefix / "fem" / "meshes" / "vertebra.py"
    else:
        assert Path(fem_file) == ROOT / "fem" / "__init__.py"
        assert Path(vertebra_file) == ROOT / "meshes" / "vertebra.py"
