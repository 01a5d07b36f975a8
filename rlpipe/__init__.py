"""rlpipe: a TorchRL-native deep Q-learning pipeline (double DQN, prioritized replay, Hydra configs)."""

__version__ = "0.1.0"
