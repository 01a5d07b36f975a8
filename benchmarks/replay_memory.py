"""Frame-deduplicated replay memory: resident memory of a full buffer, and sampling throughput.

1. Fills a ``FrameReplay`` of ``--capacity`` frames (1,000,000: Breakout's preset) with synthetic 84x84 frames in
   8-frame stacks, through ``extend`` as the training loop does (episodes of ~1,000 steps), and reports the
   process's resident memory (``VmRSS``) before and after, and its peak (``VmHWM``).
2. Samples batches of 128 transitions (both 8-frame stacks rebuilt, prioritized) and compares with indexing the
   same sizes out of a plain preallocated uint8 tensor of stacks (uniform indices, obs and next obs).

    python benchmarks/replay_memory.py [--capacity 1000000] [--storage memory|memmap] [--memmap-dir DIR]
"""

from __future__ import annotations

import argparse
import time

import torch
from tensordict import TensorDict

from bench_common import interleaved_medians, paired_ratio, rate, save
from rlpipe.frame_replay import FrameReplay
from rlpipe.keys import INDEX_KEY

STACK, SIZE, BATCH, CHUNK = 8, 84, 128, 1_000


def rss_gib(field: str = "VmRSS") -> float:
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) / 1024**2
    raise RuntimeError(field)


def synthetic_batch(start: int, n: int, episode_len: int) -> TensorDict:
    """n consecutive transitions of one stream; frame t is filled with t % 251; an episode ends every episode_len."""
    t = torch.arange(start, start + n)
    frames = (torch.arange(start - STACK + 1, start + n + 1) % 251).to(torch.uint8)[:, None, None].expand(-1, SIZE, SIZE)
    stacks = frames.unfold(0, STACK, 1).permute(0, 3, 1, 2)  # [n + 1, N, H, W] views
    step = (t % episode_len).unsqueeze(-1)
    done = (step == episode_len - 1)
    return TensorDict(
        {
            "observation": stacks[:n], "action": t % 4, "step_count": step,
            ("next", "observation"): stacks[1:], ("next", "reward"): torch.zeros(n, 1), ("next", "done"): done,
            ("next", "terminated"): done, ("next", "step_count"): step + 1,
        },
        batch_size=[n],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--capacity", type=int, default=1_000_000)
    parser.add_argument("--storage", choices=["memory", "memmap"], default="memory")
    parser.add_argument("--memmap-dir", default="/tmp/rlpipe-replay-bench")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()

    rss_start = rss_gib()
    replay = FrameReplay(capacity=args.capacity, num_streams=1, frame_shape=(SIZE, SIZE), frame_stack=STACK, alpha=0.6,
                         beta=0.4, priority_eps=1e-6, memmap_dir=args.memmap_dir if args.storage == "memmap" else None)
    started = time.perf_counter()
    written = 0
    while written < args.capacity + CHUNK:  # one chunk past full: the ring has wrapped
        replay.extend(synthetic_batch(written, CHUNK, episode_len=997))
        written += CHUNK
    fill_seconds = time.perf_counter() - started
    rss_full, rss_peak = rss_gib(), rss_gib("VmHWM")  # before the plain tensors below are allocated
    print(f"filled {len(replay):,} frames ({replay.sampleable.sum():,} sampleable transitions) in {fill_seconds:.0f} s; "
          f"RSS {rss_start:.2f} GiB before, {rss_full:.2f} GiB full, peak {rss_peak:.2f} GiB")

    plain_rows = 20_000  # a plain tensor of stacks the size of 1M transitions would need 113 GB: sample from fewer
    plain = torch.randint(0, 255, (plain_rows, STACK, SIZE, SIZE), dtype=torch.uint8)
    plain_next = torch.randint(0, 255, (plain_rows, STACK, SIZE, SIZE), dtype=torch.uint8)

    def plain_sample() -> None:
        idx = torch.randint(0, plain_rows, (BATCH,))
        plain[idx], plain_next[idx]

    def frame_sample() -> None:
        replay.sample(BATCH)

    def frame_sample_and_update() -> None:
        replay.update_priority(replay.sample(BATCH)[INDEX_KEY], torch.rand(BATCH))

    results = interleaved_medians(
        {
            "plain tensor": lambda: rate(plain_sample, calls=200),
            "FrameReplay": lambda: rate(frame_sample, calls=200),
            "FrameReplay + priority update": lambda: rate(frame_sample_and_update, calls=200),
        },
        rounds=args.rounds,
    )
    print(f"\n| sampler | batches of {BATCH}/s | ratio to plain tensor |\n| --- | ---: | ---: |")
    for name, stats in results.items():
        stats["ratio"] = paired_ratio(stats["rates"], results["plain tensor"]["rates"])
        print(f"| {name} | {stats['median']:.0f} | {stats['ratio']:.2f} |")
    save(f"replay_memory_{args.storage}", {
        "capacity": args.capacity, "storage": args.storage, "frame_stack": STACK, "fill_seconds": fill_seconds,
        "rss_gib_before": rss_start, "rss_gib_full": rss_full, "rss_gib_peak_while_filling": rss_peak,
        "sampleable": int(replay.sampleable.sum()), "sampling": results,
    })


if __name__ == "__main__":
    main()
