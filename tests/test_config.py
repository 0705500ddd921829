"""``ModelConfig`` is saved as JSON next to the weights: it must come back equal, and a config this
vqcodec does not understand must be refused rather than half read."""

import json

import pytest

from vqcodec.models import ModelConfig
from vqcodec.testing.models import tiny_config


@pytest.mark.parametrize("backbone", ["taef2", "taming"])
def test_json_round_trip(backbone):
    config = tiny_config(backbone)
    config.default_level = 16
    again = ModelConfig.from_json(config.to_json())
    assert again == config and again.downsampling == config.downsampling == 16
    if backbone == "taming":
        assert again.ddconfig["ch_mult"] == [1, 1, 1, 1, 1] and again.ddconfig is not config.ddconfig


def test_unknown_field_is_refused():
    data = json.loads(tiny_config("taming").to_json())
    with pytest.raises(ValueError, match="future_field"):
        ModelConfig.from_json(json.dumps({**data, "future_field": 1}))


def test_unknown_backbone_is_refused():
    data = json.loads(tiny_config().to_json())
    with pytest.raises(ValueError, match="backbone"):
        ModelConfig.from_json(json.dumps({**data, "backbone": "alexnet"}))
