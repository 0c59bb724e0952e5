"""Generated events: determinism, configuration, truth, class signatures and occupancy."""

import numpy as np
import pytest

from raylar import geometry
from raylar.sim import SimConfig, simulate_event
from raylar.sim.detector import noise_pass_probability

TICK_CM = geometry.TICK_PERIOD_US * 0.1098


def _gap_cm(event) -> float:
    """Distance in the wire-tick plane from the true vertex to the nearest hit pixel (full-size events)."""
    if not event.num_hits:
        return np.inf
    wire = event.truth["vertex_cm"][2] / geometry.WIRE_PITCH_CM
    tick = event.truth["vertex_cm"][0] / TICK_CM
    d_wire = (event.rows + 0.5 - wire) * geometry.WIRE_PITCH_CM
    d_tick = (event.cols + 0.5 - tick) * TICK_CM
    return float(np.min(np.hypot(d_wire, d_tick)))


def test_simulate_event_repeats_for_same_seed():
    config = SimConfig(downsample=9)
    first = simulate_event(7, 42, config)
    second = simulate_event(7, 42, config)
    np.testing.assert_array_equal(first.rows, second.rows)
    np.testing.assert_array_equal(first.values, second.values)
    assert first.truth == second.truth


def test_simulate_event_differs_between_indices():
    config = SimConfig(downsample=9, classes=("muon",))
    first = simulate_event(0, 42, config)
    second = simulate_event(1, 42, config)
    assert first.truth["momentum_mev"] != second.truth["momentum_mev"]


def test_simulate_event_labels_cycle_over_classes():
    config = SimConfig(downsample=30, classes=("kaon", "gamma"))
    labels = [simulate_event(i, 1, config).label for i in range(4)]
    assert labels == [4, 0, 4, 0]


def test_simulate_event_shape_and_truth():
    config = SimConfig(downsample=9)
    event = simulate_event(3, 5, config)
    assert event.shape == (400, 400)
    assert event.rows.dtype == np.int32
    assert event.values.dtype == np.float32
    assert event.rows.max() < 400
    assert event.cols.max() < 400
    for key in (
        "label",
        "momentum_mev",
        "direction",
        "vertex_cm",
        "kinetic_mev",
        "decay_products",
        "deposited_energy_mev",
        "visible_charge_e",
    ):
        assert key in event.truth
    assert event.truth["label"] == event.label == 3
    assert np.isclose(np.linalg.norm(event.truth["direction"]), 1.0, atol=1e-5)


def test_downsample_sums_blocks():
    full = simulate_event(2, 9, SimConfig(downsample=1))
    small = simulate_event(2, 9, SimConfig(downsample=4))
    assert small.shape == (900, 900)
    assert np.isclose(small.values.sum(), full.values.sum(), rtol=1e-6)
    image = full.dense()
    blocks = image.reshape(900, 4, 900, 4).sum(axis=(1, 3))
    np.testing.assert_allclose(small.dense(), blocks, rtol=1e-5)


def test_sim_config_round_trip():
    config = SimConfig(
        downsample=6,
        classes=("muon", "pi+"),
        noise_rms_adc=3.0,
        spectra={"muon": {"p_min_mev": 200, "p_max_mev": 300}},
    )
    again = SimConfig.from_dict(config.to_dict())
    assert again == config
    assert again.classes == ("muon", "pion")
    assert again.spectra["muon"] == {"p_min_mev": 200.0, "p_max_mev": 300.0}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"classes": ("muon", "tau")}, "unknown particle class 'tau'"),
        ({"classes": ()}, "classes is empty"),
        ({"downsample": 7}, "invalid downsample factor 7"),
        ({"downsample": 0}, "invalid downsample factor 0"),
        ({"spectra": {"kaon": {"p_min_mev": 500, "p_max_mev": 100}}}, "momentum spectrum of kaon"),
        ({"step_cm": 1.0}, "longer than the 0.3 cm wire pitch"),
        ({"vertex_margin_cm": 100.0}, "leaves no room for a vertex"),
        ({"noise_rms_adc": -1}, "noise_rms_adc must be zero or positive"),
        ({"threshold_adc": 1, "noise_rms_adc": 3}, "noise pixels"),
    ],
)
def test_sim_config_rejects_bad_values(changes, message):
    with pytest.raises(ValueError, match=message):
        SimConfig(**changes)


def test_sim_config_rejects_unknown_setting():
    with pytest.raises(ValueError, match="unknown simulator settings"):
        SimConfig.from_dict({"downsample": 1, "colour": "red"})


