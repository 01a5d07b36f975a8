"""How much of Adam's step its epsilon left, per parameter tensor, in a run's checkpoint.

Reads the optimizer state a checkpoint stores (no env, no training) and reports, per tensor of the Q-network and
over all of them, ``rlpipe.learner.adam_step_scale``: the size of Adam's step against its size without epsilon (1:
undamped), the share of the undamped step on elements where ``sqrt(v_hat) < eps``, and the elements whose running
scale ``v`` is 0 (no gradient yet, or none for so long that it has decayed to 0 in float32). Training logs the overall figure as ``train/adam_step_fraction``.

    python benchmarks/adam_step_scale.py LABEL=RUN/checkpoints/last.pt [...] --name NAME
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

import torch

from bench_common import save

from rlpipe.learner import adam_step_scale


def tensor_names(checkpoint: dict, count: int) -> list[str]:
    """The Q-network's parameter names in the optimizer's order (Adam is built over the online network's
    parameters only); numbers where the stored network's tensors do not match the optimizer's in count."""
    names = list(checkpoint.get("q_network", {}))
    return names if len(names) == count else [str(i) for i in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", nargs="+", metavar="LABEL=CHECKPOINT")
    parser.add_argument("--name", required=True, help="results file: benchmarks/results/NAME.json")
    args = parser.parse_args()
    results = {}
    for item in args.checkpoints:
        label, _, path = item.partition("=")
        checkpoint = torch.load(Path(path), map_location="cpu", weights_only=False)
        state = checkpoint["optimizer"]
        indices = [index for group in state["param_groups"] for index in group["params"]]
        eps = state["param_groups"][0]["eps"]
        tensors = {name: asdict(adam_step_scale(state, indices=[index])) for name, index in zip(tensor_names(checkpoint, len(indices)), indices)}
        overall = asdict(adam_step_scale(state))
        step = checkpoint["counters"]["step"]
        results[label] = {"checkpoint": path, "step": step, "adam_eps": eps, "lr": float(state["param_groups"][0]["lr"]),
                          "all": overall, "tensors": tensors}
        print(f"\n{label}: {path}, agent step {step:,}, Adam epsilon {eps:g}")
        print("| tensor | elements | step fraction | undamped step below epsilon | no gradient |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for name, scale in [*tensors.items(), ("all", overall)]:
            print(f"| {name} | {scale['elements'] + scale['no_gradient']:,} | {scale['fraction']:.3f} | {scale['below_eps']:.1%} | {scale['no_gradient']:,} |")
    save(args.name, {"checkpoints": results})


if __name__ == "__main__":
    main()
