"""Tests for anceflow.config: schema validation, defaults, error messages, merging."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from anceflow.config import ConfigError, deep_merge, load, load_schema, validate

REPO = Path(__file__).resolve().parents[1]


def _schema_defaults(schema: dict) -> dict:
    """Every default the schema declares, recursively (what validate({}) must produce)."""
    out = {}
    for name, sub in schema.get("properties", {}).items():
        if "default" in sub:
            value = copy.deepcopy(sub["default"])
            if sub.get("type") == "object" and isinstance(value, dict):
                value = {**_schema_defaults(sub), **value}
            out[name] = value
    return out


def _error(config: dict) -> str:
    with pytest.raises(ConfigError) as info:
        validate(config)
    return str(info.value)


# --------------------------------------------------------------------------- defaults


def test_empty_config_gets_all_defaults_nested():
    config = {}
    result = validate(config)
    assert result is config  # filled in place
    assert config["seed"] == 42
    assert config["results_dir"] == "results"
    assert config["dataset"]["source"] == "demo"
    assert config["dataset"]["path"] is None
    assert config["dataset"]["eval_splits"] == ["dev"]
    assert config["dataset"]["demo"] == {"passages": 1000, "train_queries": 300, "dev_queries": 100}
    assert config["model"]["name_or_path"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert config["model"]["doc_chunks"] == 1
    assert config["tokenize"] == {"batch_size": 2048, "field_separator": "space"}
    assert config["bm25"] == {"k1": 0.9, "b": 0.4, "topk": 200, "java": None}
    assert config["evaluate"] == {"relevance_level": 1, "split_relevance_level": {}, "depth": 1000}
    assert config == _schema_defaults(load_schema())


def test_partial_nested_section_keeps_values_and_fills_rest():
    config = validate({"bm25": {"k1": 1.2}, "dataset": {"demo": {"passages": 50}}})
    assert config["bm25"]["k1"] == 1.2
    assert config["bm25"]["b"] == 0.4
    assert config["bm25"]["java"] is None
    assert config["dataset"]["demo"] == {"passages": 50, "train_queries": 300, "dev_queries": 100}
    assert config["dataset"]["name"] == "demo"


def test_defaults_are_not_shared_between_calls():
    a = validate({})
    a["dataset"]["eval_splits"].append("test")
    a["bm25"]["k1"] = 5.0
    b = validate({})
    assert b["dataset"]["eval_splits"] == ["dev"]
    assert b["bm25"]["k1"] == 0.9


def test_repo_config_yaml_validates():
    path = REPO / "config" / "config.yaml"
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    config = validate(copy.deepcopy(raw))
    # every top-level section of the schema is present after validation
    assert set(config) == set(load_schema()["properties"])
    # values the file sets are kept
    for section, values in raw.items():
        if isinstance(values, dict):
            for key, value in values.items():
                assert config[section][key] == value, f"{section}.{key}"
        else:
            assert config[section] == values, section
    assert load(path) == config


# --------------------------------------------------------------------------- errors name the key


def test_unknown_top_level_key():
    msg = _error({"seeed": 1})
    assert "'seeed'" in msg
    assert "unknown config key" in msg


def test_unknown_nested_key_is_dotted():
    msg = _error({"bm25": {"k_1": 1.0}})
    assert "'bm25.k_1'" in msg
    assert "k1" in msg  # lists the allowed keys


def test_unknown_deeply_nested_key_is_dotted():
    msg = _error({"dataset": {"demo": {"pasages": 10}}})
    assert "'dataset.demo.pasages'" in msg


def test_wrong_type_names_dotted_key():
    msg = _error({"bm25": {"k1": "high"}})
    assert "bm25.k1" in msg
    assert "'high'" in msg


def test_wrong_type_for_section():
    msg = _error({"model": 5})
    assert "'model'" in msg
    assert "object" in msg


def test_bool_is_not_an_integer():
    msg = _error({"seed": True})
    assert "'seed'" in msg


@pytest.mark.parametrize("config, key", [
    ({"bm25": {"k1": 0}}, "bm25.k1"),                     # exclusiveMinimum 0
    ({"bm25": {"b": 1.5}}, "bm25.b"),                     # maximum 1
    ({"model": {"max_doc_len": 4}}, "model.max_doc_len"),  # minimum 8
    ({"negatives_per_query": 0}, "negatives_per_query"),
    ({"dataset": {"eval_splits": []}}, "dataset.eval_splits"),
    ({"dataset": {"eval_splits": ["dev", 3]}}, "dataset.eval_splits.1"),
    ({"dataset": {"name": "../escape"}}, "dataset.name"),
    ({"dataset": {"demo": {"passages": 3}}}, "dataset.demo.passages"),
])
def test_range_and_pattern_violations_name_key(config, key):
    assert f"'{key}'" in _error(config)


def test_enum_violation_dataset_source():
    msg = _error({"dataset": {"source": "msmarco"}})
    assert "dataset.source" in msg
    assert "'msmarco'" in msg
    assert "beir" in msg  # names the allowed values


def test_all_errors_are_reported():
    msg = _error({"bm25": {"k1": "x"}, "dataset": {"source": "nope"}, "typo": 1})
    assert "bm25.k1" in msg
    assert "dataset.source" in msg
    assert "'typo'" in msg


def test_config_error_is_value_error():
    assert issubclass(ConfigError, ValueError)


# --------------------------------------------------------------------------- merging


def test_deep_merge_nested_without_mutating():
    base = {"a": 1, "bm25": {"k1": 0.9, "b": 0.4}, "dataset": {"eval_splits": ["dev"], "demo": {"passages": 10}}}
    update = {"bm25": {"k1": 1.5}, "dataset": {"eval_splits": ["test"], "demo": {"dev_queries": 3}}, "new": {"x": 1}}
    base_copy, update_copy = copy.deepcopy(base), copy.deepcopy(update)
    merged = deep_merge(base, update)
    assert merged == {
        "a": 1,
        "bm25": {"k1": 1.5, "b": 0.4},
        "dataset": {"eval_splits": ["test"], "demo": {"passages": 10, "dev_queries": 3}},
        "new": {"x": 1},
    }
    assert base == base_copy and update == update_copy
    merged["new"]["x"] = 2
    merged["bm25"]["b"] = 0.0
    assert update["new"]["x"] == 1 and base["bm25"]["b"] == 0.4


def test_deep_merge_scalar_replaces_dict_and_vice_versa():
    assert deep_merge({"a": {"b": 1}}, {"a": 3}) == {"a": 3}
    assert deep_merge({"a": 3}, {"a": {"b": 1}}) == {"a": {"b": 1}}


def test_user_override_merges_and_validates(tmp_path):
    user = tmp_path / "user.yaml"
    user.write_text("dataset:\n  name: cran\n  source: local\n  path: /data/cran\nbm25:\n  b: 0.7\n", encoding="utf-8")
    config = load(user, overrides={"bm25": {"k1": 1.5}, "dataset": {"eval_splits": ["test"]}})
    assert config["bm25"] == {"k1": 1.5, "b": 0.7, "topk": 200, "java": None}
    assert config["dataset"]["name"] == "cran"
    assert config["dataset"]["source"] == "local"
    assert config["dataset"]["path"] == "/data/cran"
    assert config["dataset"]["eval_splits"] == ["test"]
    assert config["dataset"]["train_split"] == "train"
    assert config["seed"] == 42


def test_load_without_file_gives_defaults():
    assert load() == validate({})


def test_load_empty_yaml_gives_defaults(tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("", encoding="utf-8")
    assert load(empty) == validate({})


def test_invalid_override_is_reported(tmp_path):
    with pytest.raises(ConfigError) as info:
        load(None, overrides={"bm25": {"topk": 0}})
    assert "bm25.topk" in str(info.value)


@pytest.mark.parametrize("config, message", [
    ({"dataset": {"train_split": "train", "eval_splits": ["dev", "train"]}},
     "config key 'dataset.eval_splits': the training split 'train' is listed among the evaluation splits"),
    ({"bm25": {"topk": 10}, "negatives_per_query": 20}, "config key 'bm25.topk' (10) is smaller than 'negatives_per_query' (20)"),
    ({"ance": {"topk": 5, "negatives_per_query": 8}},
     "config key 'ance.topk' (5) is smaller than 'ance.negatives_per_query' (8)"),
    ({"dataset": {"eval_splits": ["dev.small"]}},
     "config key 'dataset.eval_splits.0': split name 'dev.small' may hold only letters, digits"),
    ({"dataset": {"train_split": "a/b"}}, "config key 'dataset.train_split': split name 'a/b'"),
    ({"model": {"name_or_path": "./no/such/model"}}, "config key 'model.name_or_path': './no/such/model' is not a folder"),
])
def test_contradicting_settings_are_rejected(config, message):
    with pytest.raises(ConfigError) as err:
        validate(config)
    assert message in str(err.value)


def test_a_split_the_data_lacks_stops_at_config_time(tmp_path):
    """BEIR's scifact (by name, before downloading it; or a folder) has train and test, no dev; a local
    folder has the splits of its queries.<split>.tsv/qrels.<split>.tsv pairs."""
    with pytest.raises(ConfigError) as err:
        validate({"dataset": {"source": "beir", "path": "scifact"}})
    assert ("config key 'dataset.eval_splits.0': the BEIR dataset 'scifact' has no qrels for split 'dev'; its splits "
            "are 'train', 'test' (BEIR calls its evaluation split 'test')") in str(err.value)
    validate({"dataset": {"source": "beir", "path": "scifact", "eval_splits": ["test"]}})
    validate({"dataset": {"source": "beir", "path": "my-own-beir-name"}})  # unknown names are not checked

    beir = tmp_path / "beir"
    (beir / "qrels").mkdir(parents=True)
    (beir / "qrels/test.tsv").write_text("")
    with pytest.raises(ConfigError) as err:
        validate({"dataset": {"source": "beir", "path": str(beir), "eval_splits": ["test"]}})
    assert f"config key 'dataset.train_split': the BEIR folder '{beir}' has no qrels for split 'train'" in str(err.value)

    local = tmp_path / "local"
    local.mkdir()
    for name in ("queries.train.tsv", "qrels.train.tsv", "queries.test.tsv", "qrels.test.tsv", "qrels.dev.tsv"):
        (local / name).write_text("")
    with pytest.raises(ConfigError) as err:
        validate({"dataset": {"source": "local", "path": str(local)}})
    assert (f"config key 'dataset.eval_splits.0': the folder '{local}' has no qrels for split 'dev'; its splits are "
            "'test', 'train'") in str(err.value)


def test_strings_from_the_command_line_become_the_numbers_the_schema_wants():
    """`snakemake --config 'ance={rounds: 3}'` gives nested values as strings; they are coerced."""
    config = validate({"ance": {"rounds": "3", "query_fraction": "0.2", "control": "true", "staleness": "1"},
                       "train": {"lr": "1.0e-6", "temperature": "null"}, "evaluate": {"split_relevance_level": {"dl19": "2"}}})
    assert config["ance"]["rounds"] == 3 and config["ance"]["query_fraction"] == 0.2
    assert config["ance"]["control"] is True and config["ance"]["staleness"] == 1
    assert config["train"]["lr"] == 1e-6 and config["train"]["temperature"] is None
    assert config["evaluate"]["split_relevance_level"] == {"dl19": 2}
    with pytest.raises(ConfigError, match="config key 'ance.rounds': 'three' is not of type 'integer'"):
        validate({"ance": {"rounds": "three"}})


def test_config_yaml_lists_every_default():
    """config/config.yaml is the schema's defaults written out, key for key (docs/configuration.md)."""
    written = yaml.safe_load((Path(__file__).resolve().parents[1] / "config/config.yaml").read_text())
    assert written == validate({})


