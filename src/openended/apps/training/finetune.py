"""Supervised fine-tuning on verified data with TRL's `SFTTrainer`, optionally with PEFT
LoRA adapters (Hu et al. 2021, arXiv 2106.09685) merged into the weights afterwards, so
that the result is a plain model folder that ``--model`` accepts. Sized for CPUs."""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from openended.errors import UserError
from openended.jsonl import read_jsonl

FINETUNE_INFO = "openended_finetune.json"


@dataclass(frozen=True)
class Example:
    """One training pair: the loss is on `completion` only."""

    prompt: str
    completion: str


@dataclass
class FinetuneSettings:
    """How to train. LoRA by default; ``method="full"`` trains every weight (fine for
    the 135M embedded model)."""

    method: Literal["lora", "full"] = "lora"
    epochs: float = 2.0
    learning_rate: float | None = None
    """Default: 2e-4 for LoRA, 3e-5 for full fine-tuning."""
    batch_size: int = 8
    max_length: int = 1024
    lora_rank: int = 16
    lora_alpha: int = 32
    seed: int = 0
    convert: bool = True
    """Convert the trained model for the ctranslate2 backend right away (int8)."""

    @property
    def lr(self) -> float:
        if self.learning_rate is not None:
            return self.learning_rate
        return 2e-4 if self.method == "lora" else 3e-5


@dataclass
class FinetuneResult:
    """Where the model went and how training went."""

    model_dir: Path
    base_model: str
    examples: int
    steps: int
    seconds: float
    losses: list[float] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["model_dir"] = str(self.model_dir)
        return data


class FinetuneError(UserError, ValueError):
    """Nothing to train on, or a model that cannot be trained here."""


def finetune(
    base_model: str | Path,
    examples: Sequence[Example],
    out_dir: str | Path,
    settings: FinetuneSettings | None = None,
    *,
    progress: Callable[[str], None] | None = None,
) -> FinetuneResult:
    """Fine-tune `base_model` (a model folder, or ``"embedded"``) on `examples`; write the
    merged model and its tokenizer to `out_dir` with a ``openended_finetune.json`` record."""
    import datasets
    import torch
    from datasets import Dataset
    from transformers import (
        AutoConfig,
        AutoModelForCausalLM,
        AutoTokenizer,
        PrinterCallback,
        TrainerCallback,
    )
    from transformers.utils import logging as hf_logging
    from trl import SFTConfig, SFTTrainer

    settings = settings or FinetuneSettings()
    if str(base_model) == "embedded":
        from openended.lm.embedded import resolve_model

        base_model = resolve_model("embedded")
    if not examples:
        raise FinetuneError("no training examples (the run has no verified data to learn from)")
    hf_logging.set_verbosity_error()
    datasets.disable_progress_bars()
    hf_logging.disable_progress_bar()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    torch.manual_seed(settings.seed)
    tokenizer = AutoTokenizer.from_pretrained(base_model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    config = AutoConfig.from_pretrained(base_model)
    if getattr(config, "quantization_config", None) is not None:
        method = dict(config.quantization_config).get("quant_method")
        if method != "gguf":
            raise FinetuneError(f"{base_model} is quantised ({method}); give a float model")
        # a GGUF model converted by an older openended: the weights are already float32
        del config.quantization_config
    model = AutoModelForCausalLM.from_pretrained(base_model, config=config, dtype=torch.float32)
    dataset = Dataset.from_list(
        [{"prompt": e.prompt, "completion": e.completion} for e in examples]
    )
    peft_config = None
    if settings.method == "lora":
        from peft import LoraConfig

        peft_config = LoraConfig(
            r=settings.lora_rank,
            lora_alpha=settings.lora_alpha,
            lora_dropout=0.0,
            target_modules="all-linear",
            task_type="CAUSAL_LM",
        )
    losses: list[float] = []

    class Report(TrainerCallback):  # type: ignore[misc]
        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            if logs and "loss" in logs:
                losses.append(float(logs["loss"]))
                if progress is not None:
                    progress(f"step {state.global_step}/{state.max_steps}  loss {logs['loss']:.4f}")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # transformers' renamed options
        args = SFTConfig(
            output_dir=str(out / "trainer"),
            num_train_epochs=settings.epochs,
            per_device_train_batch_size=settings.batch_size,
            learning_rate=settings.lr,
            lr_scheduler_type="constant",
            logging_steps=1,
            save_strategy="no",
            report_to="none",
            seed=settings.seed,
            data_seed=settings.seed,
            max_length=settings.max_length,
            completion_only_loss=True,
            use_cpu=not torch.cuda.is_available(),
            dataloader_num_workers=0,
            disable_tqdm=True,
            gradient_checkpointing=False,
            log_level="error",
        )
        trainer = SFTTrainer(
            model=model,
            args=args,
            train_dataset=dataset,
            processing_class=tokenizer,
            peft_config=peft_config,
            callbacks=[Report()],
        )
    trainer.remove_callback(PrinterCallback)  # progress goes through `progress`
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        trainer.train()
    trained = trainer.model
    if peft_config is not None:
        trained = trained.merge_and_unload()
    trained.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    if settings.convert:
        _convert_for_fast_decoding(out, progress)
    result = FinetuneResult(
        model_dir=out,
        base_model=str(base_model),
        examples=len(examples),
        steps=int(trainer.state.global_step),
        seconds=round(time.perf_counter() - start, 1),
        losses=losses,
    )
    info = {**result.to_json(), "settings": asdict(settings)}
    (out / FINETUNE_INFO).write_text(json.dumps(info, indent=1))
    _remove_tree(out / "trainer")
    return result


def read_examples(path: str | Path) -> list[Example]:
    """Examples from a JSONL file of ``{"prompt": ..., "completion": ...}`` objects."""
    examples = []
    for number, row in read_jsonl(path, FinetuneError):
        if not isinstance(row, dict):
            raise FinetuneError(f"{path}: line {number}: expected an object")
        for key in ("prompt", "completion"):
            if not isinstance(row.get(key), str):
                raise FinetuneError(f"{path}: line {number}: key {key!r} missing or not a string")
        examples.append(Example(row["prompt"], row["completion"]))
    return examples


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def _convert_for_fast_decoding(model_dir: Path, progress: Callable[[str], None] | None) -> None:
    """Convert the trained model for the ctranslate2 backend now (int8, the default), so
    that its first use decodes at once; skipped where ctranslate2 is not installed."""
    try:
        import ctranslate2  # noqa: F401
    except ImportError:
        return
    from openended.lm.conversion import converted_model

    converted_model(model_dir, "int8", progress=progress)
