"""Configuration: validate a config dict against the JSON schema and fill defaults.

The schema lives in ``workflow/schemas/config.schema.yaml`` (the Snakemake catalog
convention). We validate here rather than with ``snakemake.utils.validate`` so the
error names the offending key as a dotted path (``bm25.k1``) and the same check runs
in unit tests without Snakemake.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from anceflow.errors import PermanentError
from anceflow.splits import beir_folder_splits, beir_split_message, local_folder_splits, split_message

# workflow/schemas/config.schema.yaml, reached through the package (anceflow/data/ links to it in the
# repository and holds a copy in an installed wheel), so a non-editable install finds it too.
SCHEMA_PATH = Path(__file__).resolve().parent / "data" / "config.schema.yaml"


class ConfigError(PermanentError, ValueError):
    """An invalid configuration value; the message names the key."""


def load_schema(path: str | Path = SCHEMA_PATH) -> dict:
    with open(path, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def _with_defaults(validator_class):
    """A validator class that fills each missing property with its schema default."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


_Validator = _with_defaults(jsonschema.Draft7Validator)


def _describe(error: jsonschema.ValidationError) -> str:
    key = ".".join(str(p) for p in error.absolute_path) or "<top level>"
    if error.validator == "additionalProperties":
        unknown = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        prefix = f"{key}." if error.absolute_path else ""
        names = ", ".join(f"'{prefix}{u}'" for u in unknown)
        allowed = ", ".join(sorted(error.schema.get("properties", {})))
        return f"unknown config key {names} (allowed here: {allowed})"
    return f"config key '{key}': {error.message}"


def _types(schema: dict) -> list[str]:
    kind = schema.get("type", [])
    return [kind] if isinstance(kind, str) else list(kind)


def coerce_strings(config: Any, schema: dict) -> Any:
    """Turn strings into the numbers and booleans the schema asks for, in place where possible.

    ``snakemake --config 'ance={rounds: 3}'`` hands nested values over as strings ('3'); a string
    that reads as YAML of a wanted type (3, 1.0e-6, true) takes that type, anything else is left
    for validation to report.
    """
    if isinstance(config, dict):
        for key, sub in schema.get("properties", {}).items():
            if key in config:
                config[key] = coerce_strings(config[key], sub)
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for key in config:
                if key not in schema.get("properties", {}):
                    config[key] = coerce_strings(config[key], extra)
        return config
    if isinstance(config, list) and isinstance(schema.get("items"), dict):
        return [coerce_strings(item, schema["items"]) for item in config]
    wanted = _types(schema)
    if isinstance(config, str) and "string" not in wanted and not schema.get("enum"):
        try:
            value = yaml.safe_load(config)
        except yaml.YAMLError:
            return config
        ok = {"integer": isinstance(value, int) and not isinstance(value, bool),
              "number": isinstance(value, (int, float)) and not isinstance(value, bool),
              "boolean": isinstance(value, bool), "null": value is None, "array": isinstance(value, list)}
        if any(ok.get(t, False) for t in wanted):
            return coerce_strings(value, schema) if isinstance(value, list) else value
    if isinstance(config, str) and schema.get("enum") and config not in schema["enum"]:
        value = yaml.safe_load(config) if config.strip() else config
        if value in schema["enum"]:
            return value
    return config


def validate(config: dict[str, Any], schema: dict | None = None) -> dict[str, Any]:
    """Validate ``config`` in place (strings that should be numbers or booleans coerced), fill
    defaults, and return it.

    Raises ConfigError listing every problem, each naming its key.
    """
    schema = schema if schema is not None else load_schema()
    coerce_strings(config, schema)
    validator = _Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(_describe(e) for e in errors))
    problems = consistency_problems(config)
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))
    return config


def consistency_problems(config: dict[str, Any]) -> list[str]:
    """What the schema cannot say: settings that contradict each other, each naming its keys."""
    problems = []
    dataset = config["dataset"]
    for key, split in _split_keys(dataset):
        if not re.fullmatch(r"[A-Za-z0-9_-]+", split):
            problems.append(f"config key '{key}': split name {split!r} may hold only letters, digits, '_' and '-' "
                            "(it names files and rules; MS MARCO's dev.small is the split 'dev')")
    name = config["model"]["name_or_path"]
    if name.startswith(("/", "./", "../", "~")) and not Path(name).expanduser().is_dir():
        problems.append(f"config key 'model.name_or_path': {name!r} is not a folder (a hub id has the form "
                        "'org/name'; a local model is a folder holding config.json)")
    if dataset["train_split"] in dataset["eval_splits"]:
        problems.append(f"config key 'dataset.eval_splits': the training split {dataset['train_split']!r} is listed "
                        "among the evaluation splits; its metrics would not be held out (evaluate another split)")
    problems += _source_problems(dataset)
    problems += negatives_problems(config)
    for depth_key, count_key in (("bm25.topk", "negatives_per_query"), ("ance.topk", "ance.negatives_per_query")):
        depth, count = _get(config, depth_key), _get(config, count_key)
        if depth < count:
            problems.append(f"config key '{depth_key}' ({depth}) is smaller than '{count_key}' ({count}): "
                            f"negatives are drawn from the top {depth}, so fewer than {count} would come back")
    return problems


