"""The dual encoder: any Hugging Face encoder, pooling, an optional ANCE head, a similarity.

ANCE (microsoft/ANCE, RobertaDot_NLL_LN) shares one RoBERTa between queries and passages and
maps [CLS] through Linear -> LayerNorm; sentence-transformers models such as all-MiniLM-L6-v2
use mean pooling and cosine similarity. Both are settings here (``model.*`` in the config).

A checkpoint is a plain Hugging Face folder: ``AutoModel.from_pretrained(folder)`` loads the
encoder (safetensors) and ``AutoTokenizer`` its tokenizer without this project; the small
``anceflow.json`` records pooling/head/similarity, and ``head.safetensors`` the head's weights.
With separate encoders the folder holds ``query/`` and ``doc/``, each such a folder.

It is also a sentence-transformers model: ``SentenceTransformer(folder)`` builds Transformer ->
Pooling (cls|mean) -> [Dense (identity activation) -> LayerNorm: the ANCE head] -> [Normalize
for cosine] from ``modules.json`` and gives this encoder's vectors (``encode_query`` /
``encode_document``; with separate encoders a ``Router`` sends each to its own tower).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from anceflow.io import atomic_path
from anceflow.model_source import load_tokenizer, resolve_model_path  # noqa: F401 (load_tokenizer re-exported)

SPEC_FILE = "anceflow.json"
HEAD_FILE = "head.safetensors"
POOLINGS = ("cls", "mean")
HEADS = ("none", "linear_layernorm")
SIMILARITIES = ("dot", "cosine")


@dataclass
class EncoderSpec:
    pooling: str = "cls"
    head: str = "none"
    similarity: str = "dot"
    shared: bool = True
    max_query_len: int | None = None  # for the sentence-transformers layout (its max_seq_length)
    max_doc_len: int | None = None

    def __post_init__(self):
        for name, allowed in (("pooling", POOLINGS), ("head", HEADS), ("similarity", SIMILARITIES)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"model.{name} must be one of {allowed}, not {getattr(self, name)!r}")

    @classmethod
    def from_config(cls, model_cfg: dict) -> "EncoderSpec":
        return cls(model_cfg["pooling"], model_cfg["head"], model_cfg["similarity"], model_cfg["shared_encoder"],
                   model_cfg["max_query_len"], model_cfg["max_doc_len"])


class LinearLayerNormHead(nn.Module):
    """ANCE's embedding head: [CLS] -> Linear(hidden, hidden) -> LayerNorm."""

    def __init__(self, hidden: int):
        super().__init__()
        self.linear = nn.Linear(hidden, hidden)
        self.norm = nn.LayerNorm(hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.linear(x))


