"""The loop makes a model better: a simulated team plays it through REST, beat starts every step.

Five labelers (four careful, one careless), a reviewer and an engineer work through the live test
server's REST API only (``simulator/``, plain HTTP): demonstrations, reviews, rankings, and the
judgements of the evaluation the engineer asks for once PPO's policy exists. Celery beat alone
starts SFT, sampling, the reward model, PPO, promotions and the reward checks, on real workers. The
hidden preference (the number of "good"s in an answer, plus a small tie-breaker for real words over
gibberish) is known only to the simulator, which then reads the figures through the API.

The tiny setup (simulator.scenario.TINY): the default make-tiny model (2 layers, hidden 64, its 512-
token BPE has " good" as one token); SFT 120 steps at 1.5e-3 on 40 built demonstrations (a few short
sentences, about a third of them with "good"); K = 4, two rankings per task; a reward model after
180 rankings (a third of them of the base model's gibberish), 150 steps at 5e-4; PPO 48 steps of 32
rollouts at 3e-4, kl_coef 0.03; 200 held-out prompts in PPO's evaluation against SFT. With 140
rankings, 100 reward steps and kl_coef 0.02, one run in eight lost to SFT: its reward model (71 %
right on fresh pairs) rated "The answer is." highly and PPO wrote little else (reward hacking, as
InstructGPT warns); with more rankings and steps it never did in six runs. PPO at 1e-3 for 24 steps
still beat SFT in only some runs (72, 62, 27.5, 79.5, 51.75 % seen; issue 10): it drifted fast (KL
up to 15) into short answers that some reward models overrate. Offline (bench/tiny_ppo_sweep.py), on
one loop's SFT policy and eight reward models trained on its rankings (four seeds, 150 or 300 steps),
1e-3 for 24 steps won 64-96 % of the held-out answers (one collapse to "good answer is"), 3e-4 for 48
steps 80-96.5 % with less KL (5.7-11 nats against 6.5-15); eight runs of this test with it won 79.75-
98.25 % (median 91.5 %), KL 5.9-12.5, in 3-9 minutes (bench/results/tiny-loop-seeds/ppo_3e-4_48_steps.md).
Engine runs use one thread: on two shared cores, two OpenMP threads per run stalled a tiny model's
steps up to 30-fold when other processes competed for the cores.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from django.core.management import call_command

from simulator.answers import BuiltSource
from simulator.report import simulate_and_report
from simulator.scenario import TINY, Accounts
from tests.conftest import celery_worker_env, celery_worker_start, celery_worker_stop
from tests.training.conftest import FAST_WORKER_ENV

pytestmark = [pytest.mark.celery]

REPO = Path(__file__).resolve().parents[2]
# Two-sided 99.9 % bound for the in-loop checks: a platform figure and the simulator's expectation of
# it differ only by the labelers' noise, and a 95 % bound would fail one run in twenty by chance.
Z_999 = 3.29
# One-sided level below which a figure can't come from a model no better than chance (or than SFT).
P_LUCK = 1e-3
P_LUCK_POLICY = 1e-2  # see the PPO assertion


@pytest.fixture
def data_root(settings, tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    settings.DATA_ROOT = root
    settings.RLHF_MODEL_IMPORT_ROOTS = [str(root)]
    return root


@pytest.fixture
def loop_processes(data_root, transactional_db):
    """A default-queue worker, a gpu worker and beat: the loop ticks every 2 s, reward checks every 3 s."""
    env = celery_worker_env(
        **{**FAST_WORKER_ENV, "OMP_NUM_THREADS": "1"}, RLHF_LOOP_TICK_SECONDS="2", RLHF_RECONCILE_SECONDS="10",
        RLHF_REWARD_CHECK_SECONDS="3", RLHF_REWARD_CHECK_MIN_TASKS="8",
    )
    default = celery_worker_start(name="sim-default", queues="default", env=env)
    gpu = celery_worker_start(name="sim-gpu", queues="gpu", env=env)
    beat = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "beat", "--loglevel", "WARNING", "--pidfile="],
        cwd=REPO, env=env, start_new_session=True,
    )
    try:
        yield
    finally:
        beat.terminate()
        beat.wait(timeout=30)
        celery_worker_stop(gpu)
        celery_worker_stop(default)


def test_a_simulated_team_makes_the_loop_train_a_policy_better_than_sft(live_server, data_root, loop_processes):
    out = io.StringIO()
    call_command("simulation_setup", "--slug", "sim", "--labelers", "4", "--careless", "1", "--password",
                 "simulated-pass-123", stdout=out)
    accounts = Accounts.from_json(json.loads(out.getvalue()))

    plan = replace(TINY, dpo=None)  # PPO only: DPO is bench/simulated_loop.py's, a minute more
    figures = simulate_and_report(url=live_server.url, accounts=accounts, plan=plan, source=BuiltSource(),
                                  data_root=data_root)
    print(json.dumps(figures, indent=2, default=str))  # shown when the test fails: every figure

    # the labelers are as noisy as planned: two careful ones agree on about 73 % of pairs
    assert 0.70 < figures["labelers"]["calibration_agreement"] < 0.76
    assert figures["labelers"]["careful_agreement_on_tasks"]["share"] > 0.6

    # the reward model beats chance clearly on tasks it never trained on, against the hidden order;
    # p_value = P(X >= its hits), X ~ Binomial(pairs, 1/2): a coin-flipping model passes once in 1,000
    reward = figures["reward_model"]
    assert reward["measured"] and reward["held_out_tasks"] >= TINY.fresh_tasks
    assert reward["accuracy_vs_hidden"]["share"] > 0.5 and reward["p_value_vs_chance"] < P_LUCK, reward
    assert reward["accuracy_vs_labels"]["share"] > 0.5

    ppo = figures["policies"]["ppo"]
    assert ppo["run"]["kl_last"] is not None and ppo["run"]["kl_last"] > 0  # it moved away from SFT

    # the platform's own figures exist and agree with what the simulator expects of them
    in_loop = figures["in_loop"]
    evaluation = in_loop["evaluations"]["ppo"]
    assert evaluation["platform"]["judgements"] > 0
    assert abs(evaluation["z"]) < Z_999, evaluation
    agreement = in_loop["reward_agreement"]
    assert agreement["platform"]["tasks"] > 0 and agreement["platform"]["agreement"] > 0.5
    assert abs(agreement["z"]) < Z_999, agreement
    assert abs(in_loop["labelers_ceiling"]["z"]) < Z_999, in_loop["labelers_ceiling"]

    # the ranking quality page flags the careless labeler
    assert figures["careless"]["all_careless_flagged"], figures["careless"]["labelers"]

    # PPO wins over SFT under the noise-free hidden preference, on the evaluation's held-out prompts.
    # Under H0 "PPO is no better than SFT" each prompt where the two differ is at best a fair coin, so
    # its wins among those n prompts are at most Binomial(n, 1/2): p_value = P(X >= wins) < 0.01
    # means a policy no better than SFT passes this less than once in a hundred runs.
    hidden = ppo["hidden"]
    assert hidden["win_rate"] > 0.5 and hidden["p_value"] < P_LUCK_POLICY, {**hidden, "kl_last": ppo["run"]["kl_last"]}
    assert evaluation["platform"]["win_rate"] > 0.5, evaluation  # the team's own verdict agrees
