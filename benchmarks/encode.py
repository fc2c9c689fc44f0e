"""Sentence-embedding throughput of all-MiniLM-L6-v2: attnlab vs sentence-transformers vs
transformers, all measured in one run, on the 872 SST-2 dev sentences (batch 32).

Rows, in float32 and bfloat16:

* ``attnlab``: ``load_pretrained("all-MiniLM-L6-v2").encode(texts, batch_size=32)``;
* ``sentence-transformers``: ``SentenceTransformer(<model dir>).encode(texts, batch_size=32)``,
  the reference of the ratios;
* ``transformers sdpa``: ``transformers.BertModel(attn_implementation="sdpa")`` with the same
  weights, fed the same length-sorted batches as attnlab, with the same mean pooling and
  normalisation (so its gap to attnlab is the model alone).

The texts are cut into ``--chunks`` consecutive chunks; each round runs every method on chunk 1,
then every method on chunk 2, and so on, so that drift in machine load hits all rows alike. A
method's time for a round is the sum over the chunks; the median round is reported. Embeddings are
checked: max |difference| to sentence-transformers' float32 ones, and the minimum cosine
similarity to attnlab's float32 ones.

Every method returns its embeddings on the CPU, so a GPU's work is finished inside the timing.

Run: ``python benchmarks/encode.py [--rounds N] [--limit N] [--device cuda]`` (needs
attnlab[pretrained] and the dev extras; reads $ATTNLAB_DATA/sst2/dev.tsv; never downloads).
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the references must load from disk only
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from _timing import device_name  # noqa: E402

from attnlab import load_pretrained  # noqa: E402
from attnlab.io.pretrained import resolve_model_dir  # noqa: E402
from attnlab.models import mean_pool  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
BATCH = 32


def read_dev(limit: int | None) -> list[str]:
    path = Path(os.environ.get("ATTNLAB_DATA", DEFAULT_DATA)) / "sst2" / "dev.tsv"
    lines = path.read_text(encoding="utf-8").splitlines()[1:]  # header: label<TAB>content
    texts = [line.split("\t", 1)[1] for line in lines]
    return texts[:limit] if limit else texts


def transformers_encoder(model_dir: Path, ours, dtype: torch.dtype, device: str) -> Callable:
    """transformers' BertModel (sdpa) on attnlab's batches, pooled and normalised the same."""
    from transformers import BertModel

    hf = BertModel.from_pretrained(str(model_dir), attn_implementation="sdpa")
    hf = hf.eval().to(device=device, dtype=dtype)

    def encode(texts: list[str]) -> torch.Tensor:
        ids = ours.tokenizer.encode(texts, allow_empty=True)
        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
        out = torch.empty(len(ids), hf.config.hidden_size)  # (T, D)
        with torch.inference_mode():
            for start in range(0, len(ids), BATCH):
                rows = order[start:start + BATCH]
                batch = ours.tokenizer.pad([ids[r] for r in rows]).to(device)
                hidden = hf(input_ids=batch.input_ids,
                            attention_mask=batch.attention_mask).last_hidden_state  # (B, L, D)
                pooled = mean_pool(hidden.float(), batch.attention_mask)  # (B, D)
                out[rows] = F.normalize(pooled, dim=-1).cpu()
        return out

    return encode


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per method")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N texts")
    parser.add_argument("--chunks", type=int, default=4, help="interleave methods per chunk")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    args = parser.parse_args(argv)
    from sentence_transformers import SentenceTransformer

    device = args.device
    texts = read_dev(args.limit)
    model_dir = resolve_model_dir("all-MiniLM-L6-v2")
    ours = load_pretrained("all-MiniLM-L6-v2", device=device)
    st32 = SentenceTransformer(str(model_dir), device=device)
    st16 = copy.deepcopy(st32).to(torch.bfloat16)

    def st_encode(st):
        return lambda t: st.encode(t, batch_size=BATCH, convert_to_tensor=True).float().cpu()

    def ours_encode(dtype):
        return lambda t: ours.encode(t, batch_size=BATCH, dtype=dtype).cpu()

    methods = {
        ("attnlab", "float32"): ours_encode(None),
        ("sentence-transformers", "float32"): st_encode(st32),
        ("transformers sdpa", "float32"): transformers_encoder(model_dir, ours, torch.float32,
                                                               device),
        ("attnlab", "bfloat16"): ours_encode(torch.bfloat16),
        ("sentence-transformers", "bfloat16"): st_encode(st16),
        ("transformers sdpa", "bfloat16"): transformers_encoder(model_dir, ours, torch.bfloat16,
                                                                device),
    }
    results = {key: fn(texts) for key, fn in methods.items()}  # warm-up, and the outputs
    size = -(-len(texts) // args.chunks)
    chunks = [texts[i:i + size] for i in range(0, len(texts), size)]
    times: dict[tuple[str, str], list[float]] = {key: [] for key in methods}
    for _ in range(args.rounds):
        for ts in times.values():
            ts.append(0.0)
        for chunk in chunks:
            for key, fn in methods.items():
                start = time.perf_counter()
                fn(chunk)
                times[key][-1] += time.perf_counter() - start

    ref32 = results[("sentence-transformers", "float32")]
    ours32 = results[("attnlab", "float32")]
    print(f"{len(texts)} SST-2 dev sentences, batch {BATCH}, torch {torch.__version__}, "
          f"{device_name(device)}, median of {args.rounds} rounds interleaved over "
          f"{len(chunks)} chunks")
    header = (f"{'method':<22} {'dtype':<9} {'sent/s':>8} {'vs ST same dtype':>17} "
              f"{'vs ST fp32':>11} {'max|Δ| vs ST fp32':>18} {'min cos vs ours fp32':>21}")
    print(header)
    print("-" * len(header))
    for (name, dtype), ts in times.items():
        median = statistics.median(ts)
        st_median = statistics.median(times[("sentence-transformers", dtype)])
        st32_median = statistics.median(times[("sentence-transformers", "float32")])
        emb = results[(name, dtype)]
        diff = (emb - ref32).abs().max().item()
        cos = F.cosine_similarity(emb, ours32, dim=-1).min().item()
        print(f"{name:<22} {dtype:<9} {len(texts) / median:>8.1f} {st_median / median:>16.2f}x "
              f"{st32_median / median:>10.2f}x {diff:>18.2e} {cos:>21.6f}")


if __name__ == "__main__":
    main()
