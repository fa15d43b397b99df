"""The recipe key `log_with` (experiment trackers): the names Accelerate takes, one line naming the
pip extra for a missing package, the flattened config, and no change to result fingerprints."""

from __future__ import annotations

import pytest
from accelerate.utils import LoggerType

from synthdata.core import tracking
from synthdata.core.contract import ConfigError
from synthdata.core.recipe_loading import load_recipe
from synthdata.core.result_keys import result_tree
from synthdata.experiments.study_keys import digest


def test_log_with_takes_exactly_accelerates_trackers():
    assert set(tracking.TRACKERS) == {t.value for t in LoggerType} - {"all"}
    assert load_recipe("toy").log_with is None  # off by default
    assert load_recipe("toy", ["log_with=[tensorboard, mlflow]"]).log_with == ["tensorboard", "mlflow"]
    with pytest.raises(ConfigError, match=r"'log_with' should be list\[Literal\['tensorboard', 'wandb', .*got \['tensorbord'\]"):
        load_recipe("toy", ["log_with=[tensorbord]"])


def test_a_missing_tracker_names_the_key_and_the_extra(monkeypatch):
    monkeypatch.setattr(tracking, "installed_trackers", lambda: {"mlflow"})
    assert tracking.check_trackers(None) == [] and tracking.check_trackers(["mlflow", "mlflow"]) == ["mlflow"]
    with pytest.raises(ConfigError) as e:
        tracking.check_trackers(["tensorboard", "mlflow", "wandb", "comet_ml"])
    assert str(e.value) == ("log_with: tensorboard and wandb and comet_ml are not installed; "
                            "pip install 'synthdata[tensorboard,wandb]' comet-ml (or leave log_with unset)")


def test_config_is_the_flattened_recipe_and_cells_are_named():
    config = tracking.flat_config({"seed": 0, "seg": {"lr": 0.001, "model": {"decoder_channels": [16, 8]}}, "x": None})
    assert config == {"seed": 0, "seg.lr": 0.001, "seg.model.decoder_channels": "[16, 8]", "x": None}
    assert tracking.cell_tracking(None, 3) == {}
    assert tracking.cell_tracking("real only", 3) == {"run_name": "real only/seed-3",
                                                      "config": {"study.variant": "real only", "study.seed": 3},
                                                      "tags": {"study.variant": "real only", "study.seed": 3}}


def test_log_with_changes_no_fingerprint():
    """Listed in `core.result_keys.NOT_RESULTS`: tracking a study's cells neither reruns nor refuses them."""
    plain = digest(result_tree(load_recipe("toy")))
    assert digest(result_tree(load_recipe("toy", ["log_with=[tensorboard, wandb]"]))) == plain
