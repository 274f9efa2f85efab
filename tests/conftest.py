"""Shared fixtures. Tests run offline (HF_HUB_OFFLINE=1) and use real components."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:  # pragma: no cover
        has_cuda = False
    skip_gpu = pytest.mark.skip(reason="needs CUDA (none on this machine)")
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(skip_gpu)


@pytest.fixture
def isolated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No FLYWHEEL__* overrides leak in from the developer's shell."""
    for key in list(os.environ):
        if key.startswith("FLYWHEEL__") or key == "FLYWHEEL_CONFIG":
            monkeypatch.delenv(key)


@pytest.fixture
def sqlite_store_factory(tmp_path: Path) -> Iterator[Callable[[], object]]:
    from services.datastore.stores.sqlite import SqliteLogStore

    opened: list[SqliteLogStore] = []

    def make() -> SqliteLogStore:
        store = SqliteLogStore(tmp_path / f"logs-{len(opened)}.sqlite", batch_size=100)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()
