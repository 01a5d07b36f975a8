"""TensorDict keys shared across rlpipe: what the environments write and what replay and the learner read."""

OBSERVATION_KEY = "observation"  # what the Q-network reads
EPISODE_RETURN_KEY = "episode_reward"  # training return of the episode so far (RewardSum)
EPISODE_SCORE_KEY = "episode_score"  # unshaped game score of the episode so far (Atari)
EPISODE_LENGTH_KEY = "step_count"  # agent steps in the episode so far (StepCounter)
END_OF_LIFE_KEY = "end-of-life"  # a lost life (Atari EndOfLifeTransform)
AGENT_STATE_KEY = "agent_state"  # what the agent controls, without the layout (DoorKey): RND's novelty_input=agent_state
ACTION_MASK_KEY = "action_mask"  # [A] bool, True where an action is valid (DoorKey skills)
GOAL_REACHED_KEY = "goal_reached"  # the episode ended on its goal: the task's success (DoorKey)
EPISODE_PRIMITIVE_STEPS_KEY = "episode_primitive_steps"  # primitive actions in the episode so far (DoorKey)

REWARD_KEY = ("next", "reward")  # the env's (extrinsic) reward of a transition
TERMINATED_KEY = ("next", "terminated")  # the transition ends its episode at a terminal state: no bootstrap
# (an agent may bring keys of its own: RND's are in rlpipe.rnd)

# What a stored transition holds, field by field: the replay buffers store these and the learner reads them. A
# learner reads its reward and terminal flag from its own keys (``rlpipe.learner.Learner(reward_key=,
# terminated_key=)``), the others as declared here.
TRANSITION_FIELDS = {
    "observation": OBSERVATION_KEY,
    "action": "action",
    "next_observation": ("next", OBSERVATION_KEY),
    "reward": REWARD_KEY,
    "done": ("next", "done"),
    "terminated": TERMINATED_KEY,  # terminal for the TD target
}
TRANSITION_KEYS = tuple(TRANSITION_FIELDS.values())
MASK_TRANSITION_KEYS = (ACTION_MASK_KEY, ("next", ACTION_MASK_KEY))  # stored too where the env masks actions
STEPS_TO_NEXT_OBS_KEY = "steps_to_next_obs"  # [1] agent steps an n-step transition spans (TorchRL's TD(0) reads it)
INDEX_KEY = "index"  # where a sampled transition sits in the replay buffer
PRIORITY_WEIGHT_KEY = "priority_weight"  # PER importance weight of a sampled transition
