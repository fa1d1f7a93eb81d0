"""A real one-node SLURM cluster on 127.0.0.1: munged, slurmctld and slurmd of Debian's
slurm-wlm, configured from ``slurm.conf.in`` for this host (name, CPUs, memory) in a private
folder, with their own munge socket and free ports, so nothing of a system-wide SLURM or munge
is touched. ``SLURM_CONF`` in :meth:`LoopbackCluster.env` points the client commands (sbatch,
squeue, scontrol) and Snakemake's SLURM executor at it. Inside a job the executor runs the
command with ``srun`` after removing every ``SLURM_*`` variable, so that srun finds the config
only at its default place: :meth:`LoopbackCluster.start` puts a copy at ``/etc/slurm/slurm.conf``
(only where there is none: a host with a SLURM of its own is refused) and ``stop`` removes it.

Used by tests/test_slurm.py; runnable by hand to try the profile::

    python tests/slurm/cluster.py /tmp/loopback   # starts the daemons, prints the env, waits for Ctrl-C

Ctrl-C, SIGTERM or SIGHUP stop every daemon it started (by PID) and remove the config copy; a
daemon also gets SIGTERM when the process that started it dies of anything, SIGKILL included
(only then is the marked ``/etc/slurm/slurm.conf`` left behind; the next start replaces it).
"""
from __future__ import annotations

import atexit
import contextlib
import ctypes
import getpass
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DAEMONS = ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "squeue", "srun", "scontrol", "sinfo")
PACKAGES = ("slurm-wlm", "munge")
SYSTEM_CONF = Path("/etc/slurm/slurm.conf")
MARK = "# fwi-attn loopback test cluster"
PARTITION = "batch-loop"  # the cluster's partitions: names no profile could guess
GPU_PARTITION = "accel-loop"


def missing_commands() -> list[str]:
    return [c for c in DAEMONS if shutil.which(c) is None and not Path("/usr/sbin", c).exists()]


