from __future__ import annotations

import pytest

from distillery.config import ConfigError, load_config, parse_overrides


def test_profiles_build_and_differ():
    tiny, demo, full = (load_config(p) for p in ("tiny", "demo", "full"))
    assert tiny.student.model == "tiny" and demo.student.model == "minilm"
    assert full.student.max_length > demo.student.max_length
    assert demo.profile == "demo"


def test_bad_value_names_field_and_range():
    with pytest.raises(ConfigError, match=r"train\.lr=5\.0: must be in \(0\.0, 1\.0\]"):
        load_config("demo", overrides={"train": {"lr": "5.0"}})
    with pytest.raises(ConfigError, match=r"data\.label_set='5class': must be one of 3class, 4class"):
        load_config("demo", overrides={"data": {"label_set": "5class"}})
    with pytest.raises(ConfigError, match=r"train\.epochs='many': must be of type int"):
        load_config("demo", overrides={"train": {"epochs": "many"}})


def test_unknown_field_and_section_are_named():
    with pytest.raises(ConfigError, match=r"train\.learning_rate: unknown field"):
        load_config("demo", overrides={"train": {"learning_rate": "1"}})
    with pytest.raises(ConfigError, match=r"nosuch: unknown field"):
        load_config("demo", overrides={"nosuch": {"x": 1}})


def test_precedence_defaults_profile_yaml_flags(tmp_path):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("train:\n  lr: 0.0003\n  epochs: 7\nstudent:\n  item_fields: [title]\n")
    cfg = load_config("tiny", cfg_file, parse_overrides(["train.epochs=9"]))
    assert cfg.train.lr == 0.0003  # YAML beats the tiny profile's 1e-3
    assert cfg.train.epochs == 9  # --set beats YAML
    assert cfg.student.item_fields == ["title"]
    assert cfg.student.model == "tiny"  # profile beats defaults


def test_yaml_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: the config file must hold a mapping"):
        load_config("demo", bad)
    with pytest.raises(ConfigError, match=r"expected SECTION\.FIELD=VALUE"):
        parse_overrides(["train.lr"])


def test_split_fractions_must_leave_training_queries():
    with pytest.raises(ConfigError, match="must be below 1"):
        load_config("demo", overrides={"data": {"test_fraction": "0.6", "val_fraction": "0.5"}})
