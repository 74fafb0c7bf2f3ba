"""nox sessions. `tests` and `lint` run in the current environment (installed by the README's
command) so they test exactly what users install and need no second download of torch."""

import nox

nox.options.sessions = ["tests", "lint"]
nox.options.default_venv_backend = "none"


@nox.session
def tests(session: nox.Session) -> None:
    """The whole suite: unit, integration, cli, one pytest-xdist worker per core (`-- -n 0` runs
    it in one process); the tests of the real pretrained parts share one worker, so each part is
    converted once."""
    workers = ["-n", "auto", "--dist", "loadgroup"]
    # no path given: pytest's testpaths (tests/); `-- tests/unit` runs one layer. The slowest
    # tests are listed so that CI's log shows where the suite's time goes.
    session.run("python", "-m", "pytest", *workers, "--durations=15", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff, and the architecture's import contracts (pyproject.toml, [tool.importlinter])."""
    paths = ["src", "tests", "experiments", "docs/gen_reference.py", "noxfile.py"]
    session.run("ruff", "check", *paths)
    session.run("ruff", "format", "--check", *paths)
    session.run("lint-imports")


@nox.session
def docs(session: nox.Session) -> None:
    """The documentation: regenerate the configuration reference from conf/ and the schemas, then
    build the site with mkdocs in strict mode (a broken link or a page missing from the nav fails)."""
    session.run("python", "docs/gen_reference.py")
    session.run("mkdocs", "build", "--strict", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """On-demand benchmarks (not run by CI); results are written under experiments/."""
    session.run("python", "experiments/perf/bench_capture.py", *session.posargs)
    session.run("python", "experiments/perf/bench_prefill.py", *session.posargs)