def ensure_installed(timeout: float = 600) -> str | None:
    """Install slurm-wlm and munge with apt-get when a command is missing. Returns None when
    everything is there, else why it could not be installed (a reason to skip, not to fail)."""
    if not missing_commands():
        return None
    if shutil.which("apt-get") is None:
        return f"SLURM commands missing ({', '.join(missing_commands())}) and no apt-get to install {' '.join(PACKAGES)}"
    if os.geteuid() != 0:
        return f"SLURM commands missing ({', '.join(missing_commands())}); installing {' '.join(PACKAGES)} needs root"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES]
    try:
        proc = subprocess.run(install, capture_output=True, text=True, env=env, timeout=timeout)
        if proc.returncode != 0:  # a fresh machine may have no package lists yet
            subprocess.run(["apt-get", "update", "-q"], capture_output=True, text=True, env=env, timeout=timeout)
            proc = subprocess.run(install, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"apt-get install {' '.join(PACKAGES)} took over {timeout:.0f} s"
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        return f"apt-get install {' '.join(PACKAGES)} failed: {tail[0]}"
    if missing_commands():
        return f"after installing {' '.join(PACKAGES)}, still missing: {', '.join(missing_commands())}"
    return None


def system_conf_in_use() -> str | None:
    """Why the loopback cluster cannot run here, if a SLURM config of the host's own is in place."""
    if SYSTEM_CONF.exists() and MARK not in SYSTEM_CONF.read_text(errors="replace"):
        return f"{SYSTEM_CONF} belongs to this host's own SLURM: jobs' srun would not reach the loopback cluster"
    if not os.access(SYSTEM_CONF.parent if SYSTEM_CONF.parent.exists() else SYSTEM_CONF.parent.parent, os.W_OK):
        return f"{SYSTEM_CONF} cannot be written (jobs' srun reads the config only there)"
    return None


def _die_with_parent() -> None:
    """In a daemon before it starts: SIGTERM it when the process that started it dies, even
    of a SIGKILL, so no daemon outlives a killed test run (Linux prctl PR_SET_PDEATHSIG)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)


@contextlib.contextmanager
def stopped_on_signals(cluster: LoopbackCluster):
    """Run the block with SIGTERM and SIGHUP raising SystemExit (as SIGINT raises
    KeyboardInterrupt), so that the cluster is stopped on the way out whichever ends it."""
    def leave(signum, frame):
        raise SystemExit(f"stopped by signal {signal.Signals(signum).name}")

    previous = {s: signal.signal(s, leave) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield cluster
    finally:
        try:
            cluster.stop()
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)


def _sbin(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _memory_mb() -> int:
    with open("/proc/meminfo") as f:
        total_kb = next(int(line.split()[1]) for line in f if line.startswith("MemTotal:"))
    return total_kb // 1024 - 512  # slurmd refuses a node whose RealMemory exceeds what it sees


class LoopbackCluster:
    """Start with :meth:`start`, stop with :meth:`stop` (only the PIDs it started)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).resolve()
        self.conf = self.root / "slurm.conf"
        self.host = socket.gethostname().split(".")[0]
        self.cpus = os.cpu_count() or 1
        self.memory_mb = _memory_mb()
        self.partition, self.gpu_partition = PARTITION, GPU_PARTITION
        self.procs: dict[str, subprocess.Popen] = {}
        self._owns_system_conf = False

    def env(self) -> dict:
        return dict(os.environ, SLURM_CONF=str(self.conf))

    def write_config(self) -> Path:
        for d in ("state", "spool"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o700)  # munged refuses a socket folder others may write to
        fields = {"HOST": self.host, "USER": getpass.getuser(), "DIR": str(self.root), "CPUS": str(self.cpus),
                  "MEMORY_MB": str(self.memory_mb), "CTLD_PORT": str(_free_port()),
                  "SLURMD_PORT": str(_free_port()), "PARTITION": self.partition,
                  "GPU_PARTITION": self.gpu_partition}
        text = (HERE / "slurm.conf.in").read_text()
        for key, value in fields.items():
            text = text.replace(f"@{key}@", value)
        left = re.findall(r"^[^#]*(@[A-Z_]+@)", text, flags=re.M)
        assert not left, f"slurm.conf.in: unfilled fields {left}"
        self.conf.write_text(f"{MARK}: {self.root}\n" + text)
        return self.conf

    def _spawn(self, name: str, cmd: list[str]) -> None:
        with open(self.root / f"{name}.out", "w") as log:
            self.procs[name] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env(),
                                                start_new_session=True, preexec_fn=_die_with_parent)

    def pids(self) -> list[int]:
        """The daemons' PIDs (those still running)."""
        return [p.pid for p in self.procs.values() if p.poll() is None]

    def start(self, timeout: float = 60) -> None:
        reason = system_conf_in_use()
        if reason:
            raise RuntimeError(reason)
        atexit.register(self.stop)  # also when the caller dies of an exception it does not catch
        self.write_config()
        SYSTEM_CONF.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.conf, SYSTEM_CONF)
        self._owns_system_conf = True
        key = self.root / "munge.key"
        if not key.exists():
            subprocess.run([_sbin("mungekey"), "--create", f"--keyfile={key}"], check=True, capture_output=True)
        key.chmod(0o600)
        self._spawn("munged", [_sbin("munged"), "--foreground", "--force", f"--socket={self.root}/munge.socket",
                               f"--key-file={key}", f"--pid-file={self.root}/munged.pid",
                               f"--log-file={self.root}/munged.log", f"--seed-file={self.root}/munged.seed"])
        self._wait(lambda: (self.root / "munge.socket").exists(), "munged's socket", timeout)
        self._spawn("slurmctld", [_sbin("slurmctld"), "-D", "-c", "-i", "-f", str(self.conf)])
        self._wait(lambda: self._ok(["scontrol", "ping"], "UP"), "slurmctld", timeout)
        self._spawn("slurmd", [_sbin("slurmd"), "-D", "-N", self.host, "-f", str(self.conf)])
        self._wait(lambda: self._ok(["sinfo", "-h", "-N", "-o", "%t"], "idle"), "slurmd (node idle)", timeout)

    def _ok(self, cmd: list[str], expect: str) -> bool:
        """Whether ``cmd`` succeeds and prints ``expect`` ("" expects no output at all)."""
        proc = subprocess.run(cmd, capture_output=True, text=True, env=self.env(), timeout=30)
        return proc.returncode == 0 and (expect in proc.stdout if expect else not proc.stdout.strip())

    def _wait(self, ready, what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            dead = [n for n, p in self.procs.items() if p.poll() is not None]
            if dead:
                raise RuntimeError(f"{', '.join(dead)} exited while waiting for {what}:\n{self.logs()}")
            if ready():
                return
            time.sleep(0.5)
        raise RuntimeError(f"{what} not ready after {timeout:.0f} s:\n{self.logs()}")

    def logs(self, tail: int = 20) -> str:
        out = []
        for f in sorted(self.root.glob("*.log")) + sorted(self.root.glob("*.out")):
            lines = f.read_text(errors="replace").splitlines()[-tail:]
            out.append(f"--- {f.name}\n" + "\n".join(lines))
        return "\n".join(out)

    def stop(self) -> None:
        """Cancel the cluster's jobs (their slurmstepd would outlive slurmd), then stop the
        daemons this object started, newest first, by PID, and remove the config copy."""
        if "slurmctld" in self.procs and self.procs["slurmctld"].poll() is None:
            with contextlib.suppress(subprocess.SubprocessError, OSError):
                subprocess.run(["scancel", "--user", getpass.getuser()], env=self.env(), capture_output=True,
                               timeout=30)
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline and not self._ok(["squeue", "-h", "-t", "R,CG", "-o", "%i"], ""):
                    time.sleep(0.5)
        for name in reversed(list(self.procs)):
            proc = self.procs.pop(name)
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
        if self._owns_system_conf and SYSTEM_CONF.exists() and f"{MARK}: {self.root}" in SYSTEM_CONF.read_text():
            SYSTEM_CONF.unlink()
        self._owns_system_conf = False


if __name__ == "__main__":
    reason = ensure_installed()
    if reason:
        sys.exit(reason)
    cluster = LoopbackCluster(sys.argv[1] if len(sys.argv) > 1 else "/tmp/fwi-attn-loopback")
    with stopped_on_signals(cluster):
        try:
            cluster.start()
            print(f"export SLURM_CONF={cluster.conf}  # partitions: {cluster.partition}, {cluster.gpu_partition}",
                  flush=True)
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
