"""raylar's MicroBooNE single-particle event simulator.

``simulate_event(index, seed, config)`` makes one collection-plane event; ``SimConfig`` contains the
settings; ``raylar.sim.eventfile`` reads and writes raylar's HDF5 event files.
"""

from raylar.sim.config import SimConfig
from raylar.sim.generate import simulate_event

__all__ = ["SimConfig", "simulate_event"]
