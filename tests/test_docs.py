"""One truth in the docs: figures, error claims, module lists and captions that agree with the code."""

from __future__ import annotations

import re
import subprocess
import sys

import yaml

from conftest import REPO


def readme_section(title: str) -> str:
    text = (REPO / "README.md").read_text()
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else None]


def test_intermediate_size_per_checkpoint_is_one_figure_everywhere():
    """The schema, docs/configuration.md and README give the same per-checkpoint size of what
    keep_intermediate keeps, and README's parts add up to it."""
    schema = (REPO / "workflow/schemas/config.schema.yaml").read_text()
    config_md = (REPO / "docs/configuration.md").read_text()
    figures = {name: re.findall(r"~([\d.]+) GB per checkpoint", text)
               for name, text in (("schema", schema), ("configuration.md", config_md))}
    assert all(figures.values()), figures
    values = {float(v) for found in figures.values() for v in found}
    assert len(values) == 1, figures
    row = next(line for line in (REPO / "README.md").read_text().splitlines() if line.startswith("| disk per checkpoint"))
    parts = re.search(r"([\d.]+) GB of fp16 corpus vectors, ([\d.]+) GB of training-query vectors and ([\d.]+) GB of "
                      r"mining rows", row)
    assert parts, row
    assert abs(sum(float(p) for p in parts.groups()) - values.pop()) < 0.05


def test_the_dotted_config_form_fails_as_the_docs_say():
    """docs/configuration.md quotes what Snakemake says to `--config ance.rounds=3`."""
    docs = (REPO / "docs/configuration.md").read_text()
    quoted = re.search(r"`ance\.rounds=3` does not work: Snakemake stops with \"([^\"]+)\"", docs)
    assert quoted, "docs/configuration.md must quote Snakemake's message for the dotted form"
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--config", "ance.rounds=3"],
                          cwd=REPO, capture_output=True, text=True)
    assert proc.returncode != 0 and quoted.group(1) in proc.stdout + proc.stderr


def test_readme_layout_names_every_module():
    row = next(line for line in readme_section("Layout").splitlines() if line.startswith("| `anceflow/`"))
    named = set(re.findall(r"`([\w/]+?)(?:\.py)?/?`", row))
    modules = {p.stem for p in (REPO / "anceflow").glob("*.py") if p.stem != "__init__"}
    modules |= {p.name for p in (REPO / "anceflow").iterdir() if (p / "__init__.py").exists()}
    assert not modules - named, f"README's Layout does not name {sorted(modules - named)}"
    assert not named - modules - {"anceflow"}, f"README's Layout names {sorted(named - modules)}, which do not exist"


def test_readme_layout_names_every_rule_file():
    row = next(line for line in readme_section("Layout").splitlines() if line.startswith("| `rules/<stage>.smk`"))
    named = set(re.findall(r"`(\w+)`", row))
    stages = {p.stem for p in (REPO / "rules").glob("*.smk")} - {"common"}
    assert stages == named, (sorted(stages - named), sorted(named - stages))


def test_report_captions_name_every_system_the_report_shows():
    captions = {p.stem: p.read_text() for p in (REPO / "workflow/report").glob("*.rst")}
    for name in ("metrics", "loss", "workflow"):
        assert "bm25neg" in captions[name], name
    assert "BM25" in captions["metrics"] and "zero-shot" in captions["metrics"]


def test_every_config_key_users_touch_is_documented():
    """Every key of config/config.yaml has a row in docs/configuration.md."""
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    docs = (REPO / "docs/configuration.md").read_text()

    def keys(mapping, prefix=""):
        for key, value in mapping.items():
            if isinstance(value, dict) and value and key not in ("split_relevance_level", "ir_datasets"):
                yield from keys(value, f"{prefix}{key}.")
            else:
                yield f"{prefix}{key}"

    missing = [k for k in keys(config) if f"`{k}`" not in docs and f"`{k.rsplit('.', 1)[-1]}`" not in docs]
    assert not missing, missing


def test_readme_commands_put_targets_before_configfile():
    """--configfile takes every name after it, so `snakemake export --configfile x` works but
    `snakemake --configfile x export` reads `export` as a config file: README never writes that."""
    text = (REPO / "README.md").read_text()
    commands = [line for block in re.findall(r"```bash\n(.*?)```", text, re.S) for line in block.splitlines()]
    commands += re.findall(r"`([^`\n]*snakemake[^`\n]*)`", re.sub(r"```.*?```", "", text, flags=re.S))
    checked = 0
    for command in commands:
        if "snakemake" in command and "--configfile" in command:
            after = command.split("--configfile", 1)[1].split("#", 1)[0].split()
            assert len(after) <= 1 or after[1].startswith("-"), command
            checked += 1
    assert checked >= 5
