"""Sample a worker and its pool children with py-spy while a drain runs (``--profile DIR``).

py-spy is not a dependency: ``pip install py-spy``. The output is py-spy's "raw" format,
one collapsed stack per line with its sample count, which ``python -m bench.profile_summary``
sums up by function. Sampling slows the worker a little: numbers of a profiled run are
not the benchmark's numbers.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from pathlib import Path


class Profiler:
    """A ``py-spy record`` process attached to ``pid`` and its subprocesses until stopped."""

    def __init__(self, pid: int, output: Path, idle: bool = False) -> None:
        exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if not Path(exe).exists():
            raise SystemExit("--profile needs py-spy, which is not a dependency: pip install py-spy")
        argv = [exe, "record", "--pid", str(pid), "--subprocesses", "--format", "raw",
                "--rate", "200", "--nonblocking", "--output", str(output)]
        if idle:
            argv.append("--idle")
        self.output = output
        self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)

    def stop(self) -> None:
        """Stop sampling; py-spy writes its output when interrupted."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