def test_photons_leave_gap_before_first_deposit():
    config = SimConfig(classes=("gamma",))
    events = [simulate_event(i, 101, config) for i in range(30)]
    gaps = np.array([_gap_cm(e) for e in events])
    distances = [
        e.truth["conversion_distance_cm"] for e in events if "conversion_distance_cm" in e.truth
    ]
    print("photon gaps (cm):", np.round(np.sort(gaps), 1))
    assert np.mean(gaps > 2.0) >= 0.6
    assert 12.0 < np.mean(distances) < 35.0


def test_electron_showers_start_at_vertex():
    config = SimConfig(classes=("electron",))
    events = [simulate_event(i, 102, config) for i in range(20)]
    gaps = np.array([_gap_cm(e) for e in events])
    print("electron gaps (cm):", np.round(np.sort(gaps), 2))
    assert np.mean(gaps < 1.0) >= 0.9
    assert {e.truth["particle"] for e in events} == {"e-", "e+"}


def test_stopping_muons_end_in_michel_positron():
    config = SimConfig(
        downsample=9, classes=("muon",), spectra={"muon": {"p_min_mev": 100, "p_max_mev": 250}}
    )
    stopped = 0
    for i in range(25):
        event = simulate_event(i, 103, config)
        if event.truth["primary_fate"] != "stopped":
            continue
        stopped += 1
        michel = [
            d
            for d in event.truth["decay_products"]
            if d["parent"] == "mu+" and d["particle"] == "e+"
        ]
        assert len(michel) == 1, event.truth["decay_products"]
        assert michel[0]["at_rest"]
        assert michel[0]["kinetic_mev"] <= 52.83
        np.testing.assert_allclose(
            michel[0]["position_cm"], event.truth["primary_end_cm"], atol=1e-3
        )
    assert stopped >= 15


def test_stopped_kaons_mostly_give_235_mev_muon():
    config = SimConfig(
        downsample=30, classes=("kaon",), spectra={"kaon": {"p_min_mev": 100, "p_max_mev": 400}}
    )
    at_rest, with_muon = 0, 0
    for i in range(60):
        event = simulate_event(i, 104, config)
        if event.truth["primary_fate"] != "stopped":
            continue
        at_rest += 1
        muons = [
            d
            for d in event.truth["decay_products"]
            if d["parent"] == "k+"
            and d["particle"] == "mu+"
            and abs(d["momentum_mev"] - 235.5) < 0.5
        ]
        with_muon += bool(muons)
    print(f"{with_muon} of {at_rest} stopped kaons decayed to a 235.5 MeV/c muon")
    assert at_rest >= 30
    assert 0.5 <= with_muon / at_rest <= 0.8


def test_noise_only_pixels_match_threshold_probability():
    # Events without charge: the count of noise pixels follows the Gaussian tail probability.
    config = SimConfig(
        downsample=1,
        noise_rms_adc=3.0,
        threshold_adc=12.0,
        classes=("gamma",),
        spectra={"gamma": {"p_min_mev": 100, "p_max_mev": 100}},
    )
    expected = noise_pass_probability(config) * geometry.WIRES * geometry.TICKS
    counts = [simulate_event(i, 105, config).truth["noise_only_pixels"] for i in range(6)]
    assert abs(np.mean(counts) / expected - 1) < 0.2


def test_default_geometry_occupancy_per_class():
    config = SimConfig()
    table = {}
    for name in geometry.CLASS_NAMES:
        single = SimConfig(classes=(name,))
        table[name] = [simulate_event(i, 106, single).occupancy for i in range(4)]
    print("\noccupancy per class at 3600 x 3600 (percent of pixels):")
    for name, values in table.items():
        print(
            f"  {name:<9}",
            " ".join(f"{100 * v:.4f}" for v in sorted(values)),
            f" median {100 * np.median(values):.4f}",
        )
    assert config.downsample == 1
    for name, values in table.items():
        assert 1e-4 <= np.median(values) <= 2e-2, (name, values)
        assert max(values) <= 2e-2, (name, values)


def test_noiseless_event_keeps_only_charge():
    config = SimConfig(downsample=9, noise_rms_adc=0.0, threshold_adc=0.0, classes=("muon",))
    event = simulate_event(1, 107, config)
    assert event.num_hits > 0
    assert event.values.min() >= 1.0
    assert event.truth["noise_only_pixels"] == 0
