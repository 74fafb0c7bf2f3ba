"""The tasks a run can do, one module each: `eval`, `score`, `tune`, `build`.

The registry is the config tree: `conf/task/<name>.yaml` names its task's schema class with
`_target_`; `vzexp.config.validate` fills that class from the YAML and the command line, and
`vzexp.run` calls its `run(settings, context)`. A new task is one module with a `Task`
subclass and one YAML, with no list to edit."""
