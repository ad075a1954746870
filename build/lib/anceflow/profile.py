"""Install the repo's SLURM profile as a user profile, so that `snakemake --profile slurm` works.

Snakemake looks a bare profile name up in ./<name> (the working directory first),
~/.config/snakemake/<name> and /etc/xdg/snakemake/<name>. This writes
~/.config/snakemake/<name>/config.yaml: the repo's profiles/slurm/config.yaml plus your site's
values (account, partitions, GPU model, QoS), which therefore never enter the repository.
Opt-in and explicit:

    python -m anceflow.profile install --account myproj --partition gpu --cpu-partition cpu --gpu-model a100

``--partition`` is where GPU jobs go (and every job, without ``--cpu-partition``);
``--cpu-partition`` sends the jobs that use no GPU (preparation, tokenization, BM25, mining,
evaluation) to a CPU partition instead.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import yaml

# profiles/slurm/config.yaml, reached through the package (a link in the repository, a copy in an
# installed wheel).
REPO_PROFILE = Path(__file__).resolve().parent / "data" / "slurm-profile.yaml"


def gpu_rules(profile: dict) -> list[str]:
    """The rules the profile gives a GPU."""
    return [rule for rule, res in profile.get("set-resources", {}).items() if res.get("gpu")]


def user_profile_dir(name: str = "slurm") -> Path:
    base = Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config"))
    return base / "snakemake" / name


def site_profile(account: str | None = None, partition: str | None = None, gpu_model: str | None = None,
                 qos: str | None = None, cpu_partition: str | None = None) -> dict:
    """The repo profile with the site's values added."""
    profile = yaml.safe_load(REPO_PROFILE.read_text())
    defaults = profile.setdefault("default-resources", {})
    gpus = gpu_rules(profile)
    if account:
        defaults["slurm_account"] = account
    else:
        profile["slurm-no-account"] = True
    if cpu_partition:
        defaults["slurm_partition"] = cpu_partition
        if partition:
            for rule in gpus:
                profile["set-resources"][rule]["slurm_partition"] = partition
    elif partition:
        defaults["slurm_partition"] = partition
    if qos:
        profile["slurm-qos"] = qos
    if gpu_model:
        for rule in gpus:
            profile["set-resources"][rule]["gpu_model"] = gpu_model
    return profile


def install(name: str = "slurm", force: bool = False, **site) -> Path:
    folder = user_profile_dir(name)
    target = folder / "config.yaml"
    if target.exists() and not force:
        raise FileExistsError(f"{target} exists; pass --force to replace it")
    folder.mkdir(parents=True, exist_ok=True)
    header = ("# Written by `python -m anceflow.profile install` from anceflow's profiles/slurm/config.yaml\n"
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
    inst.add_argument("--partition", help="partition of the GPU jobs (of all jobs without --cpu-partition)")
    inst.add_argument("--cpu-partition", help="partition of the jobs that use no GPU")
    inst.add_argument("--gpu-model")
    inst.add_argument("--qos")
    inst.add_argument("--force", action="store_true")
    args = ap.parse_args(argv)
    try:
        path = install(args.name, args.force, account=args.account, partition=args.partition,
                       gpu_model=args.gpu_model, qos=args.qos, cpu_partition=args.cpu_partition)
    except FileExistsError as err:
        print(err, file=sys.stderr)
        return 1
    print(f"wrote {path}; now: snakemake --profile {args.name} --configfile <your config>")
    return 0


if __name__ == "__main__":
    sys.exit(main())
