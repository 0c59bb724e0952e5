"""Ray Tune sweeps of raylar's trainer: search spaces, run profiles, the sweep and its CLI.

``python -m raylar.tune --help`` lists the options; docs/tuning.md explains them.
"""


def main(argv: list[str] | None = None) -> int:
    """Run the ``raylar.tune`` command line (the ``raylar-tune`` console script)."""
    from raylar.tune.cli import main as cli_main

    return cli_main(argv)
