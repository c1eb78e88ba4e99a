"""The demo's machine fit: teacher caps scale by a tier of the measured speed, and the report says so."""

from __future__ import annotations

import pytest

from distillery.config import load_config
from distillery.pipeline.budget import REFERENCE_GFLOPS, fit_to_machine, measure_speed


@pytest.mark.parametrize(("speed", "factor"), [(REFERENCE_GFLOPS * 3, 1.0), (REFERENCE_GFLOPS, 1.0),
                                               (REFERENCE_GFLOPS * 0.8, 0.5), (REFERENCE_GFLOPS * 0.1, 0.25)])
def test_factor_is_a_tier_of_the_speed(speed: float, factor: float) -> None:
    _, _, fit = fit_to_machine(load_config(profile="demo"), 64, speed=speed)
    assert fit.factor == factor


def test_a_slow_machine_gets_less_teacher_work_and_a_report_line() -> None:
    cfg = load_config(profile="demo")
    fitted, eval_pairs, fit = fit_to_machine(cfg, 64, speed=REFERENCE_GFLOPS * 0.6)
    assert fitted.teacher.max_seed_pairs == cfg.teacher.max_seed_pairs // 2
    assert fitted.annotate.max_pairs == cfg.annotate.max_pairs // 2 and eval_pairs == 32
    assert fitted.teacher.dapt.max_steps == 2  # ceil(3 × 0.5)
    assert fitted.teacher.max_preference_prompts == cfg.teacher.max_preference_prompts // 2
    assert cfg.teacher.max_seed_pairs == 320  # the configured caps are left as they were
    assert fit.changes["teacher.max_seed_pairs"] == [320, 160]
    text = "\n".join(fit.lines())
    assert "## Machine fit" in text and "| `annotate.max_pairs` | 128 | 64 |" in text and "--no-fit" in text


def test_floors_and_unbounded_caps_are_kept() -> None:
    cfg = load_config(profile="demo", overrides={"teacher": {"max_seed_pairs": 0}, "annotate": {"max_pairs": 40}})
    fitted, eval_pairs, fit = fit_to_machine(cfg, 0, speed=1.0)
    assert fit.factor == 0.25
    assert fitted.teacher.max_seed_pairs == 0 and eval_pairs == 0  # 0 means "all": never turned into a cap
    assert fitted.annotate.max_pairs == 40  # below the floor of 64 already: unchanged


def test_fast_machine_changes_nothing() -> None:
    cfg = load_config(profile="demo")
    fitted, eval_pairs, fit = fit_to_machine(cfg, 64, speed=REFERENCE_GFLOPS * 2)
    assert fitted.to_dict() == cfg.to_dict() and eval_pairs == 64 and not fit.changes


def test_probe_measures_a_positive_speed() -> None:
    assert measure_speed(bf16=False, seconds=0.05) > 0