class DualEncoder(nn.Module):
    #: Run ANCE's head (Linear -> LayerNorm) in float32 even under bf16/fp16 autocast. Its output is
    #: what dot products sum over; it costs one small matrix product per vector (bench/precision.py).
    fp32_head = True

    def __init__(self, query_encoder: nn.Module, doc_encoder: nn.Module | None, spec: EncoderSpec):
        super().__init__()
        self.spec = spec
        self.query_encoder = query_encoder
        # With a shared encoder the doc side is the same module (ANCE); parameters are not duplicated.
        self.doc_encoder = query_encoder if doc_encoder is None else doc_encoder
        hidden = query_encoder.config.hidden_size
        self.query_head = LinearLayerNormHead(hidden) if spec.head == "linear_layernorm" else None
        self.doc_head = self.query_head if spec.shared else (
            LinearLayerNormHead(hidden) if spec.head == "linear_layernorm" else None)

    @property
    def dim(self) -> int:
        return self.query_encoder.config.hidden_size

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, side: str) -> torch.Tensor:
        """Vectors for a padded batch; ``side`` is "query" or "doc"."""
        encoder, head = (self.query_encoder, self.query_head) if side == "query" else (self.doc_encoder, self.doc_head)
        hidden = encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.spec.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        if head is not None:
            if self.fp32_head:
                with torch.autocast(pooled.device.type, enabled=False):
                    pooled = head(pooled.float())
            else:
                pooled = head(pooled)
        if self.spec.similarity == "cosine":
            pooled = nn.functional.normalize(pooled.float(), dim=-1)
        return pooled

    def forward(self, query_ids, query_mask, doc_ids, doc_mask) -> tuple[torch.Tensor, torch.Tensor]:
        """Query and document vectors in one call (one forward, so DDP syncs all gradients)."""
        return self.encode(query_ids, query_mask, "query"), self.encode(doc_ids, doc_mask, "doc")

    def gradient_checkpointing_enable(self) -> None:
        # Non-reentrant checkpointing: the reentrant kind runs a shared encoder's backward twice
        # per step inside one DDP step (queries and documents), which DDP rejects.
        kwargs = {"gradient_checkpointing_kwargs": {"use_reentrant": False}}
        self.query_encoder.gradient_checkpointing_enable(**kwargs)
        if self.doc_encoder is not self.query_encoder:
            self.doc_encoder.gradient_checkpointing_enable(**kwargs)

    # -- saving and loading ------------------------------------------------------------------

    def _heads(self):
        """(side, head) pairs to save: one head when shared, so no tensor is stored twice."""
        return [("query", self.query_head)] if self.spec.shared else [("query", self.query_head), ("doc", self.doc_head)]

    def save(self, folder: str | Path, tokenizer=None, extra=None) -> None:
        """Write a checkpoint folder atomically (see the module docstring for its layout).

        ``extra(tmp)`` adds files (optimizer state, the provenance manifest) to the folder before it
        is renamed into place, so the folder appears complete or not at all.
        """
        with atomic_path(folder) as tmp:
            tmp.mkdir(parents=True)
            if self.spec.shared:
                self.query_encoder.save_pretrained(tmp, safe_serialization=True)
                if tokenizer is not None:
                    tokenizer.save_pretrained(tmp)
            else:
                for side, enc in (("query", self.query_encoder), ("doc", self.doc_encoder)):
                    enc.save_pretrained(tmp / side, safe_serialization=True)
                    if tokenizer is not None:
                        tokenizer.save_pretrained(tmp / side)
                if tokenizer is not None:
                    tokenizer.save_pretrained(tmp)
            heads = {}
            for side, head in self._heads():
                if head is not None:
                    heads.update({f"{side}.{k}": v.detach().cpu().contiguous() for k, v in head.state_dict().items()})
            if heads:
                save_file(heads, str(tmp / HEAD_FILE))
            (tmp / SPEC_FILE).write_text(json.dumps(asdict(self.spec), indent=1) + "\n")
            write_sentence_transformers(self, tmp)
            if extra is not None:
                extra(tmp)


ST = "sentence_transformers.models."  # the module type names every release since 2.x reads


def _write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1) + "\n")


def _st_tower(model: DualEncoder, folder: Path, prefix: str, transformer_path: str, head, max_len: int | None) -> list:
    """The modules of one tower after its Transformer: (path, type) pairs, written under ``folder``."""
    hidden = model.dim
    if max_len:
        _write_json(folder / transformer_path / "sentence_bert_config.json",
                    {"max_seq_length": max_len, "do_lower_case": False})
    modules = [(transformer_path, "Transformer")]
    _write_json(folder / f"{prefix}1_Pooling/config.json",
                {"word_embedding_dimension": hidden, "pooling_mode_cls_token": model.spec.pooling == "cls",
                 "pooling_mode_mean_tokens": model.spec.pooling == "mean", "pooling_mode_max_tokens": False,
                 "pooling_mode_mean_sqrt_len_tokens": False, "include_prompt": True})
    modules.append((f"{prefix}1_Pooling", "Pooling"))
    if head is not None:
        # Dense's activation must be named: without it sentence-transformers applies Tanh.
        _write_json(folder / f"{prefix}2_Dense/config.json",
                    {"in_features": hidden, "out_features": hidden, "bias": True,
                     "activation_function": "torch.nn.modules.linear.Identity"})
        save_file({"linear.weight": head.linear.weight.detach().cpu().contiguous(),
                   "linear.bias": head.linear.bias.detach().cpu().contiguous()},
                  str(folder / f"{prefix}2_Dense/model.safetensors"))
        _write_json(folder / f"{prefix}3_LayerNorm/config.json", {"dimension": hidden})
        save_file({"norm.weight": head.norm.weight.detach().cpu().contiguous(),
                   "norm.bias": head.norm.bias.detach().cpu().contiguous()},
                  str(folder / f"{prefix}3_LayerNorm/model.safetensors"))
        modules += [(f"{prefix}2_Dense", "Dense"), (f"{prefix}3_LayerNorm", "LayerNorm")]
    if model.spec.similarity == "cosine":
        (folder / f"{prefix}4_Normalize").mkdir(parents=True, exist_ok=True)
        modules.append((f"{prefix}4_Normalize", "Normalize"))
    return modules


