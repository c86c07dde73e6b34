"""`python -m training.engine COMMAND --run-dir DIR`: load DIR/config.json, run COMMAND, write result.json.

Exit codes: 0 when the command succeeded or was stopped by SIGTERM after saving a checkpoint
(result.json says which), 2 on bad config or data (one message on stderr and in result.json),
1 on a crash (traceback on stderr). Under torchrun every rank runs this; rank 0 writes the files.
Run alone, the process uses one GPU (the first visible); several GPUs need torchrun.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from training.engine.config import load_config
from training.engine.configs import COMMAND_CONFIGS
from training.engine.errors import EngineError
from training.engine.run_dir import Result, RunDir, is_main_process

# Command name -> module exposing `main(config, run_dir) -> Result`; its config class is
# COMMAND_CONFIGS[name] (configs.py, torch-free, so the web side validates with the same class).
# Modules load lazily so `make-tiny` does not pay for importing TRL.
COMMANDS: dict[str, str] = {
    "make-tiny": "training.engine.tiny",
    "sft": "training.engine.sft",
    "reward": "training.engine.reward",
    "dpo": "training.engine.dpo",
    "ppo": "training.engine.ppo",
    "sample": "training.engine.sampling",
    "score": "training.engine.score",
    "import-gguf": "training.engine.gguf_import",
}

EXIT_BAD_INPUT = 2


def main(argv: list[str] | None = None) -> int:
    """Run one engine command and return the process exit code."""
    parser = argparse.ArgumentParser(prog="python -m training.engine", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=sorted(COMMANDS))
    parser.add_argument("--run-dir", required=True, help="folder holding config.json and the input data")
    args = parser.parse_args(argv)

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # forked dataloaders would warn otherwise
    os.environ.setdefault("TQDM_DISABLE", "1")  # progress bars flood the run log the web side shows
    try:
        run_dir = RunDir(args.run_dir)
    except EngineError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT

    command = importlib.import_module(COMMANDS[args.command])
    try:
        config = load_config(COMMAND_CONFIGS[args.command], run_dir.config_file)
        result = command.main(config, run_dir)
    except EngineError as error:
        print(f"error: {error}", file=sys.stderr)
        run_dir.write_result(Result(status="failed", error=str(error)))
        return EXIT_BAD_INPUT
    except BaseException as error:
        # Record the failure for the web side, then let Python print the traceback and exit 1.
        run_dir.write_result(Result(status="failed", error=f"{type(error).__name__}: {error}"))
        raise
    run_dir.write_result(result)
    if is_main_process():
        print(f"{args.command}: {result.status}", file=sys.stderr)
    return 0


def one_gpu_outside_torchrun(environ=os.environ) -> None:
    """Outside torchrun, let this process see one GPU (the first visible), never several.

    With several GPUs visible to one process, the HF Trainer wraps the model in nn.DataParallel,
    which TRL refuses (sft, reward and dpo would fail on any multi-GPU node), and ppo and sample use
    one device anyway. Several GPUs train through torchrun, one process each. Must run before CUDA
    is initialised.
    """
    if "LOCAL_RANK" in environ:
        return
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        environ["CUDA_VISIBLE_DEVICES"] = "0"
    elif "," in visible:
        environ["CUDA_VISIBLE_DEVICES"] = visible.split(",")[0].strip()


if __name__ == "__main__":
    one_gpu_outside_torchrun()
    sys.exit(main())
