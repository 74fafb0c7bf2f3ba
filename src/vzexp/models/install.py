from vzexp.models.llava import install, tokens_per_image, uninstall  # noqa: F401
