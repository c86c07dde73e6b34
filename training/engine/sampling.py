"""`sample`: generate K answers per prompt from a model folder and write ranking-task JSONL.

Input `RUN_DIR/<prompts_file>`: `{"messages": [...]}` or `{"context": [...]}` lines, optional "id".
Output `RUN_DIR/<output_file>`: one line per prompt,
    {"id": ..., "context": [messages], "responses": [{"content": str, "generator": str}, ... K]}
Prompts go through `rollout.generate` in batches (left-padded, each repeated K times): a static KV
cache and, on GPU, a CUDA graph for Llama/Qwen-shaped models, `model.generate` for the rest. Lines
are appended to `<output_file>.partial` batch by batch; a rerun after a kill or SIGTERM redoes the
batch it stopped in (same seed, same answers) and writes from the first missing line; the file is
renamed when all is done.
Runs on one process (a sampling job is small next to training); under torchrun only rank 0 works.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from training.engine.configs import SampleConfig as Config
from training.engine.conversations import fit_prompt
from training.engine.data import read_prompts
from training.engine.errors import EngineError
from training.engine.rollout import RolloutEngine, SamplingParams, generate, supports_fast_path
from training.engine.run_dir import MetricsLog, Result, RunDir, StopSignal, is_main_process


def main(config: Config, run_dir: RunDir) -> Result:
    """Sample K answers for every prompt and write them as ranking tasks."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    output = run_dir.resolve(config.output_file)
    if not is_main_process():
        return Result(status="succeeded", paths={"samples": str(output)})
    stop = StopSignal().install()
    prompts = read_prompts(run_dir.input_file(config.prompts_file))
    source = run_dir.model_source(config.model_path)
    generator = config.generator or config.model_path

    partial = output.with_name(output.name + ".partial")
    done = _complete_lines(partial)
    metrics = MetricsLog(run_dir.metrics_file, resume_step=done)

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    tokenizer = AutoTokenizer.from_pretrained(source, padding_side="left")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    dtype = torch.bfloat16 if config.bf16 else torch.float32
    model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype).to(device).eval()
    engine = None  # one engine for all batches, so its cache (and CUDA graph) is reused
    if supports_fast_path(model, config.max_prompt_length + config.max_new_tokens):
        engine = RolloutEngine(model, max_prompt_len=config.max_prompt_length)

    with open(partial, "a", encoding="utf-8") as handle:
        # a kill can leave a batch half written: redo it whole, so its seed draws the same answers
        for start in range(done - done % config.batch_size, len(prompts), config.batch_size):
            if stop.requested:
                return Result(status="stopped", step=max(start, done), paths={"partial": str(partial)})
            batch = prompts[start : start + config.batch_size]
            torch.manual_seed(config.seed + start // config.batch_size)
            contexts = [row["context"] for row in batch]
            answers = generate_answers(model, tokenizer, contexts, config, device, engine=engine)
            for index, (row, texts) in enumerate(zip(batch, answers, strict=True), start=start):
                if index < done:
                    continue  # written before the kill
                task = {
                    "context": row["context"],
                    "responses": [{"content": t, "generator": generator} for t in texts],
                }
                if row["id"] is not None:
                    task = {"id": row["id"], **task}
                handle.write(json.dumps(task, ensure_ascii=False) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
            metrics.log(start + len(batch), prompts_done=start + len(batch), prompts_total=len(prompts))

    os.replace(partial, output)
    return Result(
        status="succeeded",
        metrics={"prompts": len(prompts), "responses": len(prompts) * config.num_responses},
        paths={"samples": str(output)},
        step=len(prompts),
    )


def generate_answers(
    model,
    tokenizer,
    contexts: list[list[dict]],
    config: Config,
    device,
    *,
    engine: RolloutEngine | None = None,
) -> list[list[str]]:
    """Return num_responses answer texts for each context, in one batched generate call."""
    # a long conversation keeps its end, the turn to answer, cut on message boundaries
    prompts = [fit_prompt(tokenizer, context, max_length=config.max_prompt_length) for context in contexts]
    inputs = tokenizer.pad({"input_ids": prompts}, padding=True, return_tensors="pt").to(device)
    k = config.num_responses
    eos = eos_token_ids(model, tokenizer)
    new_tokens = generate(
        model,
        inputs["input_ids"].repeat_interleave(k, dim=0),  # prompt i's answers are rows i·k … i·k + k - 1
        inputs["attention_mask"].repeat_interleave(k, dim=0),
        # no top-k cut: sample from the full distribution (or its top_p nucleus); temperature 0 is greedy
        SamplingParams(
            max_new_tokens=config.max_new_tokens, temperature=config.temperature, top_p=config.top_p
        ),
        eos_token_ids=eos,
        pad_token_id=tokenizer.pad_token_id,
        engine=engine,
    )
    answers = [
        row[: next((i for i, t in enumerate(row) if t in eos), len(row))] for row in new_tokens.tolist()
    ]
    decoded = tokenizer.batch_decode(answers, skip_special_tokens=True)
    return [[text.strip() for text in decoded[i * k : (i + 1) * k]] for i in range(len(contexts))]


def eos_token_ids(model, tokenizer) -> list[int]:
    """Return the tokens that end an answer: the generation config's EOS ids and the tokenizer's."""
    ids = model.generation_config.eos_token_id if model.generation_config is not None else None
    ids = list(ids) if isinstance(ids, list) else [ids] if ids is not None else []
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids


def _complete_lines(partial: Path) -> int:
    """Count the complete lines of a partial output, cutting off a line a kill left unfinished."""
    if not partial.exists():
        return 0
    data = partial.read_bytes()
    complete = data[: data.rfind(b"\n") + 1]
    if len(complete) != len(data):
        partial.write_bytes(complete)
    lines = complete.decode("utf-8").splitlines()
    for number, line in enumerate(lines, start=1):
        try:
            json.loads(line)
        except json.JSONDecodeError:
            raise EngineError(
                f"{partial.name} line {number}: corrupt; delete the file to sample again"
            ) from None
    return len(lines)
