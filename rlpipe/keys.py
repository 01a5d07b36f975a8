"""TensorDict keys shared across rlpipe: what the environments write and what replay and the learner read."""

OBSERVATION_KEY = "observation"  # what the Q-network reads
EPISODE_RETURN_KEY = "episode_reward"  # training return of the episode so far (RewardSum)
EPISODE_SCORE_KEY = "episode_score"  # unshaped game score of the episode so far (Atari)
EPISODE_LENGTH_KEY = "step_count"  # agent steps in the episode so far (StepCounter)
END_OF_LIFE_KEY = "end-of-life"  # a lost life (Atari EndOfLifeTransform)

# What a stored transition holds, and what the learner reads.
TRANSITION_KEYS = (
    OBSERVATION_KEY,
    "action",
    ("next", OBSERVATION_KEY),
    ("next", "reward"),
    ("next", "done"),
    ("next", "terminated"),  # terminal for the TD target
)
INDEX_KEY = "index"  # where a sampled transition sits in the replay buffer
PRIORITY_WEIGHT_KEY = "priority_weight"  # PER importance weight of a sampled transition
