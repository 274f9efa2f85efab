"""Fixtures of the packaging tests."""

from __future__ import annotations

import pytest

from tests.deploy.dockerfiles import IMAGES, REPO, Instruction, dockerfile, read_dockerfile


@pytest.fixture(scope="module", params=IMAGES)
def image(request: pytest.FixtureRequest) -> tuple[str, list[Instruction]]:
    path = dockerfile(request.param)
    assert path.exists(), f"missing {path.relative_to(REPO)}"
    return request.param, read_dockerfile(path)
