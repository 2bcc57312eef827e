"""The local trainer on a tiny model with the real SmolLM2 tokenizer: hardware and budget
decisions, the completion-only loss against TRL's, methods, early stopping, the wall-clock
budget, continuing the champion, and outputs without pickles."""

from __future__ import annotations

import math
from datetime import timedelta
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tasks.config import TrainingSettings
from tasks.prepare.window import single_version_window
from tasks.train.local import (
    build_trainer,
    count_examples_seen,
    load_base,
    plan_hardware,
    plan_steps,
    prepare_model,
    train_local,
)
from tests.helpers.datasets import examples, put_golden, put_version, ref

PICKLE_SUFFIXES = {".bin", ".pt", ".pth", ".pkl", ".pickle"}


def test_cpu_gets_fp32_padded_batches_grouped_by_length_and_says_why():
    plan = plan_hardware(TrainingSettings(), cuda=False, bf16_supported=False, flash_attention=True)
    assert (plan.device, plan.bf16, plan.padding_free, plan.gradient_checkpointing) == (
        "cpu",
        False,
        False,
        False,
    )
    assert plan.batching == "padded, grouped by length"
    assert "variable-length" in plan.reason


def test_cuda_uses_bf16_and_packs_only_with_a_varlen_kernel():
    with_flash = plan_hardware(
        TrainingSettings(), cuda=True, bf16_supported=True, flash_attention=True
    )
    assert (with_flash.bf16, with_flash.padding_free) == (True, True)
    assert with_flash.attn_implementation == "flash_attention_2"
    without = plan_hardware(
        TrainingSettings(), cuda=True, bf16_supported=False, flash_attention=False
    )
    assert (without.bf16, without.padding_free, without.attn_implementation) == (
        False,
        False,
        "sdpa",
    )
    assert "flash-attention" in without.reason


def test_padding_free_without_varlen_kernel_is_refused_with_the_fix():
    with pytest.raises(ValueError, match="batching = auto"):
        plan_hardware(
            TrainingSettings(batching="padding_free"),
            cuda=False,
            bf16_supported=False,
            flash_attention=False,
        )


@pytest.mark.parametrize(
    ("epochs", "max_steps", "examples", "steps"),
    [(1.0, None, 30, 4), (2.0, None, 30, 8), (0.5, None, 30, 2), (3.0, 5, 30, 5), (None, 7, 9, 7)],
)
def test_steps_come_from_epochs_capped_by_max_steps(epochs, max_steps, examples, steps):
    training = TrainingSettings(epochs=epochs, max_steps=max_steps, batch_size=8)
    assert plan_steps(training, examples) == steps


def test_examples_seen_counts_the_short_last_batch_of_each_epoch():
    assert count_examples_seen(steps=3, batch_size=8, examples=20) == 20
    assert count_examples_seen(steps=4, batch_size=8, examples=20) == 28
    assert count_examples_seen(steps=1, batch_size=8, examples=20) == 8


def _cpu_lora_trainer(model_dir, output_dir, train_rows: list[dict], steps: int):
    """Our trainer as train_local builds it on CPU: batches of 4, max_length 64, fresh LoRA."""
    training = TrainingSettings(batch_size=4, max_length=64)
    plan = plan_hardware(training, cuda=False, bf16_supported=False, flash_attention=False)
    model, tokenizer = load_base(model_dir, plan)
    model, peft_config = prepare_model(model, training, None)
    return build_trainer(
        training, plan, model, tokenizer, train_rows, [], output_dir, steps, peft_config
    )


def test_completion_loss_equals_trls_loss(tiny_model_dir, tmp_path):
    """Scoring only assistant positions changes the cost, not the loss."""
    from trl import SFTTrainer

    trainer = _cpu_lora_trainer(tiny_model_dir, tmp_path, examples("x", 8), steps=1)
    batch = next(iter(trainer.get_train_dataloader()))
    assert (batch["labels"] == -100).any() and (batch["labels"] != -100).any()
    with torch.no_grad():
        ours = trainer.compute_loss(trainer.model, dict(batch))
        trls = SFTTrainer.compute_loss(trainer, trainer.model, dict(batch))
    assert torch.allclose(ours, trls, rtol=1e-5), (ours, trls)


