"""Training throughput of the router on this machine: samples/s for forward + backward + AdamW step.

    python scripts/bench_train.py [--seq-len 128] [--batch-size 16] [--steps 5] [--threads N] [--models tiny,minilm,distilbert]

Encoders: the tiny random DistilBERT of configs/tiny-test.yaml, the packaged MiniLM (all-MiniLM-L6-v2, 22.7M
parameters) and a DistilBERT-size encoder (DistilBertConfig() defaults, 66M parameters, random weights: the
throughput is the same as distilbert-base-uncased's). Inputs are real-looking random token ids at a fixed length,
24 success heads (the SWE-bench spec) + cost heads. Prints a table; nothing is asserted.
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from aco_bert.model.modeling import RouterModel, RouterModelConfig

ENCODERS = {
    "tiny": dict(encoder="tiny", encoder_config={"model_type": "distilbert", "vocab_size": 30522, "dim": 32,
                                                  "n_layers": 2, "n_heads": 2, "hidden_dim": 64}),
    "minilm": dict(encoder="minilm"),
    "distilbert": dict(encoder="distilbert-size", encoder_config={"model_type": "distilbert"}),
}


def bench(name: str, seq_len: int, batch_size: int, steps: int, warmup: int = 2) -> dict:
    torch.manual_seed(0)
    model = RouterModel(RouterModelConfig(models=[f"m{i}" for i in range(24)], cost_heads=True, **ENCODERS[name]))
    model.train()
    n_params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    ids = torch.randint(1000, 29000, (batch_size, seq_len))
    mask = torch.ones_like(ids)
    y = torch.randint(0, 2, (batch_size, 24)).float()
    for i in range(warmup + steps):
        if i == warmup:
            t0 = time.perf_counter()
        out = model(ids, mask)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(out.logits, y) + out.cost.pow(2).mean()
        loss.backward()
        opt.step()
        opt.zero_grad()
    train_s = time.perf_counter() - t0
    model.eval()
    with torch.no_grad():
        model(ids, mask)
        t0 = time.perf_counter()
        for _ in range(steps):
            model(ids, mask)
        infer_s = time.perf_counter() - t0
    return {"model": name, "params_M": n_params / 1e6, "train_sps": steps * batch_size / train_s,
            "step_s": train_s / steps, "embed_sps": steps * batch_size / infer_s}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    ap.add_argument("--models", default="tiny,minilm,distilbert")
    a = ap.parse_args()
    import transformers

    transformers.utils.logging.disable_progress_bar()
    if a.threads:
        torch.set_num_threads(a.threads)
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, threads "
          f"{torch.get_num_threads()}, seq_len {a.seq_len}, batch {a.batch_size}, {a.steps} timed steps")
    print("| encoder | params (M) | train samples/s (fwd+bwd+step) | s/step | embed samples/s (no grad) |")
    print("|---|---:|---:|---:|---:|")
    for name in a.models.split(","):
        r = bench(name.strip(), a.seq_len, a.batch_size, a.steps)
        print(f"| {r['model']} | {r['params_M']:.1f} | {r['train_sps']:.1f} | {r['step_s']:.3f} | {r['embed_sps']:.1f} |",
              flush=True)


if __name__ == "__main__":
    main()
