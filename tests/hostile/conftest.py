"""The tiny random model folder every hostile test translates with (read only, so made once)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import _inference_fixtures as fx


@pytest.fixture(scope="session")
def model(tmp_path_factory) -> Path:
    return fx.make_model_folder(tmp_path_factory.mktemp("model"))
