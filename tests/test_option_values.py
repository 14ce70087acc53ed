"""Options are validated where they are parsed (argparse types of :mod:`harness.option_types`): a count below its
least, a level outside (0, 1) or a bound that is not above 0 is a usage error naming the option, never accepted nor
silently replaced by its default; an ini value is checked the same way, naming the ini file and key."""

from __future__ import annotations

import pytest

from harness.plugin.options import settings_from

pytest_plugins = ["pytester"]


@pytest.mark.parametrize("option, value, says", [
    ("--eval-limit", "-5", "must be at least 1"),
    ("--eval-limit", "0", "must be at least 1"),
    ("--calibration-samples", "-1", "must be at least 1"),
    ("--calibration-samples", "0", "must be at least 1"),
    ("--confidence", "0", "strictly between 0 and 1"),
    ("--confidence", "1.5", "strictly between 0 and 1"),
    ("--bootstrap-resamples", "0", "must be at least 100"),
    ("--latency-rounds", "0", "must be at least 1"),
    ("--threads", "0", "must be at least 1"),
    ("--retries", "-1", "must be at least 0"),
    ("--item-timeout", "0", "above 0"),
    ("--build-timeout", "nan", "above 0"),
    ("--eval-limit", "many", "not a whole number"),
])
def test_a_bad_option_value_is_a_usage_error_naming_the_option(pytester: pytest.Pytester, option, value, says):
    with pytest.raises(pytest.UsageError) as refused:
        pytester.parseconfig(f"{option}={value}")
    error = str(refused.value)
    assert option in error and says in error


@pytest.mark.parametrize("key, value, says", [
    ("segconform_eval_limit", "-3", "must be at least 1"),
    ("segconform_confidence", "0", "strictly between 0 and 1"),
    ("segconform_bootstrap_resamples", "0", "must be at least 100"),
    ("segconform_calibration_samples", "fifty", "not a whole number"),
])
def test_a_bad_ini_value_is_a_usage_error_naming_the_file_and_key(pytester: pytest.Pytester, key, value, says):
    ini = pytester.makeini(f"[pytest]\n{key} = {value}\n")
    config = pytester.parseconfig()
    with pytest.raises(pytest.UsageError) as refused:
        settings_from(config, pytester.path)
    message = str(refused.value)
    assert str(ini) in message and key in message and says in message


def test_good_values_are_taken_as_given(pytester: pytest.Pytester):
    config = pytester.parseconfig("--eval-limit=7", "--calibration-samples=3", "--confidence=0.9",
                                  "--bootstrap-resamples=200")
    settings = settings_from(config, pytester.path)
    assert (settings.eval_limit, settings.calibration_samples) == (7, 3)
    assert (settings.bootstrap.confidence, settings.bootstrap.resamples) == (0.9, 200)


@pytest.mark.parametrize("argv, says", [
    (["localise", "u2netp-int8-percentile-onnxruntime", "--max-builds", "0"], "0: must be at least 1 (a count)"),
    (["emulate-int8", "u2netp-int8-percentile-onnxruntime", "--eval-limit", "two"], "'two' is not a whole number"),
])
def test_the_command_line_s_counts_are_checked_by_the_same_types(argv, says, capsys):
    from harness.cli import main

    with pytest.raises(SystemExit) as refused:
        main(argv)
    error = capsys.readouterr().err
    assert refused.value.code == 2 and says in error and argv[2] in error
