"""Releasing a trained agent: ``python -m rlpipe.export checkpoint=PATH out=PATH`` writes the Q-network's weights,
the run's configuration and the step and evaluations it was trained to (``rlpipe.checkpoint.save_agent``), and
prints one JSON line with what it wrote::

    {"out": "benchmarks/agents/breakout.pt", "checkpoint": ".../best.pt", "step": 1000000, "bytes": 6742315, ...}

The optimizer's moments, the target network, the RNG states and the replay stay behind. The file evaluates and
plays through :meth:`rlpipe.agent.Agent.load` (``rlpipe.evaluate``, ``rlpipe.record``); it cannot resume training.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from rlpipe.agent import AGENT_PIECES, Agent
from rlpipe.checkpoint import CheckpointError, load_checkpoint, save_agent
from rlpipe.runtime import check_command_line, quiet_libraries


@hydra.main(version_base="1.3", config_path="../conf", config_name="export")
def main(cfg: DictConfig) -> None:
    quiet_libraries()
    for key in ("checkpoint", "out"):
        if OmegaConf.is_missing(cfg, key):
            raise SystemExit("rlpipe.export: name the checkpoint and the file to write: "
                             "python -m rlpipe.export checkpoint=PATH out=PATH")
    if cfg.agent not in AGENT_PIECES:
        raise SystemExit(f"rlpipe.export: invalid configuration: agent={cfg.agent} is invalid: expected one of {', '.join(AGENT_PIECES)}")
    out = Path(cfg.out)
    try:
        payload = load_checkpoint(cfg.checkpoint)
        save_agent(out, payload, piece=AGENT_PIECES[cfg.agent])
        agent = Agent.load(out)  # the file loads back into a playing agent, or the export fails here
    except CheckpointError as err:
        raise SystemExit(f"rlpipe.export: {err}") from None
    evaluations = payload["counters"].get("evaluations", [])
    print(json.dumps({"out": str(out), "checkpoint": str(cfg.checkpoint), "agent": cfg.agent, "env": agent.env_cfg.id,
                      "step": agent.checkpoint_step, "bytes": out.stat().st_size,
                      "last_evaluation": evaluations[-1] if evaluations else None}))


if __name__ == "__main__":
    check_command_line("rlpipe.export", "export", sys.argv[1:], run_dir_key=None)
    main()
