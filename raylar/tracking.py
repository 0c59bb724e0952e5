"""MLflow tracking of Ray Tune sweeps: one experiment per sweep, one run per trial.

``MLflowTrialTracker`` is a Ray Tune callback, so every MLflow call is made by
the Tune driver process, one after another, however many trials run at once.
That is what lets a SQLite store take concurrent trials without "database is
locked" errors: only one process ever writes to it.
"""

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

from ray.tune import Callback

from raylar.geometry import CLASS_NAMES
from raylar.log import get_logger
from raylar.tune.space import flatten

logger = get_logger(__name__)

TRIAL_ID_TAG = "raylar.trial_id"
SWEEP_TAG = "raylar.sweep"
STATUS_TAG = "raylar.status"

# Numeric keys of a training result that become MLflow metrics, besides every
# key starting with "val_"; Ray's own bookkeeping keys (time_total_s, pid, ...) are left out.
METRIC_KEYS = (
    "loss",
    "running_loss",
    "accuracy",
    "throughput",
    "data_wait_fraction",
    "allreduce_fraction",
    "elapsed_s",
    "epoch",
    "time_to_target_s",
)

# Files in a trial's run directory that become MLflow artifacts.
ARTIFACT_SUFFIXES = (".png", ".csv", ".json")
# Ray Tune's own files in the trial directory, which MLflow does not need.
RAY_FILES = {"result.json", "params.json", "progress.csv"}


class TrackingError(RuntimeError):
    """The MLflow tracking store cannot be used."""


def default_tracking_uri(output_dir: str | Path) -> str:
    """Return the SQLite tracking URI of the store under ``output_dir``."""
    return f"sqlite:///{Path(output_dir).resolve() / 'mlflow.db'}"


def resolve_tracking_uri(cli_uri: str | None, output_dir: str | Path) -> str:
    """Pick the tracking URI: ``--tracking-uri``, else ``MLFLOW_TRACKING_URI``, else SQLite under ``output_dir``."""
    return cli_uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri(output_dir)


def check_tracking_store(uri: str, timeout_s: float = 5.0) -> None:
    """Raise ``TrackingError`` unless the store at ``uri`` can be reached (servers) or created (files).

    A server is asked for its ``/health`` page at the address the user gave;
    nothing else is contacted.
    """
    if uri.startswith(("http://", "https://")):
        health = uri.rstrip("/") + "/health"
        try:
            with urllib.request.urlopen(health, timeout=timeout_s) as response:
                if response.status != 200:
                    raise TrackingError(f"MLflow tracking server {uri} returned HTTP {response.status}; check the URI")
        except (urllib.error.URLError, OSError) as error:
            raise TrackingError(
                f"MLflow tracking server {uri} is unreachable ({error}); start it "
                "(mlflow server --host ... --port ...) or pass another --tracking-uri"
            ) from None
        return
    if uri.startswith("sqlite:///"):
        folder = Path(uri.removeprefix("sqlite:///")).parent
    elif uri.startswith("file:"):
        folder = Path(uri.removeprefix("file://").removeprefix("file:"))
    elif "://" not in uri:
        folder = Path(uri)
    else:
        # NOTE: other stores (databricks, postgresql, ...) are checked by MLflow on first use.
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise TrackingError(f"cannot create the MLflow store folder {folder} for {uri}: {error}") from None
    if not os.access(folder, os.W_OK):
        raise TrackingError(f"the MLflow store folder {folder} for {uri} is not writable")


