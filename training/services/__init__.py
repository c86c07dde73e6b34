"""Writes of the training app, by subject: snapshots, runs (trigger, cancel, resume), execution on a
GPU worker (claim, supervise, settle), model versions and promotion, sampling jobs, the loop, workers.
"""
