"""Reading a blocks result: model names made and parsed in one place, refused when malformed."""

from __future__ import annotations

import pytest

from maskdiff_tutor.experiments import blocks_results
from maskdiff_tutor.experiments.blocks_results import Model
from maskdiff_tutor.experiments.result import ExperimentResult


@pytest.mark.parametrize("model, name", [(blocks_results.RANDOM, "random"),
                                         (blocks_results.blockwise(4), "blockwise B=4"),
                                         (blocks_results.literal(8), "blockwise_literal B=8"),
                                         (blocks_results.LEFT_TO_RIGHT, "left_to_right"),
                                         (blocks_results.EXACT_DENOISER, "exact denoiser")])
def test_a_model_names_itself_as_results_store_it_and_parses_back(model, name):
    assert model.name == str(model) == name
    assert Model.parse(name) == model


def test_malformed_models_and_names_are_refused():
    with pytest.raises(ValueError, match=r"objective must be one of \['random', 'blockwise'"):
        Model("blocky")
    with pytest.raises(ValueError, match="block_length must be a positive int for objective 'blockwise'; got None"):
        Model("blockwise")
    with pytest.raises(ValueError, match="block_length must be a positive int .* got 0"):
        blocks_results.blockwise(0)
    with pytest.raises(ValueError, match="block_length must be None for objective 'random'"):
        Model("random", 4)
    with pytest.raises(ValueError, match="not a model name: 'blockwise B=x'"):
        Model.parse("blockwise B=x")


def test_only_a_blocks_result_is_read():
    other = ExperimentResult("ground_truth", "ci", 0, {}, {"models": {}}, {}, {})
    with pytest.raises(ValueError, match="result must be a blocks experiment's; got one of 'ground_truth'"):
        blocks_results.read(other)
