"""Learned schedulers: the node-scoring Q-network, DQN training, model files and the DQN policy."""
