"""Verify a results folder's provenance: ``python -m anceflow.verify results/<name>``.

Every checkpoint's files are hashed again and compared with its ``manifest.json``; then its links
are followed back: its parent (the previous checkpoint, down to ``zeroshot`` and the pretrained
model), the negatives it trained on (the parquet and its JSON, against the hashes the checkpoint
recorded), and what mined those negatives (a checkpoint, whose current hash must be the one the
JSON recorded, verified in turn; or BM25, where the chain ends), with the run they were drawn from.
One line per check; the first mismatch stops with exit code 1 and a message naming the file and
the hash that was expected. A file that is not there any more (runs of the training split are
deleted once used unless ``keep_intermediate``) cannot be hashed again: its line says so
(``skip``), which is not a failure. Exit codes: 0 all checks passed, 1 a mismatch, 2 not a results
folder.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from anceflow.digest import source_digest
from anceflow.provenance import MANIFEST, listed_files, read_manifest, relative, sha256_file, tree_digest


class Mismatch(Exception):
    """A file that exists and differs from what was recorded, or a broken link."""


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


def _order(system: str) -> tuple:
    """zeroshot, round-0, round-1, ..., then the rest (bm25neg) by name."""
    m = re.fullmatch(r"round-(\d+)", system)
    return (0, 0, "") if system == "zeroshot" else (1, int(m.group(1)), "") if m else (2, 0, system)


class Verifier:
    def __init__(self, root: str | Path, out=print):
        self.root = Path(root)
        self.out = out
        self.checkpoints: dict[Path, dict] = {}   # verified checkpoint folders -> manifest
        self.visiting: set[Path] = set()
        self.mined: set[Path] = set()             # negatives whose mining link was followed
        self.hashes: dict[Path, str] = {}         # each file hashed once
        self.counts = {"ok": 0, "skip": 0}
        self.digest = source_digest()

    # -- output ------------------------------------------------------------------------------

    def ok(self, text: str) -> None:
        self.counts["ok"] += 1
        self.out(f"ok    {text}")

    def skip(self, text: str) -> None:
        self.counts["skip"] += 1
        self.out(f"skip  {text}")

    def note(self, text: str) -> None:
        self.out(f"note  {text}")

    def name(self, path: str | Path) -> str:
        """A path as shown: relative to the results folder when inside it."""
        return relative(path, self.root)

    def path(self, recorded: str) -> Path:
        """A recorded path: relative ones are relative to the results folder."""
        p = Path(recorded)
        return p if p.is_absolute() else self.root / p

    def sha256(self, path: Path) -> str:
        key = path.resolve()
        if key not in self.hashes:
            self.hashes[key] = sha256_file(path)
        return self.hashes[key]

    def same_file(self, path: Path, recorded: str, where: str, what: str) -> bool:
        """Hash ``path`` against ``recorded`` (from ``where``); False if the file is not there."""
        if not path.is_file():
            self.skip(f"{self.name(path)}: not there (deleted once used, or moved); sha256 {recorded[:12]} "
                      f"recorded by {where} not recomputed")
            return False
        actual = self.sha256(path)
        if actual != recorded:
            raise Mismatch(f"{self.name(path)}: sha256 {actual}, but {where} records {recorded} ({what})")
        return True

    # -- checks --------------------------------------------------------------------------------

    def run(self) -> None:
        folder = self.root / "checkpoints"
        systems = sorted((p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")),
                         key=_order) if folder.is_dir() else []
        if not systems:
            raise FileNotFoundError(f"{self.root}: no checkpoints/<system>/ folders (not a results folder?)")
        for system in systems:
            self.checkpoint(folder / system)
        # Negatives no checkpoint has trained on yet (a run stopped between mining and training).
        # round-<n>.json only: round-<n>.audit.json is the report's audit, not a record of mining.
        for stats in sorted((self.root / "negatives").glob("round-*[0-9].json"), key=lambda p: _order(p.stem)):
            parquet = stats.with_suffix(".parquet")
            if parquet.resolve() not in self.mined:
                try:
                    info = json.loads(stats.read_text())
                except ValueError as err:
                    raise Mismatch(f"{self.name(stats)}: not readable JSON ({err})") from None
                self.mining(parquet, info, self.name(stats))

    def checkpoint(self, folder: Path) -> dict:
        """Verify a checkpoint folder and, first time only, everything it links to."""
        key = folder.resolve()
        if key in self.checkpoints:
            return self.checkpoints[key]
        if key in self.visiting:
            raise Mismatch(f"{self.name(folder)}: its provenance links lead back to itself")
        self.visiting.add(key)
        manifest = self.files(folder)
        where = f"{self.name(folder)}/{MANIFEST}"
        parent = manifest.get("parent")
        if not parent:
            raise Mismatch(f"{where}: records no parent")
        if parent.get("system"):
            self.parent_checkpoint(folder, parent, where)
        else:
            self.pretrained(folder, parent, where)
        if manifest.get("negatives"):
            self.negatives(manifest["negatives"], where)
        carried = manifest.get("optimizer_from")
        if carried and carried.get("sha256"):
            if self.same_file(self.path(carried["path"]), carried["sha256"], where, "the optimizer state it started from"):
                self.ok(f"{self.name(self.path(carried['path']))}: the optimizer state {self.name(folder)} started "
                        f"from, sha256 {carried['sha256'][:12]}")
        if manifest.get("code_digest") not in (None, self.digest):
            self.note(f"{self.name(folder)} was made by training code with digest {manifest['code_digest']}; "
                      f"this code's is {self.digest} (not a failure)")
        self.visiting.discard(key)
        self.checkpoints[key] = manifest
        return manifest

    def files(self, folder: Path) -> dict:
        """The folder's files against its manifest: none missing, none changed, none added."""
        manifest_path = folder / MANIFEST
        if not manifest_path.is_file():
            raise Mismatch(f"{self.name(manifest_path)}: missing (a checkpoint made before manifests were "
                           f"written, or not by this workflow; re-run its job to record one)")
        try:
            manifest = read_manifest(folder)
            recorded = manifest["weights"]["files"]
        except (ValueError, KeyError, TypeError) as err:
            raise Mismatch(f"{self.name(manifest_path)}: not a readable manifest ({err})") from None
        where = self.name(manifest_path)
        for rel in sorted(recorded):
            path = folder / rel
            if not path.is_file():
                raise Mismatch(f"{self.name(path)}: missing, but {where} records it (sha256 {recorded[rel]['sha256']})")
            actual = self.sha256(path)
            if actual != recorded[rel]["sha256"]:
                raise Mismatch(f"{self.name(path)}: sha256 {actual}, but {where} records {recorded[rel]['sha256']}")
        added = [p for p in listed_files(folder) if p.relative_to(folder).as_posix() not in recorded]
        if added:
            raise Mismatch(f"{self.name(added[0])}: not in {where} (a file added after the checkpoint was made)")
        digest = tree_digest(recorded)
        if digest != manifest["weights"].get("sha256"):
            raise Mismatch(f"{where}: its folder sha256 {manifest['weights'].get('sha256')} is not that of its own "
                           f"file list ({digest}): the manifest was edited")
        size = sum(f["bytes"] for f in recorded.values())
        self.ok(f"{self.name(folder)}: {len(recorded)} files ({_size(size)}) match {MANIFEST}, sha256 {digest[:12]}")
        return manifest

    def parent_checkpoint(self, folder: Path, parent: dict, where: str) -> None:
        path = self.path(parent["path"])
        if not path.is_dir():
            raise Mismatch(f"{self.name(path)}: missing, but {where} names it as the parent "
                           f"(sha256 {parent['sha256']})")
        current = self.checkpoint(path)["weights"]["sha256"]
        if current != parent["sha256"]:
            raise Mismatch(f"{self.name(path)}: sha256 {current}, but {where} records its parent's as "
                           f"{parent['sha256']}")
        self.ok(f"{self.name(folder)} <- {self.name(path)}: the parent it was trained from, sha256 {current[:12]}")

    def pretrained(self, folder: Path, parent: dict, where: str) -> None:
        """The model the chain starts from: hashed again when it is here (a local folder)."""
        label = parent.get("name") or parent["path"]
        if parent.get("sha256") is None:
            self.skip(f"{self.name(folder)} <- {label}: not a local folder when the checkpoint was made; no hash")
            return
        path = self.path(parent["path"])
        if not path.exists():
            self.skip(f"{self.name(folder)} <- {label}: {path} not here; sha256 {parent['sha256'][:12]} not recomputed")
            return
        if path.is_dir() and "files" in parent:
            for rel, entry in sorted(parent["files"].items()):
                f = path / rel
                if not f.is_file():
                    raise Mismatch(f"{f}: missing, but {where} records it as part of the pretrained model "
                                   f"(sha256 {entry['sha256']})")
                actual = self.sha256(f)
                if actual != entry["sha256"]:
                    raise Mismatch(f"{f}: sha256 {actual}, but {where} records {entry['sha256']} "
                                   f"(a file of the pretrained model)")
            added = [p for p in listed_files(path) if p.relative_to(path).as_posix() not in parent["files"]]
            if added:
                raise Mismatch(f"{added[0]}: not among the pretrained model's files {where} records")
            actual = tree_digest(parent["files"])
        else:
            actual = self.sha256(path)
        if actual != parent["sha256"]:
            raise Mismatch(f"{path}: sha256 {actual}, but {where} records {parent['sha256']} (the pretrained model)")
        where_from = "" if str(path) == label else f" ({path})"
        self.ok(f"{self.name(folder)} <- {label}{where_from}: the pretrained model, sha256 {actual[:12]}")

    def negatives(self, entry: dict, where: str) -> None:
        """The negatives a checkpoint trained on, their JSON, and what mined them."""
        path = self.path(entry["path"])
        if self.same_file(path, entry["sha256"], where, "the negatives it trained on"):
            self.ok(f"{self.name(path)}: the negatives {where.rsplit('/', 1)[0]} trained on, sha256 {entry['sha256'][:12]}")
        stats = entry.get("stats")
        info, source = entry, where  # the copy in the manifest, if the JSON is gone
        if stats:
            stats_path = self.path(stats)
            if self.same_file(stats_path, entry["stats_sha256"], where, "the JSON of the negatives it trained on"):
                self.ok(f"{self.name(stats_path)}: as {where.rsplit('/', 1)[0]} recorded it, "
                        f"sha256 {entry['stats_sha256'][:12]}")
                info, source = json.loads(stats_path.read_text()), self.name(stats_path)
        if path.resolve() not in self.mined:
            self.mining(path, info, source)

    def mining(self, negatives: Path, info: dict, source: str) -> None:
        """What mined ``negatives`` (as ``source`` records it): BM25 ends the chain; a checkpoint
        must still have the hash recorded then, and is verified in turn."""
        self.mined.add(negatives.resolve())
        mined_with, mining = info.get("mined_with"), info.get("mining") or {}
        if not mined_with:
            raise Mismatch(f"{source}: does not record what mined {self.name(negatives)} (made before provenance "
                           f"was recorded; re-run its mining job)")
        if mining.get("negatives_sha256") and self.same_file(negatives, mining["negatives_sha256"], source,
                                                             "the negatives file it describes"):
            self.ok(f"{self.name(negatives)}: as {source} recorded it, sha256 {mining['negatives_sha256'][:12]}")
        if mining.get("run"):
            run = self.path(mining["run"])
            if self.same_file(run, mining["run_sha256"], source, f"the run {self.name(negatives)} were drawn from"):
                self.ok(f"{self.name(run)}: the run {self.name(negatives)} were drawn from, "
                        f"sha256 {mining['run_sha256'][:12]}")
        if mined_with == "bm25":
            settings = ", ".join(f"{k} {v}" for k, v in (mining.get("bm25") or {}).items())
            self.ok(f"{self.name(negatives)}: mined with BM25 ({settings or 'settings not recorded'}): the chain ends")
            return
        checkpoint = self.path(mining.get("checkpoint") or f"checkpoints/{mined_with}")
        if not checkpoint.is_dir():
            raise Mismatch(f"{self.name(checkpoint)}: missing, but {source} records it as what mined "
                           f"{self.name(negatives)}")
        current = self.checkpoint(checkpoint)["weights"]["sha256"]
        if current != mining.get("checkpoint_sha256"):
            raise Mismatch(f"{self.name(checkpoint)}: sha256 {current}, but {source} records "
                           f"{mining.get('checkpoint_sha256')} as the checkpoint that mined {self.name(negatives)}")
        self.ok(f"{self.name(negatives)}: mined with {self.name(checkpoint)}, sha256 {current[:12]}")


def verify(root: str | Path, out=print) -> int:
    """Check ``root`` (a ``results/<name>`` folder); returns the exit code (0 passed, 1 mismatch, 2 usage)."""
    verifier = Verifier(root, out)
    try:
        verifier.run()
    except Mismatch as err:
        out(f"FAIL  {err}")
        return 1
    except FileNotFoundError as err:
        out(f"error: {err}")
        return 2
    c = verifier.counts
    skipped = f"; {c['skip']} not recomputed (files not there: not a failure)" if c["skip"] else ""
    out(f"verified {len(verifier.checkpoints)} checkpoints: {c['ok']} checks passed{skipped}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m anceflow.verify", description=__doc__.split("\n\n")[0])
    parser.add_argument("results", help="a results folder, results/<name>")
    args = parser.parse_args(argv)
    return verify(args.results, out=lambda line: print(line, flush=True))


if __name__ == "__main__":
    sys.exit(main())
