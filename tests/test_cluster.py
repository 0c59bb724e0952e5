"""Cluster files and batch scripts: Ray's config validation, shellcheck, the
Slurm and LSF scripts' Ray start-up run on this machine with stand-ins for
``srun`` and ``jsrun``, and ``ray up`` of cluster/local.yaml over SSH.

These tests install Debian's shellcheck, openssh-server and rsync when they
are missing (apt-get), and start Ray heads of their own on 127.0.0.1 that
they stop by process id.
"""

import json
import os
import re
import shutil
import socket
import subprocess
from pathlib import Path

import psutil
import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
CLUSTER = REPO / "cluster"
VENV_BIN = REPO / ".venv" / "bin"
SCRIPTS = ["marianas.slurm", "summitdev.lsf", "marianas-env.sh", "summitdev-env.sh"]

_apt_updated = False


def ensure_debian_packages(commands: dict[str, str]) -> None:
    """Install the Debian package of each missing command (``{command: package}``)."""
    global _apt_updated
    missing = sorted(
        {package for command, package in commands.items() if shutil.which(command) is None}
    )
    if not missing:
        return
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if not _apt_updated:
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=environment, timeout=300)
        _apt_updated = True
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", *missing], check=True, env=environment, timeout=600
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def ray_head_processes(port: int) -> list[psutil.Process]:
    """Return every process of the Ray head whose GCS listens on ``port``.

    The GCS command line names the session folder, and so do the other
    daemons. The raylet's children (workers, agents) rename themselves, so
    they are found as its descendants.
    """
    session = None
    for process in psutil.process_iter(["cmdline"]):
        arguments = process.info["cmdline"] or []
        if f"--gcs_server_port={port}" in arguments:
            session = next(
                (a.split("=", 1)[1] for a in arguments if a.startswith("--session-name=")), None
            )
            break
    if session is None:
        return []
    found = {}
    for process in psutil.process_iter(["cmdline"]):
        if any(session in argument for argument in process.info["cmdline"] or []):
            found[process.pid] = process
    for process in list(found.values()):
        try:
            for child in process.children(recursive=True):
                found[child.pid] = child
        except psutil.NoSuchProcess:
            pass
    return list(found.values())


def stop_ray_head(port: int) -> None:
    """Stop the Ray head on ``port`` by process id, unlike ``ray stop``, which
    stops every Ray process on the machine, other users' clusters included."""
    processes = ray_head_processes(port)
    for process in processes:
        try:
            process.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(processes, timeout=15)
    for process in alive:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=5)
    current = Path("/tmp/ray/ray_current_cluster")
    try:
        if current.read_text().strip().endswith(f":{port}"):
            current.unlink()
    except FileNotFoundError:
        pass


@pytest.fixture(scope="module")
def shellcheck():
    ensure_debian_packages({"shellcheck": "shellcheck"})
    return shutil.which("shellcheck")


# -- cluster launcher files -------------------------------------------------


