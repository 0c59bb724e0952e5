"""``python -m raylar.simulate``: generate event files, validate the physics, draw events."""

from raylar.sim.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
