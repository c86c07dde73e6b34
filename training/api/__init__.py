"""REST API for training, one module per subject: model versions, snapshots, runs, sampling jobs, the loop,
GPU workers. Managers of a project and ML engineers who belong to it drive its training; anyone else gets
404, exactly as for an object that doesn't exist.
"""