def test_padded_batches_group_a_small_window_by_length(tiny_model_dir, tmp_path):
    """16 examples in batches of 4: transformers' sampler would sort each batch alone."""
    trainer = _cpu_lora_trainer(tiny_model_dir, tmp_path, examples("x", 16), steps=4)
    torch.manual_seed(0)
    longest = [int(b["attention_mask"].sum(1).max()) for b in trainer.get_train_dataloader()]
    lengths = sorted((len(ids) for ids in trainer.train_dataset["input_ids"]), reverse=True)
    assert len(set(lengths)) > 4
    assert sorted(longest, reverse=True) == lengths[::4]


def _with_training(settings, **update):
    training = settings.training.model_copy(update=update)
    return settings.model_copy(update={"training": TrainingSettings(**training.model_dump())})


def _small_dataset(settings, count: int = 12):
    golden_key = put_golden(settings, examples("golden", 1))
    prefix = put_version(settings, "ds-one", timedelta(0), examples("t", count), examples("v", 4))
    return ref(settings, "ds-one", prefix, golden_key)


def _files(directory: str) -> set[str]:
    return {p.name for p in Path(directory).rglob("*") if p.is_file()}


def test_early_stopping_keeps_the_best_adapter(settings, tiny_model_dir):
    # a learning rate too small to move the loss: validation never improves after the first eval
    settings = _with_training(
        settings,
        base_model=str(tiny_model_dir),
        learning_rate=1e-12,
        epochs=None,
        max_steps=8,
        eval_steps=1,
        early_stopping_patience=2,
    )
    dataset = _small_dataset(settings)

    result = train_local.fn(settings, dataset, "pytest-early-stop", single_version_window(dataset))

    assert result.stopped_by == "early_stopping" and result.steps == 3
    assert [step for step, _ in result.val_curve] == [1, 2, 3]
    assert result.best_val_loss == min(loss for _, loss in result.val_curve)


def test_wall_clock_budget_stops_after_the_first_step(settings, tiny_model_dir):
    settings = _with_training(settings, base_model=str(tiny_model_dir), max_minutes=1e-6)
    dataset = _small_dataset(settings)

    result = train_local.fn(settings, dataset, "pytest-budget")

    assert (result.steps, result.stopped_by) == (1, "max_minutes")
    assert result.examples_seen == 4 and result.fraction_seen == pytest.approx(4 / 12, abs=1e-4)
    assert result.val_curve and result.val_curve[-1][0] == 1  # the last adapter was judged too


def test_freeze_trains_only_the_top_blocks_and_saves_safetensors(settings, tiny_model_dir):
    settings = _with_training(
        settings, base_model=str(tiny_model_dir), method="freeze", freeze_top_n=1, max_steps=1
    )
    dataset = _small_dataset(settings)

    result = train_local.fn(settings, dataset, "pytest-freeze")

    before = load_file(tiny_model_dir / "model.safetensors")
    after = load_file(Path(result.adapter_dir) / "model.safetensors")
    layer = "model.layers.{}.mlp.down_proj.weight"
    assert torch.equal(before[layer.format(0)], after[layer.format(0)])
    assert not torch.equal(before[layer.format(1)], after[layer.format(1)])
    assert not {Path(f).suffix for f in _files(result.adapter_dir)} & PICKLE_SUFFIXES


def test_continuing_the_champion_starts_from_its_adapter(settings, tiny_model_dir):
    settings = _with_training(settings, base_model=str(tiny_model_dir), max_steps=2)
    dataset = _small_dataset(settings)
    champion = train_local.fn(settings, dataset, "pytest-champion")

    # so small a step that the continued adapter must still equal the champion's
    settings = _with_training(settings, init="champion", learning_rate=1e-12, max_steps=1)
    continued = train_local.fn(settings, dataset, "pytest-continued", None, champion.adapter_dir)

    old = load_file(Path(champion.adapter_dir) / "adapter_model.safetensors")
    new = load_file(Path(continued.adapter_dir) / "adapter_model.safetensors")
    assert old.keys() == new.keys()
    lora_b = [k for k in old if "lora_B" in k]
    assert lora_b and all(old[k].abs().sum() > 0 for k in lora_b)  # the champion was trained
    assert all(torch.allclose(old[k], new[k], atol=1e-6) for k in old)
    assert continued.init == "champion" and math.isfinite(continued.train_loss)


