# Root conftest: makes the repository root importable for pytest (config, apps, training.engine).
