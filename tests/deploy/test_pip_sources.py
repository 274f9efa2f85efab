"""scripts/pip_sources.py: the host's pip configuration, as the pip-sources build context gives it to a build."""

from __future__ import annotations

import configparser
import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "pip_sources.py"


def _module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("pip_sources", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def host(tmp_path: Path) -> dict[str, Path]:
    """A host like this one: a find-links folder, two file:// simple indexes, a CA bundle."""
    paths = {"wheels": tmp_path / "opt" / "wheels", "pypi": tmp_path / "opt" / "pypi" / "simple",
             "more": tmp_path / "opt" / "pypi-more" / "simple", "ca": tmp_path / "ca-certificates.crt"}
    for key in ("wheels", "pypi", "more"):
        paths[key].mkdir(parents=True)
    paths["ca"].write_text("-----BEGIN CERTIFICATE-----\n", encoding="utf-8")
    return paths


def _config_list(host: dict[str, Path]) -> str:
    return "\n".join([
        f":env:.cert='{host['ca']}'",
        ":env:.default-timeout='180'",
        f":env:.find-links='{host['wheels']}'",
        "global.cert='/nowhere/ignored.crt'",  # the environment variable wins, as in pip
        "global.constraint='/etc/xdg/pip/constraints.txt'",
        f"global.extra-index-url='file://{host['pypi']} file://{host['more']} https://mirror.example/simple'",
        "global.find-links='/also/ignored'",
    ])


def test_the_staged_pip_conf_points_inside_the_build_at_the_hosts_sources(tmp_path: Path, host: dict[str, Path]) -> None:
    staging = tmp_path / "staging"
    result = subprocess.run([sys.executable, str(SCRIPT), str(staging)], input=_config_list(host),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    mounts = [line.split() for line in result.stdout.splitlines()]
    assert mounts == [["MOUNT", str(host["wheels"]), "source-0"],
                      ["MOUNT", str(host["pypi"].parent), "source-1"],  # the folder above simple/: its ../../files links
                      ["MOUNT", str(host["more"].parent), "source-2"]]
    conf = configparser.ConfigParser()
    conf.read(staging / "pip.conf")
    assert dict(conf["global"]) == {
        "cert": "/run/pip-sources/ca.crt",
        "default-timeout": "180",
        "find-links": "/run/pip-sources/source-0",
        "extra-index-url": "file:///run/pip-sources/source-1/simple file:///run/pip-sources/source-2/simple "
                           "https://mirror.example/simple",
    }
    assert (staging / "ca.crt").read_text() == host["ca"].read_text()  # the host's bundle (its egress CA too)


def test_a_configured_source_that_is_missing_stops_the_build_with_a_reason(tmp_path: Path) -> None:
    module = _module()
    with pytest.raises(SystemExit, match="does not exist here: fix the pip configuration"):
        module.stage({"find-links": str(tmp_path / "missing")}, tmp_path)


def test_scopes_follow_pips_precedence() -> None:
    module = _module()
    config = module.read_config("global.index-url='a'\nuser.index-url='b'\nsite.timeout='5'\n:env:.timeout='9'\n"
                                "global.constraint='c'\nnot a line\n")
    assert config == {"index-url": "b", "timeout": "9"}
