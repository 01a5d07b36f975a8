"""Recording throughput: agent steps per second of ``rlpipe.record dataset`` for one env, with the PNG writes and
without them (a dry run), and what a 100-episode dataset of the agent takes at that rate; video frames per second
of ``rlpipe.record video`` (game, policy, overlay and H.264 encoding), and the seconds the TensorBoard logger adds
per training-time video (the MP4 decoded and re-encoded as an animated GIF, ``rlpipe.loggers.log_video``).

    python benchmarks/recording.py --checkpoint outputs/breakout_cpu/temperature_seed0/checkpoints/best.pt --episodes 5
    python benchmarks/recording.py --episodes 5            # a random agent
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench_common import REPO, save
from hydra import compose, initialize_config_dir

from rlpipe.envs.atari import protocol
from rlpipe.loggers import _gif_summary
from rlpipe.record import record_dataset, record_video
from rlpipe.record.cli import make_recording_source


def measure(cfg, *, write: bool) -> dict:
    source = make_recording_source(cfg)
    env, policy = source.env, source.policy
    with tempfile.TemporaryDirectory(prefix="rlpipe-recording-bench-") as directory:
        started = time.perf_counter()
        recording = record_dataset(env, policy, episodes=cfg.episodes, output_dir=Path(directory) if write else None,
                                   metadata={**source.metadata, "protocol": protocol(source.env_cfg)}, validation_fraction=0.1,
                                   seed=cfg.seed, max_steps_per_episode=cfg.max_steps_per_episode)
        seconds = time.perf_counter() - started
        png_bytes = sum(p.stat().st_size for p in Path(directory).rglob("*.png"))
    env.close()
    steps = sum(e["length"] for e in recording["episodes"])
    return {"write": write, "episodes": cfg.episodes, "agent_steps": steps, "seconds": seconds, "steps_per_s": steps / seconds,
            "steps_per_episode": steps / cfg.episodes, "png_bytes_per_step": png_bytes / steps if write else None,
            "score_mean": sum(e["score"] for e in recording["episodes"]) / cfg.episodes,
            "seconds_for_100_episodes": 100 * seconds / cfg.episodes}


def measure_videos(cfg) -> dict:
    source = make_recording_source(cfg)
    env, policy = source.env, source.policy
    with tempfile.TemporaryDirectory(prefix="rlpipe-video-bench-") as directory:
        started, frames, gif_seconds, mp4_bytes = time.perf_counter(), 0, 0.0, 0
        for n in range(cfg.episodes):
            path = Path(directory) / f"{n}.mp4"
            frames += record_video(env, policy, path=path, max_steps=cfg.max_steps_per_episode)["frames"]
            mp4_bytes += path.stat().st_size
        seconds = time.perf_counter() - started
        for n in range(cfg.episodes):
            gif_started = time.perf_counter()
            gif_bytes = len(_gif_summary("eval/video", Path(directory) / f"{n}.mp4").SerializeToString())
            gif_seconds += time.perf_counter() - gif_started
    env.close()
    return {"videos": cfg.episodes, "frames": frames, "seconds": seconds, "frames_per_s": frames / seconds,
            "mp4_bytes_per_video": mp4_bytes / cfg.episodes, "tensorboard_gif_seconds_per_video": gif_seconds / cfg.episodes,
            "tensorboard_gif_bytes_last_video": gif_bytes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None, help="a Breakout checkpoint (default: a random agent)")
    parser.add_argument("--episodes", type=int, default=5)
    args = parser.parse_args()
    overrides = [f"episodes={args.episodes}", "seed=0"]
    overrides += [f"checkpoint={args.checkpoint}"] if args.checkpoint else ["agent=random"]
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("record", overrides=overrides)
    results = [measure(cfg, write=True), measure(cfg, write=False)]
    print("| agent | PNG writes | episodes | agent steps | steps/s | score mean | bytes per frame | 100 episodes |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        size = f"{r['png_bytes_per_step']:.0f}" if r["png_bytes_per_step"] else "-"
        print(f"| {cfg.agent} | {'yes' if r['write'] else 'no (dry run)'} | {r['episodes']} | {r['agent_steps']:,} | "
              f"{r['steps_per_s']:.0f} | {r['score_mean']:.1f} | {size} | {r['seconds_for_100_episodes'] / 60:.1f} min |")
    videos = measure_videos(cfg)
    print(f"videos: {videos['frames']:,} frames in {videos['seconds']:.2f} s = {videos['frames_per_s']:.0f} frames/s, "
          f"{videos['mp4_bytes_per_video'] / 1e3:.0f} kB per MP4; TensorBoard GIF {videos['tensorboard_gif_seconds_per_video']:.2f} s "
          f"and {videos['tensorboard_gif_bytes_last_video'] / 1e3:.0f} kB per video")
    save(f"recording_{cfg.agent}", {"checkpoint": args.checkpoint, "results": results, "videos": videos})


if __name__ == "__main__":
    main()
