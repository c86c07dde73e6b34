"""The training engine: plain Python on torch + transformers (+ TRL, peft, accelerate).

It imports nothing of Django or of the apps (an import-linter contract checks it); the web side and
the engine exchange only files in a run folder (see run_dir.py). Run it as

    python -m training.engine COMMAND --run-dir DIR

See README.md in this folder for the conventions every command follows.
"""
