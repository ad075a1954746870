"""The per-stage conda environments: valid YAML, pinned, and naming every package their rules import.

No conda channel is reachable here, so the environments are not built; this checks what can be
checked statically: for each rule, the third-party modules imported by its script and by the
anceflow modules that script uses (transitively) must be provided by the rule's conda env.
"""

import ast
import re
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO

# import name -> conda/pip package names that provide it
PROVIDERS = {
    "yaml": {"pyyaml"}, "torch": {"pytorch"}, "faiss": {"faiss-gpu", "faiss-cpu"},
    "pytrec_eval": {"pytrec-eval-terrier"}, "jsonschema": {"jsonschema"}, "pandas": {"pandas"},
    "pyarrow": {"pyarrow"}, "numpy": {"numpy"}, "tqdm": {"tqdm"}, "transformers": {"transformers"},
    "safetensors": {"safetensors"}, "matplotlib": {"matplotlib", "matplotlib-base"},
    "jnius_config": {"pyserini"}, "pyserini": {"pyserini"}, "huggingface_hub": {"huggingface_hub"},
    "ir_datasets": {"ir_datasets"},
}
STDLIB = set(sys.stdlib_module_names)


def env_packages(path: Path) -> set[str]:
    spec = yaml.safe_load(path.read_text())
    names = set()
    for dep in spec["dependencies"]:
        items = dep["pip"] if isinstance(dep, dict) else [dep]
        for item in items:
            names.add(re.split(r"[=<>!~ ]", item, maxsplit=1)[0].lower())
    return names


def imports(path: Path, seen: set[Path]) -> set[str]:
    """Top-level third-party modules imported by a file and by the anceflow modules it imports."""
    if path in seen:
        return set()
    seen.add(path)
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else []
        for name in names:
            top = name.split(".")[0]
            if top == "anceflow":
                module = REPO / (name.replace(".", "/") + ".py")
                package = REPO / name.replace(".", "/") / "__init__.py"
                found |= imports(module if module.exists() else package, seen)
                if isinstance(node, ast.ImportFrom):  # from anceflow.prepare import demo
                    for alias in node.names:
                        sub = REPO / name.replace(".", "/") / f"{alias.name}.py"
                        if sub.exists():
                            found |= imports(sub, seen)
            elif top not in STDLIB and top != "snakemake":
                found.add(top)
    return found


def rules_with_envs():
    for smk in sorted((REPO / "rules").glob("*.smk")):
        for block in re.split(r"\n(?=rule \w+:)", smk.read_text()):
            name = re.match(r"rule (\w+):", block)
            conda = re.search(r'conda:\s*\n\s*"([^"]+)"', block)
            script = re.search(r'script:\s*\n\s*"([^"]+)"', block)
            if name and conda and script:
                yield name.group(1), (smk.parent / conda.group(1)).resolve(), (smk.parent / script.group(1)).resolve()


ENV_FILES = sorted((REPO / "envs").glob("*.yaml"))


@pytest.mark.parametrize("path", ENV_FILES, ids=lambda p: p.name)
def test_env_is_valid_and_pinned(path):
    spec = yaml.safe_load(path.read_text())
    assert spec["channels"] and spec["dependencies"]
    for dep in spec["dependencies"]:
        for item in (dep["pip"] if isinstance(dep, dict) else [dep]):
            if item not in ("pip", "cpuonly"):
                assert re.search(r"[=<>]", item), f"{path.name}: {item!r} is not pinned"


def test_every_rule_with_a_script_has_an_env_that_provides_its_imports():
    checked = 0
    for rule, env, script in rules_with_envs():
        assert env.exists(), f"rule {rule}: {env} missing"
        provided = env_packages(env)
        for module in imports(script, set()):
            providers = PROVIDERS.get(module)
            assert providers is not None, f"rule {rule} imports {module!r}: add it to PROVIDERS and to {env.name}"
            assert providers & provided, f"rule {rule} imports {module!r} but {env.name} has none of {providers}"
        checked += 1
    assert checked >= 15


def test_bm25_env_brings_java_21():
    spec = yaml.safe_load((REPO / "envs/bm25.yaml").read_text())
    java = [d for d in spec["dependencies"] if isinstance(d, str) and d.startswith("openjdk")]
    assert java and int(re.search(r"\d+", java[0].split("=", 1)[1]).group()) >= 21


def test_gpu_env_has_cuda_torch_and_faiss_gpu():
    names = env_packages(REPO / "envs/train.yaml")
    assert {"pytorch", "pytorch-cuda", "faiss-gpu"} <= names