# --------------------------------------------------------------------------- ance.negatives (false-negative controls)


def tiny_cross_encoder(folder: Path, architecture: str = "BertForSequenceClassification", labels: int = 1) -> Path:
    """A model folder's config.json, all the config-time check reads."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"architectures": [architecture],
                                                    "id2label": {str(i): f"LABEL_{i}" for i in range(labels)}}))
    return folder


@pytest.mark.parametrize("negatives, message", [
    ({"rank_window": [10, 300]}, "config key 'ance.negatives.rank_window': [10, 300] reaches beyond 'ance.topk' (200)"),
    ({"rank_window": [50, 50]}, "config key 'ance.negatives.rank_window': [50, 50] is empty"),
    ({"rank_window": [190, 200]}, "config key 'ance.negatives.rank_window': [190, 200] holds 10 positions, fewer than "
                                  "'ance.negatives_per_query' (20)"),
    ({"cross_encoder": {"name_or_path": "./no/such/ce"}},
     "config key 'ance.negatives.cross_encoder.name_or_path': './no/such/ce' is not a folder"),
])
def test_bad_false_negative_controls_name_the_key(negatives, message):
    with pytest.raises(ConfigError) as err:
        validate({"ance": {"negatives": negatives}})
    assert message in str(err.value)


@pytest.mark.parametrize("negatives, key", [
    ({"relative_margin": 0}, "ance.negatives.relative_margin"),      # (0, 1]
    ({"relative_margin": 1.5}, "ance.negatives.relative_margin"),
    ({"relative_margin": -0.1}, "ance.negatives.relative_margin"),
    ({"rank_window": [5]}, "ance.negatives.rank_window"),            # two positions
    ({"rank_window": [-1, 20]}, "ance.negatives.rank_window.0"),
    ({"cross_encoder": {"threshold": 2}}, "ance.negatives.cross_encoder.threshold"),
    ({"cross_encoder": {"mode": "drop"}}, "ance.negatives.cross_encoder.mode"),
    ({"cross_encoder": {"oversample": 0.5}}, "ance.negatives.cross_encoder.oversample"),
    ({"near_duplicate_jaccard": 0}, "ance.negatives.near_duplicate_jaccard"),
])
def test_out_of_range_controls_name_the_key(negatives, key):
    assert f"'{key}'" in _error({"ance": {"negatives": negatives}})


def test_a_cross_encoder_folder_must_be_a_relevance_classifier(tmp_path):
    good = tiny_cross_encoder(tmp_path / "ce")
    assert validate({"ance": {"negatives": {"cross_encoder": {"name_or_path": str(good)}}}})
    for folder, problem in [(tiny_cross_encoder(tmp_path / "bi", "BertModel"), "not a sequence-classification model"),
                            (tiny_cross_encoder(tmp_path / "nli", labels=3), "has 3 labels"),
                            (tmp_path, "has no config.json")]:
        msg = _error({"ance": {"negatives": {"cross_encoder": {"name_or_path": str(folder)}}}})
        assert "config key 'ance.negatives.cross_encoder.name_or_path'" in msg and problem in msg
    # A hub id is checked when rule fetch_cross_encoder fetches it (tests/test_crossencoder.py).
    assert validate({"ance": {"negatives": {"cross_encoder": {"name_or_path": "cross-encoder/ms-marco-MiniLM-L6-v2"}}}})


def test_a_rank_window_from_the_command_line_becomes_integers():
    config = validate({"ance": {"negatives": {"rank_window": "[10, 200]", "relative_margin": "0.05"}}})
    assert config["ance"]["negatives"]["rank_window"] == [10, 200]
    assert config["ance"]["negatives"]["relative_margin"] == 0.05
