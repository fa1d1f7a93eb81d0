"""``python -m fwi_attn.cli.torchrun [torchrun options] -m fwi_attn.cli COMMAND ...``: torchrun
whose failures are one line each and exit status 1.

Each process of ``fwi-attn train`` reports its own failure in one line (``fwi-attn train: error:
...``, exit status 1). torchrun would then add its log lines and a ``ChildFailedError`` traceback
with a table of every process; this wrapper runs the same launcher (``torch.distributed.run``,
same options) without its logging, and instead prints one line for each process that could not
say for itself why it stopped (killed by a signal, or another exit status), leaving out the
processes the launcher itself stopped with SIGTERM after the first failure.
"""
from __future__ import annotations

import logging
import signal
import sys


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


def failure_lines(failures: dict) -> list[str]:
    """One line per failed process that printed no error of its own (see the module docstring).

    Args:
        failures: global rank -> ``ProcessFailure`` (``exitcode``, ``pid``, ``local_rank``), as
            ``ChildFailedError.failures`` holds them.
    """
    lines = []
    for rank, f in sorted(failures.items()):
        code = int(f.exitcode)
        if code == 1 or code == -signal.SIGTERM:
            continue  # reported itself (fwi-attn's one line), or stopped by the launcher
        if code < 0:
            why = f"was killed by {_signal_name(code)}" + (" (out of memory?)" if code == -signal.SIGKILL else "")
        else:
            why = f"exited with status {code}"
        lines.append(f"torchrun: error: process of rank {rank} (pid {f.pid}) {why}; see its output above")
    if not lines and all(int(f.exitcode) == -signal.SIGTERM for f in failures.values()):
        lines.append(f"torchrun: error: {len(failures)} process(es) were stopped by SIGTERM")
    return lines


def main(argv: list[str] | None = None) -> int:
    """Run ``torch.distributed.run`` with ``argv``; 0 on success, 1 (after one line per failure) otherwise."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)  # argparse: usage errors exit 2 with its own message
    logging.disable(logging.ERROR)  # the launcher's own warnings and errors: replaced by the lines below
    try:
        run(args)
    except ChildFailedError as e:
        for line in failure_lines(e.failures):
            print(line, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("torchrun: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # rendezvous, a signal to the launcher, ...
        text = " ".join(str(e).split()) or type(e).__name__
        print(f"torchrun: error: {type(e).__name__}: {text}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
