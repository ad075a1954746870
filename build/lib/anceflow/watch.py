"""Follow the logs of the jobs that are running, wherever they write, in one terminal.

Every job logs to a file of its own: ``results/<name>/logs/<rule>.<wildcards>.log`` (most jobs),
``results/<name>/tokens/<tokenizer>/logs/`` (tokenization), ``<download_dir>/logs/`` (downloads
and the model fetch, on the submit host), and on SLURM the executor's own
``.snakemake/slurm_logs/rule_<rule>/<jobid>.log``; Snakemake's run log is
``.snakemake/log/<time>.snakemake.log``. This prints each file that grew in the last ``--since``
seconds and follows them (and any new one) like ``tail -F``, one header per switch of file::

    python -m anceflow.watch                  # from the folder you run snakemake in
    python -m anceflow.watch --since 3600 --once

Progress bars (tqdm rewrites its line with ``\\r``) are shown as their latest state.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

#: Where jobs write their logs, relative to the working directory (default results and download dirs).
PATTERNS = ("{results}/*/logs/*.log", "{results}/*/tokens/*/logs/*.log", "{downloads}/logs/*.log",
            ".snakemake/slurm_logs/*/*.log", ".snakemake/slurm_logs/*/*/*.log", ".snakemake/log/*.snakemake.log")


def log_files(root: Path, results: str = "results", downloads: str = "resources") -> list[Path]:
    found = set()
    for pattern in PATTERNS:
        found.update(root.glob(pattern.format(results=results, downloads=downloads)))
    return sorted(p for p in found if p.is_file())


def _lines(text: str) -> list[str]:
    """Lines of new log text, a progress bar's redrawn line reduced to its latest state."""
    latest = (line.rstrip("\r").rsplit("\r", 1)[-1] for line in text.split("\n"))
    return [line for line in latest if line.strip()]


class Follower:
    """The new text of a set of files since the last look."""

    def __init__(self, root: Path, since: float, results: str, downloads: str, tail_lines: int = 10):
        self.root, self.results, self.downloads = root, results, downloads
        self.offsets: dict[Path, int] = {}
        self.last_header: Path | None = None
        now = time.time()
        for path in log_files(root, results, downloads):
            size = path.stat().st_size
            if now - path.stat().st_mtime <= since:
                # A recent file: show its last lines first.
                data = path.read_bytes().rstrip(b"\n")
                cut = len(data)
                for _ in range(tail_lines):
                    cut = data.rfind(b"\n", 0, cut)
                    if cut < 0:
                        break
                self.offsets[path] = cut + 1
            else:
                self.offsets[path] = size

    def poll(self, out=sys.stdout) -> int:
        """Print what was added to any log since the last poll; returns the number of lines."""
        printed = 0
        for path in log_files(self.root, self.results, self.downloads):
            start = self.offsets.get(path, 0)
            size = path.stat().st_size
            if size < start:  # started afresh (Snakemake truncates the log of a retried job)
                start = 0
            if size == start:
                self.offsets[path] = size
                continue
            with open(path, "rb") as fh:
                fh.seek(start)
                text = fh.read(size - start).decode("utf-8", errors="replace")
            self.offsets[path] = size
            lines = _lines(text)
            if not lines:
                continue
            if path != self.last_header:
                print(f"\n==> {path.relative_to(self.root)} <==", file=out)
                self.last_header = path
            for line in lines:
                print(line, file=out)
            printed += len(lines)
        out.flush()
        return printed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m anceflow.watch", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--directory", default=".", help="the folder snakemake runs in (default: here)")
    ap.add_argument("--results", default="results", help="results_dir of the config (default: results)")
    ap.add_argument("--downloads", default="resources", help="dataset.download_dir (default: resources)")
    ap.add_argument("--since", type=float, default=600, help="show logs written in the last N seconds (600)")
    ap.add_argument("--every", type=float, default=2.0, help="seconds between looks (2)")
    ap.add_argument("--once", action="store_true", help="print the recent logs and exit")
    args = ap.parse_args(argv)
    follower = Follower(Path(args.directory), args.since, args.results, args.downloads)
    follower.poll()
    if args.once:
        return 0
    try:
        while True:
            time.sleep(args.every)
            follower.poll()
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
