"""Ranking models: BPR (PyTorch Lightning), user-KNN and the baselines."""
