"""Mixed precision and gradient clipping with WESPE's two manual optimizers.

``16-mixed`` needs a GPU through the Trainer flag (on CPU Lightning switches to bf16), so these
tests give Lightning's ``MixedPrecision`` plugin a CPU GradScaler directly: the same plugin code
(one scaler, ``unscale_``, ``step`` and ``update`` at each optimizer step), with fp16 autocast
on CPU.
"""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.plugins.precision import MixedPrecision
from test_module import tiny_data, tiny_trainer, tiny_wespe

from wespe.module import WESPE

INITIAL_SCALE = 2.0**12


def sgd(params):
    return torch.optim.SGD(params, lr=1.0)


def fp16_with_scaler() -> MixedPrecision:
    return MixedPrecision(
        "16-mixed", "cpu", scaler=torch.amp.GradScaler("cpu", init_scale=INITIAL_SCALE)
    )


def train_one_iteration(tmp_path, model: WESPE, **trainer_kwargs) -> pl.Trainer:
    trainer = tiny_trainer(tmp_path, max_steps=2, **trainer_kwargs)
    trainer.fit(model, tiny_data())
    return trainer


def weights(model: WESPE, networks: tuple[str, ...]) -> torch.Tensor:
    return torch.cat(
        [p.detach().flatten().clone() for n in networks for p in getattr(model, n).parameters()]
    )


GENERATORS = ("generator", "inverse_generator")
DISCRIMINATORS = ("texture_discriminator", "color_discriminator")


def test_bf16_mixed_precision_trains_with_two_optimizers(tmp_path):
    model = tiny_wespe()
    before = model.generator.to_image.weight.detach().clone()
    train_one_iteration(tmp_path, model, precision="bf16-mixed")
    after = model.generator.to_image.weight
    assert after.dtype == torch.float32  # weights stay fp32; autocast only computes in bf16
    assert torch.isfinite(after).all() and not torch.equal(after, before)


@pytest.mark.parametrize("precision", ["32", "16-mixed with GradScaler"])
def test_gradient_clipping_bounds_each_optimizers_true_gradient_norm(tmp_path, precision):
    # With SGD at lr 1 an update is minus the clipped gradient, so its norm over an optimizer's
    # networks is the clipping threshold. Under 16-mixed the gradients are multiplied by the
    # scale (4096) until unscaled; clipping them before that would give updates 4096 times too
    # small.
    clip = 1e-3
    model = tiny_wespe(generator_optimizer=sgd, discriminator_optimizer=sgd, gradient_clip_val=clip)
    before = {group: weights(model, group) for group in (GENERATORS, DISCRIMINATORS)}
    extra = {"plugins": [fp16_with_scaler()]} if precision != "32" else {}
    train_one_iteration(tmp_path, model, **extra)
    for group, start in before.items():
        update = (weights(model, group) - start).norm().item()
        assert update == pytest.approx(clip, rel=1e-3), group


class InfiniteDiscriminatorLoss(WESPE):
    """The discriminators' loss overflows, as an fp16 step sometimes does; the generators' not."""

    def discriminator_losses(self, target, enhanced, views=None):
        terms = super().discriminator_losses(target, enhanced, views)
        terms["color_d"] = terms["color_d"] * float("inf")
        return terms


def test_one_grad_scaler_skips_only_the_step_whose_gradients_overflowed(tmp_path):
    # One scaler serves both optimizers and Lightning updates it after each step: the generator
    # step is taken (scale unchanged), the discriminator step is skipped and halves the scale,
    # and no non-finite value reaches the weights.
    model = tiny_wespe(InfiniteDiscriminatorLoss)
    generators, discriminators = weights(model, GENERATORS), weights(model, DISCRIMINATORS)
    trainer = train_one_iteration(tmp_path, model, plugins=[fp16_with_scaler()])
    assert trainer.global_step == 2
    assert not torch.equal(weights(model, GENERATORS), generators)
    assert torch.equal(weights(model, DISCRIMINATORS), discriminators)
    assert torch.isfinite(weights(model, GENERATORS)).all()
    assert trainer.precision_plugin.scaler.get_scale() == INITIAL_SCALE / 2