def prepared_ray_config(path: Path) -> dict:
    """Run Ray's own preparation and schema validation on a cluster file."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = prepare_config(yaml.safe_load(path.read_text()))
    validate_config(config)
    return config


@pytest.mark.parametrize(
    ("name", "workers", "gpus"),
    [("summitdev.yaml", 49, 4), ("marianas.yaml", 6, 2), ("local.yaml", 0, 0)],
)
def test_cluster_file_passes_ray_validation(name, workers, gpus):
    config = prepared_ray_config(CLUSTER / name)
    node_type = config["available_node_types"][config["head_node_type"]]

    assert config["provider"]["type"] == "local"
    assert len(config["provider"]["worker_ips"]) == workers
    assert node_type["max_workers"] == workers
    assert node_type["min_workers"] == workers
    assert any(f"--num-gpus={gpus}" in command for command in config["head_start_ray_commands"])
    if workers:
        assert any(
            f"--num-gpus={gpus}" in command for command in config["worker_start_ray_commands"]
        )


def test_ray_validation_rejects_unknown_field(tmp_path):
    config = yaml.safe_load((CLUSTER / "summitdev.yaml").read_text())
    config["worker_count"] = 49
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump(config))

    import jsonschema

    with pytest.raises(jsonschema.ValidationError, match="worker_count"):
        prepared_ray_config(broken)


def test_local_cluster_has_no_ray_stop():
    # `ray stop` stops every Ray process on a machine, so on a shared machine
    # the local cluster must not run it.
    config = yaml.safe_load((CLUSTER / "local.yaml").read_text())
    commands = config["setup_commands"] + config["head_start_ray_commands"]

    assert not any("ray stop" in command for command in commands)


# -- batch scripts ------------------------------------------------------------


@pytest.mark.parametrize("name", SCRIPTS)
def test_script_passes_bash_syntax_check(name):
    result = subprocess.run(["bash", "-n", str(CLUSTER / name)], capture_output=True, text=True)

    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("name", SCRIPTS)
def test_script_passes_shellcheck(shellcheck, name):
    result = subprocess.run(
        [shellcheck, "-x", f"cluster/{name}"], cwd=REPO, capture_output=True, text=True
    )

    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", ["marianas.slurm", "summitdev.lsf"])
def test_script_without_command_prints_usage(name):
    result = subprocess.run(
        ["bash", str(CLUSTER / name)], capture_output=True, text=True, timeout=30
    )

    assert result.returncode == 2
    assert "usage:" in result.stderr


STAND_IN_SRUN = """#!/bin/bash
# Stand-in for Slurm's srun on one machine: drop srun's options, run the command here.
while [[ $# -gt 0 && $1 == -* ]]; do shift; done
exec "$@"
"""

STAND_IN_SCONTROL = """#!/bin/bash
# Stand-in for `scontrol show hostnames LIST` with a comma-separated LIST.
[[ $1 == show && $2 == hostnames ]] || exit 1
tr ',' '\\n' <<< "$3"
"""


def printed_resources(output: str) -> dict:
    """Return the resources that RESOURCES_JOB printed (its command line may be echoed too)."""
    match = re.search(r"^RESOURCES (\{.*\})\s*$", output, re.MULTILINE)
    assert match, f"the job printed no resources: {output[-3000:]}"
    return json.loads(match.group(1))


RESOURCES_JOB = (
    "import json, ray; ray.init(logging_level='WARNING'); "
    "print('RESOURCES ' + json.dumps(ray.cluster_resources()))"
)


STAND_IN_JSRUN = """#!/bin/bash
# Stand-in for LSF's jsrun on one machine: drop jsrun's options and their values, run the command here.
while [[ $# -gt 0 && $1 == --* ]]; do
    case $1 in
        --nrs | --rs_per_host | --tasks_per_rs | --cpu_per_rs | --gpu_per_rs | --bind) shift 2 ;;
        *) shift ;;
    esac
done
exec "$@"
"""


def batch_job_environment(script: str, tmp_path: Path, port: int) -> dict:
    """Return the environment a scheduler would give ``script`` for a one-node job on this machine.

    Stand-ins for srun, scontrol and jsrun run every command here, and the
    script's default environment file (cluster/*-env.sh) activates this
    checkout's virtual environment.
    """
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in [
        ("srun", STAND_IN_SRUN),
        ("scontrol", STAND_IN_SCONTROL),
        ("jsrun", STAND_IN_JSRUN),
    ]:
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    environment = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "RAYLAR_HOME": str(REPO),
        "RAYLAR_RAY_PORT": str(port),
        "RAYLAR_RAY_START_OPTIONS": "--object-store-memory=300000000 --include-dashboard=false",
        "RAYLAR_START_TIMEOUT_S": "90",
    }
    environment.pop("RAY_ADDRESS", None)
    if script.endswith(".slurm"):
        environment.update(
            SLURM_JOB_NODELIST="localhost",
            SLURM_SUBMIT_DIR=str(REPO),
            SLURM_CPUS_PER_TASK="2",
            SLURM_GPUS_ON_NODE="0",
        )
    else:
        # LSF lists the launch node first, then each compute node once per slot.
        host_file = tmp_path / "hosts"
        host_file.write_text("batch3\nlocalhost\nlocalhost\n")
        environment.update(
            LSB_DJOB_HOSTFILE=str(host_file),
            LS_SUBCWD=str(REPO),
            RAYLAR_CPUS_PER_NODE="2",
            RAYLAR_GPUS_PER_NODE="0",
        )
    return environment


@pytest.mark.parametrize("script", ["marianas.slurm", "summitdev.lsf"])
def test_batch_script_starts_ray_and_runs_command(script, tmp_path):
    port = free_port()
    environment = batch_job_environment(script, tmp_path, port)

    try:
        result = subprocess.run(
            ["bash", str(CLUSTER / script), "python", "-c", RESOURCES_JOB],
            env=environment,
            capture_output=True,
            text=True,
            timeout=180,
        )
        remaining = ray_head_processes(port)
    finally:
        stop_ray_head(port)

    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert f"Ray head on localhost (127.0.0.1:{port})" in result.stdout
    resources = printed_resources(result.stdout)
    assert resources["CPU"] == 2
    assert resources.get("GPU", 0) == 0
    assert "raylar: Ray stopped" in result.stdout
    assert remaining == [], f"Ray processes left after the script: {[p.pid for p in remaining]}"


def test_local_start_warns_about_running_cluster(tmp_path):
    port = free_port()
    environment = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    script = (
        "from raylar.cluster import start_ray\n"
        "start_ray(address='local', num_cpus=1, object_store_memory=100 * 1024**2)\n"
    )
    try:
        subprocess.run(
            [str(VENV_BIN / "ray"), "start", "--head", f"--port={port}", "--num-cpus=1",
             "--node-ip-address=127.0.0.1", "--include-dashboard=false", "--disable-usage-stats"],
            env=environment, capture_output=True, text=True, timeout=120, check=True,
        )
        result = subprocess.run(
            [str(VENV_BIN / "python"), "-c", script],
            env=environment, capture_output=True, text=True, timeout=120, cwd=tmp_path,
        )
    finally:
        stop_ray_head(port)

    assert result.returncode == 0, result.stderr
    # Ray records the node's address, which need not be 127.0.0.1
    assert re.search(rf"running on this machine at \S+:{port}\b", result.stderr), result.stderr
    assert "--address auto" in result.stderr


# -- ray up / exec / down over SSH to 127.0.0.1 ----------------------------------


@pytest.fixture(scope="module")
def local_sshd(tmp_path_factory):
    """Run an SSH server of the test's own on 127.0.0.1:22, stopped by process id afterwards.

    It accepts only a key made for the test, which logs in as root.

    Ray's launcher has no SSH-port setting, so the port must be 22.
    """
    ensure_debian_packages(
        {"/usr/sbin/sshd": "openssh-server", "rsync": "rsync", "ssh": "openssh-client"}
    )
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", 22)) == 0:
            pytest.fail(
                "127.0.0.1:22 is already in use; stop that SSH server before running this test"
            )

    folder = tmp_path_factory.mktemp("sshd")
    host_key, user_key = folder / "host_key", folder / "user_key"
    for key in (host_key, user_key):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    (folder / "authorized_keys").write_text((folder / "user_key.pub").read_text())
    config = folder / "sshd_config"
    # StrictModes is off because the key files live under /tmp, which is
    # world-writable; nothing outside this folder is read for logins.
    config.write_text(
        "\n".join(
            [
                "ListenAddress 127.0.0.1",
                "Port 22",
                f"HostKey {host_key}",
                f"PidFile {folder / 'sshd.pid'}",
                f"AuthorizedKeysFile {folder / 'authorized_keys'}",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "PermitRootLogin prohibit-password",
                "AllowUsers root",
                "StrictModes no",
                "UsePAM no",
                "",
            ]
        )
    )
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation folder
    log = open(folder / "sshd.log", "w")
    server = subprocess.Popen(
        ["/usr/sbin/sshd", "-D", "-e", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT
    )
    try:
        for _ in range(50):
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", 22)) == 0:
                    break
            if server.poll() is not None:
                pytest.fail(
                    f"sshd exited with {server.returncode}: {(folder / 'sshd.log').read_text()}"
                )
            subprocess.run(["sleep", "0.1"])
        yield {"key": user_key, "folder": folder}
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def ssh_command(key: Path, command: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            "ssh",
            "-i",
            str(key),
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
            "root@127.0.0.1",
            command,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def filled_local_config(key: Path, port: int, name: str) -> str:
    """Return cluster/local.yaml with this checkout, the test's key and port filled in."""
    text = (CLUSTER / "local.yaml").read_text()
    for marker in (
        "~/raylar/",
        "ssh_private_key: ~/.ssh/id_ed25519",
        "--port=6379",
        "cluster_name: raylar-local",
    ):
        assert marker in text, f"cluster/local.yaml no longer contains {marker!r}; update this test"
    text = text.replace("~/raylar/", f"{REPO}/")
    text = text.replace("ssh_private_key: ~/.ssh/id_ed25519", f"ssh_private_key: {key}")
    text = text.replace("--port=6379", f"--port={port}")
    return text.replace("cluster_name: raylar-local", f"cluster_name: {name}")


def test_ray_up_local_cluster_runs_training(local_sshd, tmp_path):
    key = local_sshd["key"]
    login_path = ssh_command(key, "command -v ray || true")
    assert login_path.returncode == 0, login_path.stderr
    # `ray down` runs a bare `ray stop` on the head, which would stop every Ray
    # process on this shared machine if `ray` were on the login PATH.
    assert login_path.stdout.strip() == "", (
        f"`ray` is on root's login PATH ({login_path.stdout.strip()})"
    )

    port = free_port()
    name = f"raylar-test-{os.getpid()}"
    config = tmp_path / "local.yaml"
    config.write_text(filled_local_config(key, port, name))
    run_dir = tmp_path / "run"
    home = Path.home()
    launcher_files = [home / "ray_bootstrap_config.yaml", home / "ray_bootstrap_key.pem"]
    existing = {path for path in launcher_files if path.exists()}
    ray_cli = str(VENV_BIN / "ray")
    environment = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}

    def launcher(*arguments, timeout=240):
        return subprocess.run(
            [ray_cli, *arguments], capture_output=True, text=True, timeout=timeout, env=environment
        )

    job_environment = f"cd {REPO} && RAY_AUTH_MODE=token RAY_ADDRESS=127.0.0.1:{port}"
    resources_job = f'{job_environment} .venv/bin/python -c "{RESOURCES_JOB}"'
    training_job = (
        f"{job_environment} .venv/bin/python -m raylar.train --simulate 24 --downsample 9 "
        f"--model jishnet --workers 2 --epochs 1 --batch-size 2 --budget 120s --output {run_dir}"
    )
    try:
        up = launcher("up", "-y", "--no-config-cache", str(config))
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]

        resources = launcher("exec", str(config), resources_job, timeout=120)
        assert resources.returncode == 0, resources.stdout[-3000:] + resources.stderr[-3000:]
        figures = printed_resources(resources.stdout)
        assert figures["CPU"] == 2

        training = launcher("exec", str(config), training_job, timeout=240)
        assert training.returncode == 0, training.stdout[-3000:] + training.stderr[-3000:]
    finally:
        stop_ray_head(port)
        down = launcher("down", "-y", str(config), timeout=120)
        stop_ray_head(port)
        for path in launcher_files:
            if path not in existing:
                path.unlink(missing_ok=True)
        for suffix in ("lock", "state"):
            Path(f"/tmp/ray/cluster-{name}.{suffix}").unlink(missing_ok=True)

    assert down.returncode == 0, down.stdout[-3000:] + down.stderr[-3000:]
    assert ray_head_processes(port) == []
    summary = json.loads((run_dir / "metrics.json").read_text())
    assert summary["status"] == "completed"
    assert summary["world_size"] == 2
    assert summary["epochs_finished"] == 1
    assert (run_dir / "workers" / "rank0.csv").is_file()
    assert (run_dir / "workers" / "rank1.csv").is_file()
