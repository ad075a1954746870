"""Packaging: lower bounds that are true, a non-editable install that finds its data, and the
workflow used as a Snakemake module from another repository."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import sysconfig
import tomllib
from importlib.metadata import PackageNotFoundError, distribution, requires
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from conftest import REPO

PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def declared(extra: str = "") -> list[Requirement]:
    """The requirements of the base install plus one extra (extras naming anceflow[...] expanded)."""
    out, todo, seen = [], [*PROJECT["dependencies"], *PROJECT["optional-dependencies"].get(extra, [])], set()
    while todo:
        req = Requirement(todo.pop())
        if canonicalize_name(req.name) == "anceflow":
            for name in req.extras - seen:
                seen.add(name)
                todo += PROJECT["optional-dependencies"][name]
        else:
            out.append(req)
    return out


def lower_bounds(reqs: list[Requirement]) -> dict[str, Version]:
    """The effective lower bound per package (the highest of those declared for it)."""
    bounds: dict[str, Version] = {}
    for req in reqs:
        for spec in req.specifier:
            if spec.operator in (">=", "==", "~="):
                name = canonicalize_name(req.name)
                bounds[name] = max(bounds.get(name, Version(spec.version)), Version(spec.version))
    return bounds


def runtime_requirements() -> list[tuple[str, Requirement]]:
    """Requirements a package checks in code rather than in its metadata: transformers switches
    PyTorch off below a version ("Disabling PyTorch because PyTorch >= 2.6 is required")."""
    found = []
    import transformers.utils.import_utils as tiu

    m = re.search(r"PyTorch >= ([0-9.]+) is required", Path(tiu.__file__).read_text())
    if m:
        found.append(("transformers", Requirement(f"torch>={m.group(1)}")))
    return found


@pytest.mark.parametrize("extra", ["", *PROJECT["optional-dependencies"]])
def test_declared_lower_bounds_admit_nothing_a_dependency_rejects(extra):
    """Each lower bound in pyproject must satisfy what every installed dependency of the same
    install asks of that package; otherwise pip would upgrade a user's package anyway (a cluster's
    torch) or the library would refuse it at run time."""
    reqs = declared(extra)
    bounds = lower_bounds(reqs)
    asked: list[tuple[str, Requirement]] = runtime_requirements()
    for req in reqs:
        try:
            metadata = requires(req.name) or []
        except PackageNotFoundError:
            continue  # e.g. faiss-gpu, not installable here; its requirements are on other packages
        for line in metadata:
            dep = Requirement(line)
            if dep.marker is None or dep.marker.evaluate({"extra": ""}):
                asked.append((req.name, dep))
    problems = [f"{who} needs {dep}, but pyproject{f' [{extra}]' if extra else ''} admits "
                f"{canonicalize_name(dep.name)} {bounds[canonicalize_name(dep.name)]}"
                for who, dep in asked
                if canonicalize_name(dep.name) in bounds and dep.specifier
                and not dep.specifier.contains(bounds[canonicalize_name(dep.name)], prereleases=True)]
    assert not problems, "\n".join(problems)
    assert "torch" in bounds and "transformers" in bounds  # the check ran on what matters most


def test_installed_versions_satisfy_the_declared_ranges():
    for req in declared("test"):
        try:
            installed = distribution(req.name).version
        except PackageNotFoundError:
            pytest.fail(f"{req.name} is declared for the tests but not installed")
        assert req.specifier.contains(installed, prereleases=True), f"{req.name} {installed} outside {req}"


def test_faiss_is_a_choice_not_a_clash():
    """faiss-cpu and faiss-gpu ship the same module: never both in one install."""
    base = {canonicalize_name(r.name) for r in declared()}
    assert not base & {"faiss-cpu", "faiss-gpu"}
    for extra in PROJECT["optional-dependencies"]:
        names = {canonicalize_name(r.name) for r in declared(extra)}
        assert not {"faiss-cpu", "faiss-gpu"} <= names, extra
    assert {"sentence-transformers", "tensorboard"} <= {canonicalize_name(r.name) for r in declared("slurm")}
    st = next(r for r in declared("slurm") if canonicalize_name(r.name) == "sentence-transformers")
    assert not st.specifier.contains("4.1.0")  # the Router layout and encode_query need >= 5


def test_package_data_links_point_at_the_repository_files():
    data = REPO / "anceflow" / "data"
    for name, target in {"config.schema.yaml": "workflow/schemas/config.schema.yaml",
                         "config.yaml": "config/config.yaml", "slurm-profile.yaml": "profiles/slurm/config.yaml"}.items():
        assert (data / name).resolve() == (REPO / target).resolve(), name


@pytest.fixture(scope="module")
def installed_copy(tmp_path_factory) -> Path:
    """anceflow installed with `pip install .` (a built wheel, not editable) into a new virtualenv
    that borrows the test environment's other packages through a path file."""
    venv = tmp_path_factory.mktemp("wheel-venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                               check=True, capture_output=True, text=True).stdout.strip())
    # A plain path entry: the test environment's packages, but not its editable anceflow (whose
    # finder a .pth in that folder would install; path entries do not run other .pth files).
    (site / "borrowed.pth").write_text(sysconfig.get_path("purelib") + "\n")
    build = tmp_path_factory.mktemp("build")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(site), "--no-compile", str(REPO)], check=True, cwd=build,
                   env={**os.environ, "PIP_NO_CACHE_DIR": "1"})
    return python


