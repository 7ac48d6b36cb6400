"""What ``torchrun`` runs: train one registered model from a store in every process it starts.

    python -m torch.distributed.run --nproc_per_node=2 -m shopsight.app.torchrun \\
        --store shop.duckdb --model bpr --out model

Rank 0 saves the model with its run manifest (:mod:`shopsight.distributed` holds the
process-group plumbing this uses).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from torch import nn

from shopsight.config import parse_overrides
from shopsight.data.dataset import Dataset
from shopsight.data.store import Store
from shopsight.distributed import barrier, param_checksum, process_group
from shopsight.errors import ShopsightError
from shopsight.models.registry import create_model
from shopsight.training.trainer import run_manifest, training_run


def main(argv: Sequence[str] | None = None) -> int:
    """Train one registered model from a store, in every process torchrun starts."""
    parser = argparse.ArgumentParser(
        prog="python -m shopsight.app.torchrun",
        description="Train a model with DDP (start with torchrun); rank 0 saves it.",
    )
    parser.add_argument("--store", required=True, help="DuckDB store to build the Dataset from")
    parser.add_argument("--model", required=True, help="registered model name, e.g. bpr")
    parser.add_argument("--out", required=True, help="directory rank 0 saves the model to")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="K=V")
    parser.add_argument("--checkpoint-dir", default=None, help="resumable checkpoints (rank 0)")
    parser.add_argument("--checksums", default=None, help="write per-step checksums per rank")
    parser.add_argument("--backend", default=None, choices=["gloo", "nccl"])
    args = parser.parse_args(argv)

    try:
        params = parse_overrides(args.overrides)
        Store(args.store, read_only=True).close()  # fail in one line before starting
    except ShopsightError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with process_group(args.backend) as ctx:
        with Store(args.store, read_only=True) as store:
            dataset = Dataset.from_store(store)
        model = create_model(args.model, **params)
        sums: list[str] = []

        def on_step(step: int, module: nn.Module) -> None:
            sums.append(param_checksum(module))

        with training_run(
            checkpoint_dir=args.checkpoint_dir,
            on_step=on_step if args.checksums else None,
        ):
            model.fit(dataset)
        if args.checksums:
            out = Path(args.checksums)
            out.mkdir(parents=True, exist_ok=True)
            (out / f"rank{ctx.rank}.json").write_text(
                json.dumps({"rank": ctx.rank, "world_size": ctx.world_size, "steps": sums})
            )
        if ctx.is_main:
            manifest = run_manifest(
                model,
                dataset,
                result=getattr(model, "train_result_", None),
                config={"store": str(Path(args.store)), "world_size": ctx.world_size},
            )
            model.save(args.out, extra={"world_size": ctx.world_size, "manifest": manifest})
        barrier(ctx)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
