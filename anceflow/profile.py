"""Install the repo's SLURM profile as a user profile, so that `snakemake --profile slurm` works.

Snakemake looks a bare profile name up in ./<name>, ~/.config/snakemake/<name> and
/etc/xdg/snakemake/<name>. This writes ~/.config/snakemake/<name>/config.yaml: the repo's
profiles/slurm/config.yaml plus your site's values (account, partition, GPU model, QoS),
which therefore never enter the repository. Opt-in and explicit:

    python -m anceflow.profile install --account myproj --partition gpu --gpu-model a100
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import yaml

REPO_PROFILE = Path(__file__).resolve().parent.parent / "profiles" / "slurm" / "config.yaml"
GPU_RULES = ("train", "encode_corpus", "encode_queries", "build_index", "dense_search")


def user_profile_dir(name: str = "slurm") -> Path:
    base = Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config"))
    return base / "snakemake" / name


def site_profile(account: str | None = None, partition: str | None = None, gpu_model: str | None = None,
                 qos: str | None = None) -> dict:
    """The repo profile with the site's values added."""
    profile = yaml.safe_load(REPO_PROFILE.read_text())
    defaults = profile.setdefault("default-resources", {})
    if account:
        defaults["slurm_account"] = account
    else:
        profile["slurm-no-account"] = True
    if partition:
        defaults["slurm_partition"] = partition
    if qos:
        profile["slurm-qos"] = qos
    if gpu_model:
        for rule in GPU_RULES:
            profile["set-resources"][rule]["gpu_model"] = gpu_model
    return profile


def install(name: str = "slurm", force: bool = False, **site) -> Path:
    folder = user_profile_dir(name)
    target = folder / "config.yaml"
    if target.exists() and not force:
        raise FileExistsError(f"{target} exists; pass --force to replace it")
    folder.mkdir(parents=True, exist_ok=True)
    header = (f"# Written by `python -m anceflow.profile install` from {REPO_PROFILE}\n"
              "# plus this site's values. Re-run it (with --force) after updating the repository.\n")
    target.write_text(header + yaml.safe_dump(site_profile(**site), sort_keys=False))
    return target


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m anceflow.profile", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    inst = sub.add_parser("install", help="write ~/.config/snakemake/<name>/config.yaml")
    inst.add_argument("--name", default="slurm")
    inst.add_argument("--account")
    inst.add_argument("--partition")
    inst.add_argument("--gpu-model")
    inst.add_argument("--qos")
    inst.add_argument("--force", action="store_true")
    args = ap.parse_args(argv)
    try:
        path = install(args.name, args.force, account=args.account, partition=args.partition,
                       gpu_model=args.gpu_model, qos=args.qos)
    except FileExistsError as err:
        print(err, file=sys.stderr)
        return 1
    print(f"wrote {path}; now: snakemake --profile {args.name} --configfile <your config>")
    return 0


if __name__ == "__main__":
    sys.exit(main())
