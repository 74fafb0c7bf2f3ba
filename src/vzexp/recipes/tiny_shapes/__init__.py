"""The recipe that builds `model=tiny_shapes`: `python -m vzexp +experiment=build_tiny`.

Read top to bottom: `recipe.build_tiny` (the entry function of `task=build_tiny`) renders the
training scenes, assembles the model and runs the stages of `recipe.train_stages`, which train the
objectives of `objectives` on the data of `data` (sampled by `budget_batches` in the instruct
stage) after the tower's `mimetic_init`. `config` holds the task's schema."""