def software_versions() -> dict:
    """Return the versions of raylar and the stack it runs on, as MLflow tags."""
    import importlib.metadata

    import ray
    import torch

    import raylar

    versions = {"raylar": raylar.__version__, "ray": ray.__version__, "torch": torch.__version__}
    for name in ("horovod", "spconv", "mlflow"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            # The CUDA builds of spconv install under another distribution name.
            matches = [d.version for d in importlib.metadata.distributions() if d.metadata["Name"].startswith(name)]
            versions[name] = matches[0] if matches else "not installed"
    return {f"version.{name}": version for name, version in versions.items()}


def git_commit() -> str:
    """Return the git commit of raylar's source tree, or ``unknown`` outside a checkout."""
    source = Path(__file__).resolve().parent
    try:
        output = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=source, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return output.stdout.strip()


def param_values(config: dict) -> dict:
    """Flatten a training config into MLflow params, keeping only plain values."""
    params = {}
    for name, value in flatten(config).items():
        if name.startswith("_"):
            continue
        if isinstance(value, (str, int, float, bool)) or value is None:
            params[name] = str(value)
        elif isinstance(value, (list, tuple)) and all(isinstance(v, (str, int, float, bool)) for v in value):
            params[name] = str(list(value))
    return params


class MLflowTrialTracker(Callback):
    """Record every Tune trial as an MLflow run of the sweep's experiment.

    ``describe_trial(config) -> dict`` returns the tags that depend on the trial's
    training config (model, backend, world size, image size, codec), and
    ``run_directory(trial, result) -> Path | None`` finds the trial's run directory,
    whose plots, CSVs and JSON become artifacts when the trial ends.
    """

    def __init__(
        self,
        tracking_uri: str,
        experiment_name: str,
        sweep_tags: dict,
        describe_trial,
        run_directory,
        artifact_location: str | None = None,
    ):
        self.tracking_uri = tracking_uri
        self.artifact_location = artifact_location
        self.experiment_name = experiment_name
        self.sweep_tags = dict(sweep_tags)
        self.describe_trial = describe_trial
        self.run_directory = run_directory
        self.run_ids: dict[str, str] = {}
        self.last_results: dict[str, dict] = {}
        self.last_status: dict[str, str] = {}
        self._client = None
        self._experiment_id = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_client"] = None
        return state

    @property
    def client(self):
        if self._client is None:
            import mlflow

            self._client = mlflow.MlflowClient(tracking_uri=self.tracking_uri)
        return self._client

    def setup(self, **info):
        self._experiment_id = self.ensure_experiment()

    def ensure_experiment(self) -> str:
        """Return the sweep's experiment id, creating the experiment on first use."""
        experiment = self.client.get_experiment_by_name(self.experiment_name)
        if experiment is not None:
            return experiment.experiment_id
        experiment_id = self.client.create_experiment(
            self.experiment_name, artifact_location=self.artifact_location, tags=self.sweep_tags
        )
        logger.info("MLflow experiment %r (id %s) at %s", self.experiment_name, experiment_id, self.tracking_uri)
        return experiment_id

    def _find_run(self, trial_id: str) -> str | None:
        if trial_id in self.run_ids:
            return self.run_ids[trial_id]
        runs = self.client.search_runs(
            [self._experiment_id], filter_string=f"tags.`{TRIAL_ID_TAG}` = '{trial_id}'", max_results=1
        )
        return runs[0].info.run_id if runs else None

    def on_trial_start(self, iteration, trials, trial, **info):
        if self._experiment_id is None:
            self._experiment_id = self.ensure_experiment()
        run_id = self._find_run(trial.trial_id)
        if run_id is not None:
            # A resumed sweep continues the trial's run instead of adding a second one.
            self.client.update_run(run_id, status="RUNNING")
            self.run_ids[trial.trial_id] = run_id
            logger.info("trial %s continues MLflow run %s", trial, run_id)
            return

        config = trial.config.get("train_loop_config", trial.config)
        tags = {
            **self.sweep_tags,
            **{key: str(value) for key, value in self.describe_trial(config).items()},
            TRIAL_ID_TAG: trial.trial_id,
        }
        run = self.client.create_run(self._experiment_id, run_name=str(trial), tags=tags)
        run_id = run.info.run_id
        self.run_ids[trial.trial_id] = run_id

        from mlflow.entities import Param

        params = [Param(name, value[:6000]) for name, value in param_values(config).items()]
        for start in range(0, len(params), 100):
            self.client.log_batch(run_id, params=params[start : start + 100])
        logger.info("trial %s is MLflow run %s", trial, run_id)

    def on_trial_restore(self, iteration, trials, trial, **info):
        self.on_trial_start(iteration, trials, trial)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        run_id = self.run_ids.get(trial.trial_id) or self._find_run(trial.trial_id)
        if run_id is None:
            return
        self.last_results[trial.trial_id] = dict(result)

        from mlflow.entities import Metric

        step = int(result.get("step", result.get("training_iteration", 0)))
        timestamp = int(time.time() * 1000)
        metrics = [
            Metric(key, float(value), timestamp, step)
            for key, value in result.items()
            if (key in METRIC_KEYS or key.startswith("val_"))
            and isinstance(value, (int, float))
            and not isinstance(value, bool)
        ]
        if metrics:
            from mlflow.exceptions import MlflowException

            try:
                self.client.log_batch(run_id, metrics=metrics)
            except (MlflowException, OSError) as error:
                # A lost result is better than a sweep of many hours ended by one failed write.
                logger.error("trial %s: %d metric(s) of step %d not logged to MLflow run %s: %s",
                             trial, len(metrics), step, run_id, error)
        status = result.get("status")
        if status is not None and status != self.last_status.get(trial.trial_id):
            self.client.set_tag(run_id, STATUS_TAG, str(status))
            self.last_status[trial.trial_id] = status

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._finish(trial, "FINISHED")

    def on_trial_error(self, iteration, trials, trial, **info):
        self._finish(trial, "FAILED")

    def _finish(self, trial, mlflow_status: str) -> None:
        run_id = self.run_ids.get(trial.trial_id) or self._find_run(trial.trial_id)
        if run_id is None:
            return
        result = self.last_results.get(trial.trial_id) or trial.last_result or {}
        status = result.get("status")
        if mlflow_status == "FAILED":
            status = "failed"
        elif status not in ("completed", "budget reached"):
            # Tune ended the trial: the scheduler stopped it early, or the sweep budget ran out.
            status = "stopped early"
        self.client.set_tag(run_id, STATUS_TAG, status)
        self.log_artifacts(run_id, self.run_directory(trial, result))
        self.client.set_terminated(run_id, status=mlflow_status)
        logger.info("trial %s ended (%s); MLflow run %s", trial, status, run_id)

    def log_artifacts(self, run_id: str, folder: Path | None) -> None:
        """Log the plots, CSVs and JSON of a trial's run directory, leaving out checkpoints."""
        if folder is None or not Path(folder).is_dir():
            logger.warning("MLflow run %s: no run directory %s to take artifacts from", run_id, folder)
            return
        folder = Path(folder)
        for path in sorted(folder.rglob("*")):
            relative = path.relative_to(folder)
            if not path.is_file() or path.suffix not in ARTIFACT_SUFFIXES or path.name in RAY_FILES:
                continue
            if any(part.startswith("checkpoint") for part in relative.parts[:-1]):
                continue
            subfolder = str(relative.parent) if str(relative.parent) != "." else None
            self.client.log_artifact(run_id, str(path), artifact_path=subfolder)
        summary = folder / "metrics.json"
        if summary.is_file():
            self.log_confusion_csv(run_id, json.loads(summary.read_text()))

    def log_confusion_csv(self, run_id: str, summary: dict) -> None:
        """Log the final validation confusion matrix as ``confusion_matrix.csv`` (percent of the true class)."""
        percent = summary.get("val_confusion_percent")
        counts = summary.get("val_confusion_counts")
        if not percent:
            return
        rows = ["true,predicted,percent,events"]
        for true_label, row in enumerate(percent):
            for predicted, value in enumerate(row):
                events = counts[true_label][predicted] if counts else ""
                rows.append(f"{CLASS_NAMES[true_label]},{CLASS_NAMES[predicted]},{value:.4g},{events}")
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "confusion_matrix.csv"
            path.write_text("\n".join(rows) + "\n")
            self.client.log_artifact(run_id, str(path))

    def get_state(self):
        return {"run_ids": dict(self.run_ids)}

    def set_state(self, state):
        self.run_ids.update(state.get("run_ids", {}))


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def tracking_server(backend_store_uri: str, artifact_root: str | Path, port: int | None = None, timeout_s: float = 60):
    """Run ``mlflow server`` on 127.0.0.1 over a store for the duration of the block; yield its URL."""
    port = port or free_port()
    command = [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", backend_store_uri,
        "--default-artifact-root", str(artifact_root),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                check_tracking_store(url, timeout_s=2)
                break
            except TrackingError:
                if process.poll() is not None or time.monotonic() > deadline:
                    output = process.stdout.read() if process.poll() is not None else ""
                    raise TrackingError(
                        f"mlflow server on {url} did not start within {timeout_s:g} s: {output[-2000:]}"
                    ) from None
                time.sleep(0.5)
        logger.info("mlflow server over %s listening on %s (pid %d)", backend_store_uri, url, process.pid)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
