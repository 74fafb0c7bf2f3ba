"""The configuration reference (docs/configuration.md) is generated from conf/ and the schemas:
the committed page must be what docs/gen_reference.py writes now."""

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def load_generator():
    spec = importlib.util.spec_from_file_location("gen_reference", ROOT / "docs/gen_reference.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_committed_configuration_page_is_the_generated_one():
    page = (ROOT / "docs/configuration.md").read_text()
    assert page == load_generator().build(), (
        "docs/configuration.md is out of date: run python docs/gen_reference.py"
    )


def test_reference_lists_every_option_of_every_group():
    page = load_generator().build()
    for path in sorted((ROOT / "conf").glob("**/*.yaml")):
        if path.parent == ROOT / "conf":
            continue
        group = path.parent.relative_to(ROOT / "conf").as_posix()
        assert f"### `{group}={path.stem}`" in page, f"{group}={path.stem} missing"
