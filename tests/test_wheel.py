"""A clean wheel: built from the repository, installed into a fresh venv, it adds one top-level
name to site-packages, `ovchat` (the repository's engine/, server/, cli/, tools/ and benchmarks/ beneath
it, never studies/ nor committed results), and both the command and the documented import work from it."""

import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # builds a wheel and a venv: ~10 s
REPO = Path(__file__).resolve().parents[1]
TOP_LEVEL = {"ovchat", "ovchat-0.1.0.dist-info"}


def run(*cmd, **kwargs):
    done = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=300, **kwargs)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    # Built from a copy: a build writes build/ and *.egg-info beside the sources.
    source = tmp_path_factory.mktemp("source") / "ovchat"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
        ".git", ".venv*", ".cache", "build", "*.egg-info", "__pycache__", ".pytest_cache"))
    out = tmp_path_factory.mktemp("dist")
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", source, "-w", out)
    (wheel,) = out.glob("ovchat-*.whl")
    return wheel


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory):
    """A fresh venv with the wheel installed; returns (venv, names site-packages gained)."""
    venv = tmp_path_factory.mktemp("venv")
    run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    site = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").strip())
    before = set(p.name for p in site.iterdir())
    run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "-q", wheel)
    gained = set(p.name for p in site.iterdir()) - before
    # The runtime dependencies (openvino...) come from this venv, after the wheel's own files on
    # sys.path; a path in a .pth file does not run that folder's .pth files, so this venv's
    # editable ovchat stays out.
    (site / "zz_runtime_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv, gained


def test_the_wheel_holds_the_ovchat_package_only(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert {name.split("/")[0] for name in names} == TOP_LEVEL
    for module in ("ovchat/__init__.py", "ovchat/engine/engine.py", "ovchat/engine/tool_parsers/hermes.py",
                   "ovchat/tools/export.py", "ovchat/benchmarks/cli.py", "ovchat/cli/main.py"):  # subpackages too
        assert module in names


def test_every_module_of_the_source_folders_is_in_the_wheel(wheel):
    # a subpackage missing from pyproject's package list installs without its modules
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder, package in (("engine", "engine"), ("server", "server"), ("cli", "cli"), ("tools", "tools"),
                            ("benchmarks", "benchmarks")):
        for path in (REPO / folder).rglob("*.py"):
            assert f"ovchat/{package}/{path.relative_to(REPO / folder).as_posix()}" in names, path


def test_the_wheel_ships_neither_studies_nor_committed_results(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    folders = {part for name in names for part in name.split("/")[:-1]}
    assert not folders & {"studies", "results", "bench-results", "texts", "tests"}, sorted(folders)
    assert not any(name.endswith((".json", ".png")) for name in names if not name.startswith("ovchat-0.1.0.dist-info"))
    assert "ovchat/benchmarks/speculative.py" not in names and "ovchat/benchmarks/child.py" in names


def test_installing_the_wheel_adds_only_ovchat_to_site_packages(installed):
    _, gained = installed
    assert gained == TOP_LEVEL


def test_the_command_and_the_documented_import_work_from_the_wheel(installed):
    venv, _ = installed  # run from the venv: in the repository, its own ovchat/ folder would come first
    assert "export" in run(venv / "bin" / "ovchat", "--help", cwd=venv)
    where = run(venv / "bin" / "python", "-c",
                "import ovchat; print(ovchat.Engine.__module__, ovchat.engine.__file__)", cwd=venv).split()
    assert where[0] == "ovchat.engine.engine" and where[1].startswith(str(venv))