def write_sentence_transformers(model: DualEncoder, folder: Path) -> None:
    """The files that make a checkpoint folder load with ``SentenceTransformer(folder)``.

    A shared encoder is one module chain at the root (its max_seq_length is the document length;
    longer queries are cut there, where this project cuts at max_query_len). Separate encoders are
    a Router over ``query/`` and ``doc/`` (``encode_query`` / ``encode_document``).
    """
    spec = model.spec
    _write_json(folder / "config_sentence_transformers.json",
                {"model_type": "SentenceTransformer", "prompts": {"query": "", "document": ""},
                 "default_prompt_name": None, "similarity_fn_name": "dot" if spec.similarity == "dot" else "cosine"})
    if spec.shared:
        chain = _st_tower(model, folder, "", "", model.query_head, spec.max_doc_len or spec.max_query_len)
        _write_json(folder / "modules.json", [{"idx": i, "name": str(i), "path": path, "type": ST + kind}
                                              for i, (path, kind) in enumerate(chain)])
        return
    towers = {route: _st_tower(model, folder, f"{route}_", sub, head, length)
              for route, sub, head, length in (("query", "query", model.query_head, spec.max_query_len),
                                               ("document", "doc", model.doc_head, spec.max_doc_len))}
    _write_json(folder / "router_config.json", {
        "types": {path: ST + kind for chain in towers.values() for path, kind in chain},
        "structure": {route: [path for path, _ in chain] for route, chain in towers.items()},
        "parameters": {"default_route": "document", "allow_empty_key": True, "route_mappings": {}}})
    _write_json(folder / "modules.json", [{"idx": 0, "name": "0", "path": "", "type": ST + "Router"}])


def _auto_model(path: str | Path):
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(path))
    # BERT/RoBERTa's pooler is not used (we pool last_hidden_state); freezing it keeps it in the
    # checkpoint unchanged and stops DDP waiting for gradients that never come.
    for name, param in model.named_parameters():
        if name.startswith("pooler."):
            param.requires_grad_(False)
    return model


def load_dual_encoder(name_or_path: str | Path, spec: EncoderSpec | None = None, *, seed: int = 0) -> DualEncoder:
    """Load a checkpoint folder written by ``DualEncoder.save``, or start from a pretrained model.

    For a pretrained model (no ``anceflow.json``) ``spec`` says how to use it; a new head is
    initialised from ``seed`` so the same config always gives the same starting point.
    """
    path = Path(resolve_model_path(str(name_or_path)))
    spec_file = path / SPEC_FILE
    if spec_file.exists():
        saved = EncoderSpec(**json.loads(spec_file.read_text()))
        if saved.shared:
            model = DualEncoder(_auto_model(path), None, saved)
        else:
            model = DualEncoder(_auto_model(path / "query"), _auto_model(path / "doc"), saved)
        if (path / HEAD_FILE).exists():
            weights = load_file(str(path / HEAD_FILE))
            for side, head in model._heads():
                head.load_state_dict({k.split(".", 1)[1]: v for k, v in weights.items() if k.startswith(side + ".")})
        return model
    spec = spec or EncoderSpec()
    torch.manual_seed(seed)
    query = _auto_model(path)
    doc = None if spec.shared else _auto_model(path)
    return DualEncoder(query, doc, spec)