def test_a_non_editable_install_loads_configs_and_installs_the_profile(installed_copy, tmp_path):
    code = ("import anceflow, anceflow.config as c, anceflow.profile as p; "
            "print(anceflow.__file__); cfg = c.load(); print(cfg['model']['name_or_path']); "
            "print(p.install(account='acct'))")
    proc = subprocess.run([installed_copy, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "xdg")})
    assert proc.returncode == 0, proc.stderr[-3000:]
    where, model, profile = proc.stdout.split()
    assert not Path(where).is_relative_to(REPO)  # the installed copy, not this checkout
    assert model == "sentence-transformers/all-MiniLM-L6-v2"
    written = yaml.safe_load(Path(profile).read_text())
    assert written["executor"] == "slurm" and written["default-resources"]["slurm_account"] == "acct"
    assert written["set-resources"]["train"]["gpu"] == 1


MODULE_SNAKEFILE = """\
configfile: "my.yaml"


module anceflow:
    snakefile:
        "{snakefile}"
    config:
        config


use rule * from anceflow as anceflow_*
"""


@pytest.mark.parametrize("entry", ["Snakefile", "workflow/Snakefile"])
def test_the_workflow_runs_as_a_module_of_another_workflow(tmp_path, entry):
    """`module anceflow: snakefile: ...; use rule * from anceflow`: the whole DAG resolves, and a
    job runs (its script and the anceflow package found relative to the module)."""
    (tmp_path / "Snakefile").write_text(MODULE_SNAKEFILE.format(snakefile=REPO / entry))
    (tmp_path / "my.yaml").write_text(yaml.safe_dump(
        {"dataset": {"name": "mine", "source": "demo", "demo": {"passages": 120, "train_queries": 30,
                                                                "dev_queries": 10}}}))
    run = [sys.executable, "-m", "snakemake", "--cores", "2"]
    dry = subprocess.run([*run, "-n"], cwd=tmp_path, capture_output=True, text=True)
    assert dry.returncode == 0, dry.stderr[-3000:]
    jobs = dict(re.findall(r"^(\w+)\s+(\d+)$", dry.stdout.split("Job stats:", 1)[1], re.M))
    assert jobs["anceflow_train"] == "3" and jobs["anceflow_metrics"] == "1", jobs
    proc = subprocess.run([*run, "results/mine/prepared/stats.json"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    stats = yaml.safe_load((tmp_path / "results/mine/prepared/stats.json").read_text())
    assert stats["collection"]["documents"] >= 120
