"""Shared fixtures: the packaged backbone (loaded once), the real datasets' location."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("LATENTLEX_DATA", REPO.parent / "shared" / "data"))
LIMIT_SMALL = REPO / "examples" / "data" / "limit-small"


@pytest.fixture(scope="session")
def backbone():
    from latentlex.backbone import Backbone

    return Backbone(device="cpu")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared datasets not found at {SHARED_DATA}")
    return SHARED_DATA
