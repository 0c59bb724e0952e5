"""Shared fixtures: one real local Ray cluster per test module."""

import os

import pytest

import raylar  # noqa: F401 - selects Ray Train V1 before any test imports ray.train


@pytest.fixture(scope="module")
def ray_cluster():
    """Start a fresh 2-CPU local Ray cluster for the module and stop it afterwards.

    ``address="local"`` always starts a new cluster, so a test never joins one
    that ``ray start`` or another process left running on the machine.
    """
    import ray

    from raylar.cluster import start_ray

    if ray.is_initialized():
        ray.shutdown()
    resources = start_ray(
        address="local",
        num_cpus=int(os.environ.get("RAYLAR_TEST_CPUS", "2")),
        object_store_memory=600 * 1024 * 1024,
    )
    yield resources
    ray.shutdown()


@pytest.fixture(scope="session")
def artifact_dir():
    """Folder for files a test leaves for people to look at (screenshots, plots)."""
    path = os.path.join(os.path.dirname(__file__), "..", "test-artifacts")
    os.makedirs(path, exist_ok=True)
    return os.path.abspath(path)


def _make_test_modules_importable_by_workers() -> None:
    # Ray pickles test functions by module name; its worker processes inherit
    # this environment, so they can import the test modules and raylar too.
    here = os.path.dirname(os.path.abspath(__file__))
    paths = [here, os.path.dirname(here)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))


_make_test_modules_importable_by_workers()
