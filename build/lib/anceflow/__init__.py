"""anceflow: ANCE dense-retrieval training as a Snakemake workflow.

Each workflow stage has a module of the same name here (``prepare``, ``tokenize``,
``bm25``, ``negatives``, ``evaluate``, ...); ``rules/<stage>.smk`` calls it
through a thin script in ``workflow/scripts/``.
"""

__version__ = "0.1.0"