def _split_keys(dataset: dict[str, Any]) -> list[tuple[str, str]]:
    """(config key, split) for the training split and each evaluation split."""
    return [("dataset.train_split", dataset["train_split"]),
            *[(f"dataset.eval_splits.{i}", s) for i, s in enumerate(dataset["eval_splits"])]]


def _source_problems(dataset: dict[str, Any]) -> list[str]:
    """Splits the data does not have, found before anything is downloaded or prepared: a BEIR dataset
    (known by name, or a folder) without qrels for a split; dataset.ir_datasets ids (anceflow.irds)."""
    problems = []
    source, path = dataset["source"], dataset["path"]
    if source == "beir" and path:
        from anceflow.download import BEIR_SPLITS

        if Path(path).is_dir():
            available, where = beir_folder_splits(path), f"the BEIR folder {path!r}"
        else:
            available, where = BEIR_SPLITS.get(path), f"the BEIR dataset {path!r}"
        for key, split in _split_keys(dataset):
            if available is not None and split not in available:
                problems.append(f"config key '{key}': {beir_split_message(where, split, list(available))}")
    if source == "local" and path and Path(path).is_dir():
        available = local_folder_splits(path)
        for key, split in _split_keys(dataset):
            if split not in available:
                problems.append(f"config key '{key}': "
                                f"{split_message(f'the folder {path!r}', split, available)} (a split is a "
                                "queries.<split>.tsv with its qrels.<split>.tsv)")
    if source == "ir_datasets":
        from anceflow import irds

        splits = [s for _, s in _split_keys(dataset)]
        problems += irds.id_problems(dataset["ir_datasets"], splits, dataset["eval_splits"])
    return problems


def negatives_problems(config: dict[str, Any]) -> list[str]:
    """The false-negative controls of ance.negatives against the mining depth, and a cross-encoder
    given as a folder that could not serve as one (a hub id is checked when rule fetch_cross_encoder
    fetches it)."""
    from anceflow.model_source import cross_encoder_problem

    ance, problems = config["ance"], []
    window = ance["negatives"]["rank_window"]
    if window is not None:
        a, b = window
        key = "config key 'ance.negatives.rank_window'"
        if a >= b:
            problems.append(f"{key}: [{a}, {b}] is empty (positions a..b-1 of the mining run, so a < b)")
        elif b > ance["topk"]:
            problems.append(f"{key}: [{a}, {b}] reaches beyond 'ance.topk' ({ance['topk']}): the mining run "
                            f"has only positions 0..{ance['topk'] - 1}")
        elif b - a < ance["negatives_per_query"]:
            problems.append(f"{key}: [{a}, {b}] holds {b - a} positions, fewer than 'ance.negatives_per_query' "
                            f"({ance['negatives_per_query']}), so fewer negatives would come back")
    name = ance["negatives"]["cross_encoder"]["name_or_path"]
    if name is not None:
        key = "config key 'ance.negatives.cross_encoder.name_or_path'"
        folder = Path(name).expanduser()
        if folder.is_dir():
            problem = cross_encoder_problem(folder)
            if problem:
                problems.append(f"{key}: {problem}")
        elif name.startswith(("/", "./", "../", "~")):
            problems.append(f"{key}: {name!r} is not a folder (a hub id has the form 'org/name')")
    return problems


def _get(config: dict[str, Any], dotted: str):
    for part in dotted.split("."):
        config = config[part]
    return config


def load(path: str | Path | None = None, overrides: dict | None = None) -> dict[str, Any]:
    """Load a YAML config (default: config/config.yaml), merge overrides, validate."""
    config: dict[str, Any] = {}
    if path is not None:
        with open(path, encoding="utf-8") as fh:
            config = yaml.safe_load(fh) or {}
    if overrides:
        config = deep_merge(config, overrides)
    return validate(config)


def deep_merge(base: dict, update: dict) -> dict:
    """Return ``base`` updated recursively with ``update`` (neither is modified)."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out
