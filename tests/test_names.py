"""The one vocabulary: every method has an implementation, names are checked."""

from __future__ import annotations

import pytest

from neurossl import names
from neurossl.methods.registry import get_method, implementations, method_traits


def test_every_method_name_has_an_implementation_and_loads():
    assert set(implementations()) == set(names.METHODS)
    for name in names.METHODS:
        method = get_method(name)
        assert method.name == name
        assert method.modality in (*names.MODALITIES, "any")


def test_neural_and_fitted_methods_partition_the_vocabulary():
    assert set(names.NEURAL_METHODS) | set(names.FITTED_METHODS) == set(names.METHODS)
    assert not set(names.NEURAL_METHODS) & set(names.FITTED_METHODS)


def test_task_and_metric_names():
    assert names.is_task("behavior_wheel_speed") and names.is_task("co_smoothing")
    assert names.is_task("stimulus_drifting_gratings_orientation")
    assert not names.is_task("behaviour_wheel") and not names.is_task("stimulus_")
    assert names.horizon_metric("mae", 3) == "mae_h3" and names.is_metric("r2_h12")
    assert not names.is_metric("mae_h0") and not names.is_metric("bps_h1")
    assert names.is_horizon_metric("pearson_h4") and not names.is_horizon_metric("pearson")
    assert names.frozen_metric("bacc") == "frozen_bacc" and names.is_metric("frozen_r2")
    with pytest.raises(ValueError, match="no frozen-probe form"):
        names.frozen_metric("mae")
    with pytest.raises(ValueError, match="unknown method 'mmt'"):
        get_method("mmt")
    with pytest.raises(ValueError, match="lower_snake_case"):
        names.behavior_task("Wheel Speed")


def test_session_key_names_the_bad_file():
    assert names.session_key("x/sub-01_ses-01.spikes.h5") == ("sub-01_ses-01", "spikes")
    with pytest.raises(ValueError, match=r"bad\.h5"):
        names.session_key("bad.h5")


def test_the_traits_the_workflow_plans_with_are_the_methods_own():
    for name in names.METHODS:
        method, traits = get_method(name), method_traits(name)
        assert traits.pretrains == method.pretrains, name
        assert traits.finetune_only_hparams == method.finetune_only_hparams, name
    with pytest.raises(ValueError, match="unknown method 'mmt'"):
        method_traits("mmt")
