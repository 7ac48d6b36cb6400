"""Measured, not adopted: ONNX Runtime's dynamic int8 quantisation of the text encoder.

Quantises the cached fp32 ONNX export of all-MiniLM-L6-v2 (per-channel int8 weights), then
encodes the same real catalogue titles as ``bench/features.py`` with the fp32 and the int8
session in this process, and prints titles/s of each and the cosine agreement of their vectors
(the fast path must keep min cosine >= 0.999 against PyTorch; fp32 ONNX does).

    python bench/text_int8.py [--titles 2646] [--out bench/results/text_int8.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import QuantType, quantize_dynamic

from features import fashion_rows, gift_titles
from shopsight.features.base import num_threads
from shopsight.features.text import TextEncoder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--titles", type=int, default=2646, help="how many titles to encode")
    ap.add_argument("--out", type=Path, default=None, help="also write the figures as JSON")
    args = ap.parse_args()
    enc = TextEncoder(backend="onnx").load()
    fp32 = enc.onnx_path()
    titles = ([t for _, t in fashion_rows()][:2000] + gift_titles()[:646])[: args.titles]
    with tempfile.TemporaryDirectory() as tmp:
        int8 = Path(tmp) / "int8.onnx"
        quantize_dynamic(
            str(fp32),
            str(int8),
            weight_type=QuantType.QInt8,
            per_channel=True,
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
        results = {}
        for label, path in (("fp32", fp32), ("int8", int8)):
            options = ort.SessionOptions()
            options.intra_op_num_threads = num_threads(None)
            enc._session = ort.InferenceSession(str(path), options, ["CPUExecutionProvider"])
            enc._run_batches(titles[: min(200, len(titles))], enc._onnx_forward)  # warm-up
            t = time.perf_counter()
            vectors = enc._run_batches(titles, enc._onnx_forward).vectors
            results[label] = (vectors, len(titles) / (time.perf_counter() - t))
    (v32, r32), (v8, r8) = results["fp32"], results["int8"]
    cos = (v32 * v8).sum(1) / np.linalg.norm(v32, axis=1) / np.linalg.norm(v8, axis=1)
    print(
        f"{len(titles)} titles: fp32 {r32:.1f}/s  int8 {r8:.1f}/s  speed-up {r8 / r32:.2f}  "
        f"cosine min {cos.min():.5f} mean {cos.mean():.5f}"
    )
    if args.out is not None:
        result = {
            "benchmark": "text_int8",
            "titles": len(titles),
            "fp32_per_second": round(r32, 1),
            "int8_per_second": round(r8, 1),
            "speedup_int8_vs_fp32": round(r8 / r32, 3),
            "cosine_min": round(float(cos.min()), 5),
            "cosine_mean": round(float(cos.mean()), 5),
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
