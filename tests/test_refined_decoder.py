"""The inference decoder of a trained (non-zero) residual path: equal to the
training decoder up to float rounding, rebuilt when the weights change, never
pickled."""

import copy
import pickle

import numpy as np
import pytest
import torch

from sklearn_walloc._networks import RefinedDecoder, WallocAutoencoder


def _trained_like(ndim, channels=3, levels=2, width=8, depth=1, seed=0):
    module = WallocAutoencoder(channels, 5, levels, "bior4.4", ndim, 8, width, depth)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
        module.latent_scale.fill_(3.0)
        module.data_scale.fill_(40.0)
        module.data_offset.fill_(120.0)
    return module.eval()


def _latents(ndim, shape, seed=0):
    q = np.random.default_rng(seed).integers(-20, 21, (2, 5, *shape))
    t = torch.from_numpy(q.astype(np.float32))
    return t.contiguous(memory_format=torch.channels_last) if ndim == 2 else t


@pytest.mark.parametrize("ndim,shape", [(2, (9, 14)), (2, (1, 3)), (1, (40,))])
@pytest.mark.parametrize("gain_steps,latent_bits", [(0, None), (3, 10)])
def test_refined_decoder_equals_the_training_decoder(
    ndim, shape, gain_steps, latent_bits
):
    module = _trained_like(ndim)
    q = _latents(ndim, shape)
    with torch.no_grad():
        expected = module.decode(q, gain_steps, latent_bits)
        fused = module.fused_decoder()
        got = module.decode_fused(q, fused, gain_steps, latent_bits)
    assert got.shape == expected.shape
    scale = float(expected.abs().max())
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5 * scale)
    # The refined decoder ran (not the closed form's fused synthesis).
    with torch.no_grad():
        assert isinstance(module._inference_decoder(fused, q), RefinedDecoder)


def test_refined_decoder_follows_weight_changes():
    module = _trained_like(2)
    q = _latents(2, (6, 7))
    fused = module.fused_decoder()
    with torch.no_grad():
        before = module.decode_fused(q, fused)
        module.decoder.refine[1].conv1.weight.mul_(-1.0)  # in place, as a step
        after = module.decode_fused(q, fused)
        expected = module.decode(q)
    assert not torch.allclose(before, after)
    scale = float(expected.abs().max())
    torch.testing.assert_close(after, expected, rtol=0, atol=1e-5 * scale)


def test_refined_decoder_is_not_copied_with_the_module():
    module = _trained_like(2)
    q = _latents(2, (4, 4))
    with torch.no_grad():
        y = module.decode_fused(q, module.fused_decoder())
    assert module.__dict__.get("_inference_cache")
    for clone in (copy.deepcopy(module), pickle.loads(pickle.dumps(module))):
        assert "_inference_cache" not in clone.__dict__
        with torch.no_grad():
            torch.testing.assert_close(clone.decode_fused(q, clone.fused_decoder()), y)


def test_decode_fused_keeps_gradients_on_the_training_path():
    module = _trained_like(1)
    q = _latents(1, (16,))
    y = module.decode_fused(q, module.fused_decoder())
    y.sum().backward()
    assert module.decoder.refine[0].weight.grad is not None


def test_refined_decoder_needs_a_residual_path():
    module = WallocAutoencoder(3, 5, 2, "bior4.4", 2, 8, 0, 0)
    with pytest.raises(ValueError, match="residual"):
        module.refined_decoder()


@pytest.mark.parametrize("levels,shape", [(3, (9, 14)), (2, (1, 3)), (1, (5, 4))])
def test_first_pass_folded_into_one_convolution_equals_the_grouped_one(
    levels, shape, monkeypatch
):
    # The first grouped synthesis pass of an image runs as one dense
    # convolution (its groups share one filter); the grouped one is the
    # reference.
    from sklearn_walloc import _synthesis

    module = _trained_like(2, levels=levels)
    q = _latents(2, shape)
    decoder = module.refined_decoder()
    with torch.no_grad():
        folded = decoder(q)
        stage = decoder.synthesis.stages[0]
        assert stage.groups > 1
        assert decoder.synthesis._shared_filter(stage) is not None
        monkeypatch.setattr(
            _synthesis.SeparableDecoder, "_shared_filter", lambda self, stage: None
        )
        grouped = decoder(q)
    scale = float(grouped.abs().max())
    torch.testing.assert_close(folded, grouped, rtol=0, atol=1e-6 * scale)
    assert folded.is_contiguous(memory_format=torch.channels_last)


def test_groups_with_different_filters_are_not_folded():
    module = _trained_like(2)
    synthesis = module.refined_decoder().synthesis
    stage = synthesis.stages[0]
    weight = stage.weight.clone()
    weight[0] += 1.0  # the first group's filter differs from the others'
    assert synthesis._shared_filter(stage._replace(weight=weight)) is None
    bias = stage.bias.clone()
    bias[-1] += 1.0
    assert synthesis._shared_filter(stage._replace(bias=bias)) is None
