"""`python -m simulator`: play the team against a running platform, or show the noise calibration.

    python manage.py simulation_setup --slug sim > accounts.json           # on the server: project + team
    python -m simulator run --url http://127.0.0.1:8000 --accounts accounts.json --plan tiny \\
        --data-root var/data --out figures.json
    python -m simulator run --url … --accounts … --plan smollm2 --hh hh-rlhf.jsonl --base-gguf /models/x.gguf
    python -m simulator calibrate --plan tiny                              # the labelers' temperature

``--data-root`` (the platform's RLHF_DATA_ROOT, on this machine) lets the report score held-out
answers with the reward model through the engine's ``score`` command; without it the reward model's
accuracy against the hidden preference is left out. Exit status 0 when the run completed.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from simulator.report import simulate_and_report
from simulator.scenario import PLANS, Accounts, calibrate, source_for


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulator", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="play the team through the loop and write the figures")
    run.add_argument("--url", required=True, help="the platform, e.g. http://127.0.0.1:8000")
    run.add_argument("--accounts", type=Path, required=True, help="what `manage.py simulation_setup` printed")
    run.add_argument("--plan", choices=sorted(PLANS), default="tiny")
    run.add_argument("--hh", type=Path, help="HH-RLHF JSONL: prompts and demonstrations (plan smollm2)")
    run.add_argument("--base-gguf", help="the base model as a GGUF file on the server (an import-gguf run)")
    run.add_argument("--base-path", help="the base model as a save_pretrained folder on the server")
    run.add_argument("--data-root", type=Path, help="the platform's data root, to score with the reward model")
    run.add_argument("--timeout", type=float, help="seconds before giving up (default: the plan's)")
    run.add_argument("--seed", type=int, help="seeds the labelers' noise (default: a fresh one, in the figures)")
    run.add_argument("--out", type=Path, help="write the figures here as JSON (default: stdout)")
    show = commands.add_parser("calibrate", help="print the careful labelers' temperature for a plan")
    show.add_argument("--plan", choices=sorted(PLANS), default="tiny")
    show.add_argument("--hh", type=Path)
    args = parser.parse_args(argv)

    plan = PLANS[args.plan]
    source = source_for(plan, hh_path=args.hh)
    if args.command == "calibrate":
        temperature, agreement = calibrate(plan, source)
        print(json.dumps({"plan": plan.name, "temperature": temperature, "agreement": agreement}))
        return 0
    if args.base_gguf or args.base_path:
        plan = replace(plan, base_model={"gguf_file": args.base_gguf} if args.base_gguf else {"path": args.base_path})
    if not plan.base_model:
        parser.error(f"plan {plan.name} needs the base model: --base-gguf or --base-path")
    if args.timeout:
        plan = replace(plan, timeout_s=args.timeout)
    figures = simulate_and_report(url=args.url, accounts=Accounts.from_json(json.loads(args.accounts.read_text())),
                                  plan=plan, source=source, data_root=args.data_root, seed=args.seed)
    text = json.dumps(figures, indent=2, default=str)
    if args.out:
        args.out.write_text(text + "\n")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
