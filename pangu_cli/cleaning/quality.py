"""Quality: rule-based features for every document, and a model-based score.

The report samples higher-quality data more often, so the score is recorded, never
thresholded here. The model score is bits per byte under a reference pangu model (a
`pangu pretrain` run trained on curated text): text the reference model finds
predictable reads like its curated data. Raw bits per byte differ by domain (code and
Chinese compress differently), so each domain is calibrated on its own: a logistic of
(median - bpb) / spread, with the median and spread measured over the domain's kept
documents in the global merge, so every process applies the same calibration.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pangu_cli.errors import UserError

_LETTER = re.compile(r"[^\W\d_]")
_NON_SPACE = re.compile(r"\S")


@dataclass
class QualityConfig:
    model: str | None = None  # a `pangu pretrain` run (or one checkpoint) to score with
    tokenizer: str | None = None  # its tokenizer; default: the one its token shards carry
    max_tokens: int = 512  # tokens scored per document (its beginning)
    batch_size: int = 8
    model_weight: float = 0.7  # quality = w * model score + (1 - w) * rule score
    threads: int = 1  # torch threads per worker process


def rule_features(text: str, words: list[str], stop_count: int, cjk: bool) -> dict[str, float]:
    """Cleanliness, fluency, richness and length signals, each a plain number."""
    non_space = len(_NON_SPACE.findall(text[:20000])) or 1
    letters = len(_LETTER.findall(text[:20000]))
    head = words[:2000]
    lines = [s for s in text.splitlines() if s.strip()]
    return {
        "letter_ratio": round(letters / non_space, 4),
        "stop_ratio": round(stop_count / max(len(words), 1), 4),
        "type_token_ratio": round(len(set(head)) / max(len(head), 1), 4),
        "chars": len(text),
        "mean_line_chars": round(sum(map(len, lines)) / max(len(lines), 1), 1),
    }


def rule_score(f: dict[str, float], cjk: bool) -> float:
    """Mean of four [0, 1] sub-scores: cleanliness, fluency, richness, length."""
    clean = min(f["letter_ratio"] / 0.8, 1.0)
    fluency = min(f["stop_ratio"] / (0.08 if cjk else 0.25), 1.0)
    richness = min(f["type_token_ratio"] / 0.5, 1.0)
    length = min(math.log10(max(f["chars"], 1)) / 4.0, 1.0)
    return round((clean + fluency + richness + length) / 4, 4)


def calibrate(bpb: np.ndarray) -> tuple[float, float]:
    """(median, spread) of a domain's bits per byte; spread from the interquartile range."""
    if len(bpb) == 0:
        return 0.0, 1.0
    q1, med, q3 = np.percentile(bpb, [25, 50, 75])
    spread = (q3 - q1) / 1.349 or max(abs(med) * 0.1, 1e-3)
    return float(med), float(spread)


def model_score(bpb: float, median: float, spread: float) -> float:
    z = (median - bpb) / spread
    return round(1.0 / (1.0 + math.exp(-max(min(z, 50.0), -50.0))), 4)


class ModelScorer:
    """Bits per byte of each document's first `max_tokens` tokens under a pangu model."""

    def __init__(self, cfg: QualityConfig) -> None:
        import torch

        from pangu_cli import tokenizer as tk
        from pangu_cli.checkpoint import load_checkpoint, read_latest, read_meta
        from pangu_cli.model import ModelConfig, PanguModel

        torch.set_num_threads(max(cfg.threads, 1))
        path = Path(cfg.model)
        if not path.exists():
            raise UserError(f"quality.model: {path}: no such run or checkpoint")
        # A run directory (its latest checkpoint) or one checkpoint, RUN/checkpoints/step_N.
        is_ckpt = (path / "meta.json").exists()
        ckpt = path if is_ckpt else read_latest(path)
        if ckpt is None:
            raise UserError(f"quality.model: {path}: holds no checkpoint")
        meta = read_meta(ckpt)
        run_dir = path.parent.parent if is_ckpt else path
        tok_path = Path(cfg.tokenizer) if cfg.tokenizer else _run_tokenizer(run_dir)
        self.tok = tk.load_tokenizer(tok_path, plain_text=True)
        if tk.tokenizer_fingerprint(tok_path) != meta.get("tokenizer_fingerprint"):
            raise UserError(
                f"quality.tokenizer: {tok_path} is not the tokenizer {ckpt} was trained with"
            )
        self.model = PanguModel(ModelConfig(**meta["model"]))
        load_checkpoint(ckpt, self.model, None)
        self.model.eval()
        self.token_bytes = tk.token_byte_lengths(self.tok)
        self.eod = tk.eod_id(self.tok)
        self.cfg = cfg
        self.fingerprint = meta.get("tokenizer_fingerprint")
        self.checkpoint = str(ckpt)

    def bits_per_byte(self, texts: list[str]) -> list[float]:
        import torch
        import torch.nn.functional as F

        out: list[float] = []
        encodings = self.tok.encode_batch([t[: self.cfg.max_tokens * 8] for t in texts])
        for i in range(0, len(texts), self.cfg.batch_size):
            chunk = [
                [self.eod, *e.ids[: self.cfg.max_tokens]]
                for e in encodings[i : i + self.cfg.batch_size]
            ]
            length = max(len(ids) for ids in chunk)
            tokens = torch.zeros(len(chunk), length, dtype=torch.long)
            mask = torch.zeros(len(chunk), length - 1)
            for r, ids in enumerate(chunk):
                tokens[r, : len(ids)] = torch.tensor(ids)
                mask[r, : len(ids) - 1] = 1
            with torch.no_grad():
                logits = self.model(tokens[:, :-1]).float()
                nll = F.cross_entropy(logits.transpose(1, 2), tokens[:, 1:], reduction="none")
            nbytes = torch.from_numpy(self.token_bytes)[tokens[:, 1:]] * mask
            for r in range(len(chunk)):
                b = float(nbytes[r].sum())
                bits = float((nll[r] * mask[r]).sum()) / math.log(2)
                # Rounded: BLAS summation order must not make two runs differ.
                out.append(round(bits / b, 4) if b else float("nan"))
        return out


def _run_tokenizer(run: Path) -> Path:
    """The tokenizer.json of the token shards a pretrain run was trained on."""
    manifest = run / "manifest.json"
    try:
        inputs = json.loads(manifest.read_text())["inputs"]
        path = Path(inputs[0]["path"]) / "tokenizer.json"
    except (OSError, ValueError, KeyError, IndexError):
        raise UserError(
            f"quality.model: {run}: cannot find its tokenizer from {manifest} "
            "(a finished `pangu pretrain` run has one); set quality.tokenizer"
        ) from None
    if not path.is_file():  # moved, or a path relative to where pretrain ran
        raise UserError(
            f"quality.model: {path}: the run's tokenizer is gone; set quality.tokenizer"
        )
    return path


def features_json(features: dict[str, Any]) -> str:
    return json.dumps(features, sort_keys=True, separators=(",", ":"))


def add_feature(features: str, name: str, value: float) -> str:
    return features_json({**json.loads(features), name: value})
