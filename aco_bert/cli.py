"""The `aco-bert` console script: one entry point that dispatches to each verb's `python -m aco_bert.<verb>`.

Each verb's module owns its argument parsing (`main(argv)`); this file only maps names to modules, so the two
ways of calling a verb can never drift apart.
"""

from __future__ import annotations

import importlib
import sys

VERBS: dict[str, tuple[str, str]] = {
    "data": ("aco_bert.data.describe", "inspect a dataset (`data describe --dataset NAME`) or import logs (`data import-logs`)"),
    "evaluate": ("aco_bert.evaluate", "replay reference routing policies offline against real outcomes"),
    "train": ("aco_bert.train", "train the multi-head router (also `accelerate launch -m aco_bert.train`)"),
    "stack": ("aco_bert.stack", "fit the decision layer (stacker or heads, calibration, cost, tau) on out-of-fold outputs"),
    "export": ("aco_bert.export.build", "export a trained router to an ONNX bundle"),
    "report": ("aco_bert.report", "nested cross-validated router report next to the baselines (--json)"),
    "serve": ("aco_bert.serve", "serve a bundle over HTTP (torch-free)"),
    "score": ("aco_bert.score.scorer", "batch-score a dataset with a bundle"),
    "demo": ("aco_bert.demo", "the main job end to end: train, stack, export, score, report"),
}


# `aco-bert data <sub>`: the data verbs' modules.
DATA_VERBS: dict[str, str] = {"describe": "aco_bert.data.describe", "import-logs": "aco_bert.data.import_logs"}


def _usage() -> str:
    lines = ["usage: aco-bert <verb> [args...]", "", "verbs:"]
    lines += [f"  {v:<9} {h}" for v, (_m, h) in VERBS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    verb, rest = argv[0], argv[1:]
    if verb not in VERBS:
        print(f"aco-bert: unknown verb {verb!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module_name = VERBS[verb][0]
    if verb == "data":
        if not rest or rest[0] not in DATA_VERBS:
            print("usage: aco-bert data describe --dataset NAME [--data-dir DIR]\n"
                  "       aco-bert data import-logs --format FORMAT --score FIELD IN... --out table.jsonl",
                  file=sys.stderr)
            return 2
        module_name, rest = DATA_VERBS[rest[0]], rest[1:]
    module = importlib.import_module(module_name)
    rc = module.main(rest)
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
