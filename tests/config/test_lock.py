"""requirements.lock pins what pyproject.toml asks for, with hashes, and every install path uses it."""

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
PIN = re.compile(r"^(?P<name>[A-Za-z0-9._-]+)==(?P<version>\S+)")


def _locked() -> dict[str, tuple[Version, list[str]]]:
    """Name -> (version, hashes) of every pin in requirements.lock."""
    pins: dict[str, tuple[Version, list[str]]] = {}
    current = None
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if match := PIN.match(line):
            current = canonicalize_name(match["name"])
            pins[current] = (Version(match["version"]), [])
        elif current and (hashed := re.search(r"--hash=sha256:([0-9a-f]{64})", line)):
            pins[current][1].append(hashed[1])
    return pins


def _declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]]


def test_every_dependency_of_pyproject_is_locked_within_its_range():
    locked = _locked()
    missing = [str(r) for r in _declared() if canonicalize_name(r.name) not in locked]
    assert not missing, f"not in requirements.lock (run `make lock`): {missing}"
    outside = [
        f"{r} (locked {locked[canonicalize_name(r.name)][0]})"
        for r in _declared()
        if not r.specifier.contains(locked[canonicalize_name(r.name)][0], prereleases=True)
    ]
    assert not outside, f"requirements.lock is older than pyproject.toml (run `make lock`): {outside}"


def test_every_pin_carries_a_hash():
    unhashed = [name for name, (_, hashes) in _locked().items() if not hashes]
    assert not unhashed


def test_torch_is_locked_to_the_cpu_build():
    version, hashes = _locked()["torch"]
    assert str(version) == "2.13.0+cpu"
    assert len(hashes) == 1  # the one CPU wheel, never a CUDA build of the same version


def test_make_and_the_image_install_from_the_lock():
    makefile = (ROOT / "Makefile").read_text()
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "--require-hashes -r $(LOCK)" in makefile and "LOCK := requirements.lock" in makefile
    assert "--no-deps --no-build-isolation -e ." in makefile
    assert "--require-hashes" in dockerfile and "-r requirements.lock" in dockerfile
    assert "pip install -e ." not in dockerfile
