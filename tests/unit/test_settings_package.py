"""The settings package: one import path for every public name, and sections that pickle."""

from __future__ import annotations

import pickle
import pkgutil
from importlib import import_module

import services.domain.settings as settings_package
from services.domain.settings import Settings


def test_every_public_name_of_the_section_modules_is_exported() -> None:
    exported = set(settings_package.__all__)
    for module_info in pkgutil.iter_modules(settings_package.__path__):
        module = import_module(f"{settings_package.__name__}.{module_info.name}")
        for name, value in vars(module).items():
            if getattr(value, "__module__", None) == module.__name__ and not name.startswith("_"):
                assert name in exported, f"{module.__name__}.{name} is not re-exported by services.domain.settings"
    assert all(hasattr(settings_package, name) for name in exported)


def test_settings_with_per_candidate_and_per_workload_overrides_pickle() -> None:
    """The override sections are generated classes: they must live where pickle looks them up."""
    settings = Settings.model_validate({"workloads": {"w": {"promotion": {"min_score": 0.5}}}})
    restored = pickle.loads(pickle.dumps(settings))
    assert restored == settings
    assert restored.promotion_policy("w").min_score == 0.5
    assert restored.training_for(restored.candidates[0]) == settings.training_for(settings.candidates[0])
