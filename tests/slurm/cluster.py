"""A real SLURM cluster on 127.0.0.1 for tests: munge, slurmctld and slurmd with two fake GPUs.

Needs Debian's slurm-wlm and munge (`.ci/run` installs them) and root. Facts and traps from
../shared/notes/slurm-local.md: slurm.conf must be at /etc/slurm/slurm.conf (job steps do not
see SLURM_CONF); accounting is off, so status comes from squeue; gres File entries must be
device files, so the fake GPUs are /dev/null and /dev/zero.

    python tests/slurm/cluster.py start|stop
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

STATE = Path(os.environ.get("ANCEFLOW_SLURM_STATE", "/tmp/anceflow-slurm"))
CONF = Path("/etc/slurm/slurm.conf")
GRES = Path("/etc/slurm/gres.conf")
MUNGE_KEY = Path("/etc/munge/munge.key")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def missing_tools() -> list[str]:
    return [t for t in ("munged", "slurmctld", "slurmd", "sbatch", "squeue") if shutil.which(t) is None]


def _run(*cmd, check=True, **kw):
    return subprocess.run(cmd, check=check, capture_output=True, text=True, **kw)


def _start_munge() -> None:
    if _run("sh", "-c", "munge -n | unmunge", check=False).returncode == 0:
        return  # already running
    if not MUNGE_KEY.exists():
        MUNGE_KEY.parent.mkdir(parents=True, exist_ok=True)
        MUNGE_KEY.write_bytes(os.urandom(1024))
    for path in (MUNGE_KEY.parent, Path("/var/log/munge"), Path("/run/munge"), Path("/var/lib/munge")):
        path.mkdir(parents=True, exist_ok=True)
        shutil.chown(path, "munge", "munge")
    shutil.chown(MUNGE_KEY, "munge", "munge")
    MUNGE_KEY.chmod(0o400)
    _run("runuser", "-u", "munge", "--", "munged", "--force")
    _wait(lambda: _run("sh", "-c", "munge -n | unmunge", check=False).returncode == 0, "munged")
    (STATE / "munged.started").touch()


def _wait(ok, what: str, timeout: float = 60) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if ok():
            return
        time.sleep(0.5)
    raise RuntimeError(f"{what} did not come up within {timeout:.0f} s")


MARK = "# written by anceflow's tests/slurm/cluster.py"


def _backup(path: Path) -> Path:
    return path.with_name(path.name + ".anceflow-backup")


def write_config(cpus: int = 2, memory_mb: int = 16000) -> None:
    """Write slurm.conf and gres.conf for the loopback cluster, keeping any existing ones aside."""
    host = socket.gethostname().split(".")[0]
    for path in (CONF, GRES):
        if path.exists() and not path.read_text().startswith(MARK):
            path.replace(_backup(path))
    spool = STATE / "spool"
    for d in (STATE / "state", spool, STATE / "log"):
        d.mkdir(parents=True, exist_ok=True)
    CONF.parent.mkdir(parents=True, exist_ok=True)
    CONF.write_text(f"""{MARK}
ClusterName=anceflow-test
SlurmctldHost={host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation={STATE / 'state'}
SlurmdSpoolDir={spool}
SlurmctldPidFile={STATE / 'slurmctld.pid'}
SlurmdPidFile={STATE / 'slurmd.pid'}
SlurmctldLogFile={STATE / 'log/slurmctld.log'}
SlurmdLogFile={STATE / 'log/slurmd.log'}
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
KillWait=20
InactiveLimit=0
MinJobAge=600
GresTypes=gpu
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb} Gres=gpu:2 State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
""")
    GRES.write_text(f"{MARK}\nAutoDetect=off\nNodeName={host} Name=gpu File=/dev/null\nNodeName={host} Name=gpu File=/dev/zero\n")


def start() -> None:
    """Start munge, slurmctld and slurmd, and wait until the node is idle."""
    if missing_tools():
        raise RuntimeError(f"SLURM is not installed (missing {', '.join(missing_tools())}): "
                           "apt-get install slurm-wlm munge")
    STATE.mkdir(parents=True, exist_ok=True)
    stop()
    write_config()
    _start_munge()
    _run("slurmctld")
    _run("slurmd")
    host = socket.gethostname().split(".")[0]
    _wait(lambda: _run("scontrol", "ping", check=False).stdout.count("UP") > 0, "slurmctld")
    _run("scontrol", "update", f"nodename={host}", "state=resume", check=False)
    _wait(lambda: "idle" in _run("sinfo", "-h", "-o", "%T", check=False).stdout, "the node (idle)", timeout=90)


def remove_config() -> None:
    """Remove the config files this module wrote and put back what they replaced. A slurm.conf
    left behind without its controller makes every `scontrol` wait for it: Snakemake's SLURM
    plugin runs `scontrol show config` when it is imported, which then stalls each snakemake
    start by about 9 s, even for local runs."""
    for path in (CONF, GRES):
        if path.exists() and path.read_text().startswith(MARK):
            path.unlink()
        if _backup(path).exists():
            _backup(path).replace(path)


def stop() -> None:
    """Stop the daemons this module started (by their pid files) and remove their config."""
    for name in ("slurmd", "slurmctld"):
        pid_file = STATE / f"{name}.pid"
        if pid_file.exists():
            try:
                os.kill(int(pid_file.read_text().strip()), signal.SIGTERM)
            except (ValueError, ProcessLookupError):
                pass
            pid_file.unlink(missing_ok=True)
    if (STATE / "munged.started").exists():
        _run("pkill", "-x", "munged", check=False)
        (STATE / "munged.started").unlink()
    time.sleep(1)
    remove_config()


if __name__ == "__main__":
    {"start": start, "stop": stop}[sys.argv[1]]()
