"""Ranking outputs by pairwise human judgments: schedulers and Bradley-Terry fits."""
