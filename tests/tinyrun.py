"""Overrides that make a ``dropbench run`` tiny: each run takes a second or two, for plumbing tests."""

from pathlib import Path

TINY = ["dataset.verify=false", "dataset.val_size=20", "epochs=2", "batch_size=16", "eval_batch_size=64"]
SMALL_MODEL = {
    "mlp": ["model=mlp", "model.hidden=[32]"],
    "cnn": ["model=cnn", "model.channels=[4,8]", "model.fc=[16]"],
    "lstm": ["model=lstm", "model.hidden=8"],
}


def run_dirs(results: Path) -> list[Path]:
    """Every run folder below ``results`` (Hydra writes ``.hydra/`` into each)."""
    return sorted(p.parent for p in results.rglob(".hydra"))


def comparable(record: dict) -> dict:
    """A record without what legitimately differs between two identical runs (times, paths)."""
    history = [{k: v for k, v in row.items() if k != "epoch_time_s"} for row in record["history"]]
    return {"history": history, "final": record["final"], "best": record.get("best")}