def test_full_fine_tune_trains_every_block_and_logs_its_batching(settings, tiny_model_dir, caplog):
    settings = _with_training(settings, base_model=str(tiny_model_dir), method="full", max_steps=1)
    dataset = _small_dataset(settings)

    with caplog.at_level("INFO", logger="tasks.train.local"):
        result = train_local.fn(settings, dataset, "pytest-full")

    before = load_file(tiny_model_dir / "model.safetensors")
    after = load_file(Path(result.adapter_dir) / "model.safetensors")
    layer = "model.layers.{}.mlp.down_proj.weight"
    assert not torch.equal(before[layer.format(0)], after[layer.format(0)])
    assert not torch.equal(before[layer.format(1)], after[layer.format(1)])
    assert result.method == "full" and "adapter_config.json" not in _files(result.adapter_dir)
    assert not {Path(f).suffix for f in _files(result.adapter_dir)} & PICKLE_SUFFIXES
    # the automatic batching choice and its reason reach the run log
    assert f"batching: {result.batching} ({result.batching_reason})" in caplog.text
    assert result.batching == "padded, grouped by length" and "CPU" in result.batching_reason
    # evaluation loads the whole weights it saved, not an adapter
    from tasks.evaluate.aggregate import ModelRef, load_model

    challenger = ModelRef(
        label="c", base_model_dir=str(tiny_model_dir), adapter_dir=result.adapter_dir
    )
    loaded = load_model(challenger).model
    assert torch.equal(loaded.state_dict()[layer.format(0)], after[layer.format(0)])
    # and a LoRA run cannot continue it
    with pytest.raises(ValueError, match="init = base"):
        prepare_model(loaded, TrainingSettings(init="champion"), result.adapter_dir)


@pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated")
def test_fused_lora_layers_compute_peft_outputs_and_gradients(tiny_model_dir):
    from peft import get_peft_model

    from tasks.train.fused_lora import FusedLoraLinear
    from tasks.train.local import lora_config

    training = TrainingSettings()
    plain_config, fused_config = lora_config(training), lora_config(training)
    plan = plan_hardware(training, cuda=False, bf16_supported=False, flash_attention=False)
    plain = get_peft_model(load_base(tiny_model_dir, plan)[0], plain_config)
    model, fused_config = prepare_model(load_base(tiny_model_dir, plan)[0], training, None)
    fused = get_peft_model(model, fused_config)
    layers = [m for m in fused.modules() if isinstance(m, FusedLoraLinear)]
    assert len(layers) == 7 * 2  # every linear of both blocks: q k v o gate up down
    with torch.no_grad():  # a trained-looking adapter: B is zero at initialisation
        pairs = zip(plain.named_parameters(), fused.named_parameters(), strict=True)
        for (name, a), (_, b) in pairs:
            if "lora_" in name:
                a.normal_(0, 0.05)
                b.copy_(a)

    ids = torch.randint(0, 1000, (3, 17))
    mask = torch.ones_like(ids)
    mask[0, 12:] = 0  # a padded row
    losses = [m(input_ids=ids, attention_mask=mask, labels=ids).loss for m in (plain, fused)]
    for loss in losses:
        loss.backward()
    assert losses[1].item() == pytest.approx(losses[0].item(), rel=1e-5)
    grads = [
        {n: p.grad for n, p in m.named_parameters() if p.requires_grad} for m in (plain, fused)
    ]
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) == 7 * 2 * 2
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, rtol=1e-4, atol=1e-6)

    fused.base_model.model.model.layers[0].self_attn.q_proj.merge()  # other states: PEFT's path
    with torch.no_grad():
        merged_loss = fused(input_ids=ids, attention_mask=mask, labels=ids).loss
    assert merged_loss.item() == pytest.approx(losses[0].item(), rel=1e-4)
