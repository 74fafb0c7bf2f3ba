"""vzexp: declarative experiments for visual-token compression in vision-language models."""

__version__ = "0.1.0"


def __getattr__(name):  # lazy: `import vzexp` stays cheap for the CLI's --help
    if name in {"compress_vision", "visionzip", "restore"}:
        from vzexp import api

        return getattr(api, name)
    raise AttributeError(name)


__all__ = ["compress_vision", "restore", "visionzip", "__version__"]
