"""Fine-tuning on verified data, sized for CPUs: supervised (TRL's `SFTTrainer`, loss on
the completion) or by preference (TRL's `DPOTrainer`: direct preference optimisation,
Rafailov et al. 2023, arXiv 2305.18290 — raise the likelihood of a chosen completion over
a rejected one for the same prompt, relative to the base model). Either optionally with
PEFT LoRA adapters (Hu et al. 2021, arXiv 2106.09685) merged into the weights afterwards,
so that the result is a plain model folder that ``--model`` accepts."""

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


@dataclass(frozen=True)
class Preference:
    """One preference pair: for `prompt`, `chosen` is the better completion."""

    prompt: str
    chosen: str
    rejected: str


class FinetuneError(UserError, ValueError):
    """Nothing to train on, or a model that cannot be trained here."""


@dataclass
class FinetuneSettings:
    """How to train. LoRA by default; ``method="full"`` trains every weight (fine for
    the 135M embedded model). ``objective="dpo"`` trains on `Preference` pairs."""

    method: Literal["lora", "full"] = "lora"
    objective: Literal["sft", "dpo"] = "sft"
    beta: float = 0.1
    """DPO: how far the model may move from the base (larger: less far)."""
    epochs: float = 2.0
    learning_rate: float | None = None
    """Default: 2e-4 for LoRA, 3e-5 for full fine-tuning."""
    batch_size: int = 8
    micro_batch_size: int = 2
    """Sequences per forward pass; each batch accumulates ceil(batch_size / micro) passes
    (so the batch is micro x that, batch_size itself when micro divides it).
    The logits of a 49k-token vocabulary are large: a DPO batch of 8 (chosen and rejected,
    1024 tokens, policy and reference) took more than 24 GB in one pass."""
    max_length: int = 1024
    lora_rank: int = 16
    lora_alpha: int = 32
    seed: int = 0
    convert: bool = True
    """Convert the trained model for the ctranslate2 backend right away (int8)."""

    def __post_init__(self) -> None:
        for name in ("batch_size", "micro_batch_size"):
            if getattr(self, name) < 1:
                raise FinetuneError(f"{name} must be at least 1, got {getattr(self, name)}")

    @property
    def lr(self) -> float:
        if self.learning_rate is not None:
            return self.learning_rate
        if self.objective == "dpo":
            return 5e-5 if self.method == "lora" else 5e-6
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


def finetune(
    base_model: str | Path,
    examples: Sequence[Example] | Sequence[Preference],
    out_dir: str | Path,
    settings: FinetuneSettings | None = None,
    *,
    progress: Callable[[str], None] | None = None,
) -> FinetuneResult:
    """Fine-tune `base_model` (a model folder, or ``"embedded"``) on `examples` (`Example`
    pairs, or `Preference` pairs with ``objective="dpo"``); write the merged model and its
    tokenizer to `out_dir` with a ``openended_finetune.json`` record."""
    import datasets
    import torch
    from datasets import Dataset
    from transformers import PrinterCallback, TrainerCallback
    from transformers.utils import logging as hf_logging

    settings = settings or FinetuneSettings()
    if str(base_model) == "embedded":
        from openended.lm.embedded import resolve_model

        base_model = resolve_model("embedded")
    if not examples:
        raise FinetuneError("no training examples (the run has no verified data to learn from)")
    wanted = Preference if settings.objective == "dpo" else Example
    if not all(isinstance(e, wanted) for e in examples):
        raise FinetuneError(f"objective {settings.objective} trains on {wanted.__name__} pairs")
    hf_logging.set_verbosity_error()
    datasets.disable_progress_bars()
    hf_logging.disable_progress_bar()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    torch.manual_seed(settings.seed)
    model, tokenizer = _load(base_model)
    dataset = Dataset.from_list([asdict(e) for e in examples])  # type: ignore[arg-type]
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

    common = {
        "output_dir": str(out / "trainer"),
        "num_train_epochs": settings.epochs,
        "per_device_train_batch_size": min(settings.micro_batch_size, settings.batch_size),
        "gradient_accumulation_steps": -(-settings.batch_size // settings.micro_batch_size),
        "learning_rate": settings.lr,
        "lr_scheduler_type": "constant",
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "seed": settings.seed,
        "data_seed": settings.seed,
        "max_length": settings.max_length,
        "use_cpu": not torch.cuda.is_available(),
        # TRL's configs turn bf16 autocast on by default; on a CPU without native bf16
        # matrix units (AVX2, most AVX-512 parts) autocast falls back to a reference
        # GEMM: a step of 8 menu prompts took 10 minutes instead of 30 s. float32 there.
        "bf16": _bf16_is_fast(torch),
        "dataloader_num_workers": 0,
        "disable_tqdm": True,
        "gradient_checkpointing": False,
        "log_level": "error",
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # transformers' renamed options
        if settings.objective == "dpo":
            from trl import DPOConfig, DPOTrainer

            trainer = DPOTrainer(
                model=model,
                args=DPOConfig(**common, beta=settings.beta),
                train_dataset=dataset,
                processing_class=tokenizer,
                peft_config=peft_config,
                callbacks=[Report()],
            )
        else:
            from trl import SFTConfig, SFTTrainer

            trainer = SFTTrainer(
                model=model,
                args=SFTConfig(**common, completion_only_loss=True),
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


def _bf16_is_fast(torch: Any) -> bool:
    """bf16 mixed precision where the hardware runs it natively: a CUDA GPU that
    supports it, or a CPU with AMX/AVX-512 bf16 units (oneDNN's check)."""
    if torch.cuda.is_available():
        return bool(torch.cuda.is_bf16_supported())
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def _load(base_model: str | Path) -> tuple[Any, Any]:
    """The model in float32 (a GGUF-converted one too) and its tokenizer, with a pad token."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

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
    return model, tokenizer


def read_examples(path: str | Path) -> list[Example]:
    """Examples from a JSONL file of ``{"prompt": ..., "completion": ...}`` objects."""
    return [Example(**row) for row in _read_rows(path, ("prompt", "completion"))]


def read_preferences(path: str | Path) -> list[Preference]:
    """Preference pairs from JSONL in TRL's format, ``{"prompt", "chosen", "rejected"}``
    (other keys, like those of ``openended rank --export``, are ignored)."""
    return [Preference(**row) for row in _read_rows(path, ("prompt", "chosen", "rejected"))]


def _read_rows(path: str | Path, keys: tuple[str, ...]) -> list[dict[str, str]]:
    rows = []
    for number, row in read_jsonl(path, FinetuneError):
        if not isinstance(row, dict):
            raise FinetuneError(f"{path}: line {number}: expected an object")
        for key in keys:
            if not isinstance(row.get(key), str):
                raise FinetuneError(f"{path}: line {number}: key {key!r} missing or not a string")
        rows.append({key: row[key] for key in keys})
    return rows


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
