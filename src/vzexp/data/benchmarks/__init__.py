"""Real benchmarks, one module each: the module holds the benchmark's reader (a `Benchmark`
dataset, for both layouts, `lmms_eval` and `llava`) and its scorer (a `vzexp.data.scoring.Scorer`
named `scorer`, plus named variants where upstream has more than one rule). Each module's
docstring names the upstream file and commit its rule follows.

A data config picks both: `dataset._target_: vzexp.data.benchmarks.pope.POPE` and
`scorer: vzexp.data.benchmarks.pope.scorer`. Adding a benchmark is one module here (or anywhere
importable), one `conf/data/<name>.yaml` and its test; nothing else lists the benchmarks.

Shared code: `common` (file reading, prompts, the `Benchmark` base class), `records` (the
fields of a prediction record), `vqa_normalize` (the VQA answer normalisation).
"""
