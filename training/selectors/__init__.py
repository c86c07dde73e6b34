"""Reads of the training app, by subject: access (who may see what), lists (runs, models, snapshots,
jobs, metrics, workers, lineage), loop (the loop's state), reward_agreement (reward models against
fresh human rankings) and evaluations (A/B judgements and ratings).
"""
