"""The wheel is complete: installed outside the checkout, `corelab` finds its weights and report template.

The wheel is built from a copy of the checkout (building in place leaves build/ and corelab.egg-info
there) and installed without dependencies into a fresh virtual environment. That environment gets the
dependencies from a .pth file naming this environment's site-packages: a plain path line, so this
environment's own .pth files, corelab's editable finder among them, are not run and `import corelab`
can only find the wheel's copy.
"""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
# What the build reads (pyproject's packages and package-dir), plus tests/ to show it is left out.
SOURCE_DIRS = ("corelab", "models", "templates", "tests")


def _call(args: list, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    done = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600,
                          check=False)
    assert done.returncode == 0, f"{args} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    source.mkdir()
    for path in ROOT.iterdir():
        if path.is_file():
            shutil.copy2(path, source / path.name)
    junk = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build", "dist")
    for name in SOURCE_DIRS:
        shutil.copytree(ROOT / name, source / name, ignore=junk)
    _call([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
           "--disable-pip-version-check", "-q", "-w", work / "dist", source], cwd=work)
    (built,) = (work / "dist").glob("corelab-*.whl")
    return built


@pytest.fixture(scope="module")
def fresh_env(wheel, tmp_path_factory) -> Path:
    """A new virtual environment holding only the wheel; dependencies come from this environment."""
    prefix = tmp_path_factory.mktemp("env") / "venv"
    venv.create(prefix, with_pip=False)
    python = prefix / "bin" / "python"
    _call([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index",
           "--disable-pip-version-check", "-q", wheel], cwd=prefix)
    purelib = _call([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=prefix)
    ours = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (Path(purelib.stdout.strip()) / "corelab-dev-dependencies.pth").write_text("\n".join(ours) + "\n")
    return prefix


def test_wheel_holds_the_package_models_and_templates_only(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    sources = {p.relative_to(ROOT).as_posix() for p in (ROOT / "corelab").rglob("*.py")}
    assert sources <= names, f"modules missing from the wheel: {sorted(sources - names)}"
    weights = {f"corelab/models/{p.relative_to(ROOT / 'models').as_posix()}" for p in (ROOT / "models").rglob("*.pt")}
    assert weights and weights <= names
    assert {"corelab/models/card.json", "corelab/models/single/card.json", "corelab/report/templates/report.html.j2",
            "corelab/report/templates/report.css"} <= names
    assert not [n for n in names if n.endswith("train.sh") or n.startswith("tests/") or "conftest" in n]


def test_installed_wheel_runs_synth_run_and_compare(fresh_env, tmp_path):
    from corelab.segment.folder import load_models

    python, corelab = fresh_env / "bin" / "python", fresh_env / "bin" / "corelab"
    locate = ("import json, corelab, corelab.report.pdf as p, corelab.segment.folder as f; "
              "print(json.dumps([corelab.__file__, str(f.default_models_dir()), str(p.TEMPLATES)]))")
    where = _call([python, "-c", locate], tmp_path)
    for path in json.loads(where.stdout):
        assert Path(path).resolve().is_relative_to(fresh_env.resolve()), path

    _call([corelab, "synth", "T", "--n", "2", "--seed", "5"], tmp_path)
    _call([corelab, "run", "T/manifest.xlsx"], tmp_path)
    _call([corelab, "compare", "T/corelab-results", "--reference", "T/manual"], tmp_path)

    results = tmp_path / "T" / "corelab-results"
    volumes = pd.read_csv(results / "volumes.csv")
    assert len(volumes) == 2 and set(volumes["status"]) == {"ok"}
    assert (results / "agreement.pdf").read_bytes()[:5] == b"%PDF-"
    run = json.loads((results / "run.json").read_text())
    assert run["models"]["version"] == load_models().version
    assert Path(run["models"]["folder"]).resolve().is_relative_to(fresh_env.resolve())
