"""Models: ResNet-D structure and timm compatibility, BlurPool, build_model, wrappers."""
from __future__ import annotations

import hashlib

import pytest
import torch
import torchvision
from torch import nn

from fastimagenet.train.model import (ARCHITECTURES, BlurPoolConv2d, Bottleneck, ResNet, apply_blurpool,
                                      build_model, last_conv_stage, resnet18d, resnet50d, unwrap)

# sha256 of "\n".join(timm.create_model('resnet50d').state_dict()) with timm 1.0.31:
# pins the key names *and* their order, so weights load into / from timm unchanged.
TIMM_RESNET50D_KEYS_SHA256 = '951a1ebf58e70a9a0dec36d9335c98adf0e7a2edcb01ebad38c014aafa867e50'


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def strided_convs(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, BlurPoolConv2d)]


@pytest.fixture(scope='module')
def rn50d() -> ResNet:
    return resnet50d(num_classes=10).eval()


def test_resnet50d_parameter_count_is_timms():
    assert n_params(resnet50d(num_classes=1000)) == 25_576_264


def test_resnet50d_state_dict_keys_are_timms():
    keys = list(resnet50d().state_dict())
    assert len(keys) == 332
    assert hashlib.sha256('\n'.join(keys).encode()).hexdigest() == TIMM_RESNET50D_KEYS_SHA256
    for k in ('conv1.0.weight', 'conv1.1.running_var', 'conv1.3.weight', 'conv1.4.bias', 'conv1.6.weight',
              'bn1.weight', 'layer1.0.downsample.1.weight', 'layer2.0.downsample.2.running_mean',
              'layer4.2.bn3.weight', 'fc.weight', 'fc.bias'):
        assert k in keys


def test_deep_stem(rn50d):
    convs = [m for m in rn50d.conv1 if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 32, 64]
    assert [c.stride for c in convs] == [(2, 2), (1, 1), (1, 1)]
    assert all(c.kernel_size == (3, 3) and c.padding == (1, 1) and c.bias is None for c in convs)
    assert isinstance(rn50d.bn1, nn.BatchNorm2d) and rn50d.bn1.num_features == 64
    assert rn50d.maxpool.kernel_size == 3 and rn50d.maxpool.stride == 2 and rn50d.maxpool.padding == 1


def test_plain_stem_is_torchvision_style():
    model = ResNet(Bottleneck, [1, 1, 1, 1], num_classes=10, stem='plain')
    assert isinstance(model.conv1, nn.Conv2d)
    assert model.conv1.kernel_size == (7, 7) and model.conv1.stride == (2, 2) and model.conv1.out_channels == 64
    with pytest.raises(ValueError, match='stem'):
        ResNet(Bottleneck, [1, 1, 1, 1], stem='wide')


def test_bottleneck_stride_on_3x3(rn50d):
    for stage in (rn50d.layer2, rn50d.layer3, rn50d.layer4):
        block = stage[0]
        assert block.conv1.kernel_size == (1, 1) and block.conv1.stride == (1, 1)
        assert block.conv2.kernel_size == (3, 3) and block.conv2.stride == (2, 2)
        assert block.conv3.kernel_size == (1, 1) and block.conv3.stride == (1, 1)
        assert block.conv3.out_channels == 4 * block.conv1.out_channels


def test_avg_down_shortcut(rn50d):
    # layer1 keeps the resolution: the pool slot is an identity, so keys stay downsample.1/.2.
    assert isinstance(rn50d.layer1[0].downsample[0], nn.Identity)
    for stage in (rn50d.layer2, rn50d.layer3, rn50d.layer4):
        pool, conv, bn = stage[0].downsample
        assert isinstance(pool, nn.AvgPool2d)
        assert pool.kernel_size == 2 and pool.stride == 2
        assert pool.ceil_mode is True and pool.count_include_pad is False
        assert conv.kernel_size == (1, 1) and conv.stride == (1, 1)
        assert isinstance(bn, nn.BatchNorm2d)


def test_plain_shortcut_without_avg_down():
    model = ResNet(Bottleneck, [1, 1, 1, 1], num_classes=10, avg_down=False)
    conv, bn = model.layer2[0].downsample
    assert conv.kernel_size == (1, 1) and conv.stride == (2, 2) and isinstance(bn, nn.BatchNorm2d)


@pytest.mark.parametrize('size', [64, 97])
def test_output_shape(rn50d, size):
    # At 97 px the stages see odd sizes (25, 13, 7): the ceil-mode shortcut must match the 3x3 path.
    with torch.no_grad():
        assert rn50d(torch.randn(2, 3, size, size)).shape == (2, 10)
        assert rn50d.forward_features(torch.randn(1, 3, size, size)).shape[1] == 2048


def test_count_include_pad_false_at_odd_size():
    pool = resnet18d(num_classes=10).layer2[0].downsample[0]
    out = pool(torch.ones(1, 1, 3, 3))
    # The ceil-mode border windows cover fewer pixels; they must still average to 1, not less.
    assert out.shape == (1, 1, 2, 2) and torch.allclose(out, torch.ones_like(out))


def test_zero_init_last_bn():
    model = resnet50d(num_classes=10)
    blocks = [m for m in model.modules() if isinstance(m, Bottleneck)]
    assert len(blocks) == 16
    assert all(torch.all(b.bn3.weight == 0) for b in blocks)
    assert all(torch.all(b.bn1.weight == 1) and torch.all(b.bn2.weight == 1) for b in blocks)
    assert all(torch.all(b.bn2.weight == 0) for b in resnet18d(num_classes=10).modules()
               if type(b).__name__ == 'BasicBlock')
    untouched = resnet50d(num_classes=10, zero_init_last=False)
    assert all(torch.all(m.bn3.weight == 1) for m in untouched.modules() if isinstance(m, Bottleneck))


@pytest.mark.parametrize('arch, expected', [
    # ours: the 3x3 of each stage's first block (stem conv has 3 input channels; avg_down 1x1s have stride 1)
    ('resnet50d', ['layer2.0.conv2', 'layer3.0.conv2', 'layer4.0.conv2']),
    ('resnet18d', ['layer2.0.conv1', 'layer3.0.conv1', 'layer4.0.conv1']),
    # torchvision: the same convs plus the strided 1x1 shortcuts
    ('resnet50', ['layer2.0.conv2', 'layer2.0.downsample.0', 'layer3.0.conv2', 'layer3.0.downsample.0',
                  'layer4.0.conv2', 'layer4.0.downsample.0']),
    ('resnet18', ['layer2.0.conv1', 'layer2.0.downsample.0', 'layer3.0.conv1', 'layer3.0.downsample.0',
                  'layer4.0.conv1', 'layer4.0.downsample.0']),
])
def test_blurpool_wraps_expected_convs(arch, expected):
    plain = build_model(arch, 10)
    blurred = build_model(arch, 10, use_blurpool=True)
    assert strided_convs(blurred) == expected
    assert n_params(blurred) == n_params(plain)
    for name in expected:
        blur = blurred.get_submodule(name)
        assert not blur.blur_filter.requires_grad
        assert blur.blur_filter.shape == (blur.conv.in_channels, 1, 3, 3)
        assert name + '.blur_filter' not in blurred.state_dict()
    apply_blurpool(blurred)  # idempotent: no blur-of-blur
    assert strided_convs(blurred) == expected
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert blurred.eval()(x).shape == plain.eval()(x).shape == (1, 10)


def test_blur_filter_values():
    blur = BlurPoolConv2d(nn.Conv2d(16, 16, 3, stride=2, padding=1))
    k = blur.blur_filter[0, 0]
    assert torch.allclose(k, torch.tensor([[1., 2., 1.], [2., 4., 2.], [1., 2., 1.]]) / 16)
    # A constant image passes the blur unchanged away from the zero-padded border.
    x = torch.ones(1, 16, 8, 8)
    inner = torch.nn.functional.conv2d(x, blur.blur_filter, padding=1, groups=16)[..., 1:-1, 1:-1]
    assert torch.allclose(inner, torch.ones_like(inner))


def test_build_model_torchvision():
    model = build_model('resnext50_32x4d', num_classes=7)
    assert isinstance(model, torchvision.models.ResNet)
    assert model.fc.out_features == 7
    assert all(torch.all(m.bn3.weight == 0) for m in model.modules()
               if isinstance(m, torchvision.models.resnet.Bottleneck))
    model = build_model('resnet18', num_classes=7, zero_init_last=False)
    assert all(torch.all(m.bn2.weight == 1) for m in model.modules()
               if isinstance(m, torchvision.models.resnet.BasicBlock))


def test_build_model_ours():
    model = build_model('resnet50d', num_classes=5)
    assert isinstance(model, ResNet) and model.fc.out_features == 5


def test_architectures():
    assert ARCHITECTURES == tuple(sorted(ARCHITECTURES))
    assert {'resnet18d', 'resnet34d', 'resnet50d', 'resnet101d', 'resnet50', 'resnet152',
            'resnext101_64x4d', 'wide_resnet101_2'} <= set(ARCHITECTURES)
    assert len(ARCHITECTURES) == 14


def test_unknown_arch():
    with pytest.raises(ValueError) as err:
        build_model('resnet51', 10)
    msg = str(err.value)
    assert '\n' not in msg and "'resnet51'" in msg
    assert all(a in msg for a in ARCHITECTURES)


def test_channels_last_forward():
    model = build_model('resnet18d', 10, use_blurpool=True).to(memory_format=torch.channels_last).eval()
    x = torch.randn(2, 3, 64, 64).to(memory_format=torch.channels_last)
    with torch.no_grad():
        out = model(x)
        ref = model.to(memory_format=torch.contiguous_format)(x.contiguous())
    assert out.shape == (2, 10)
    assert torch.allclose(out, ref, atol=1e-4, rtol=1e-4)


def test_gradients_flow_with_blurpool():
    model = build_model('resnet18d', 10, use_blurpool=True, zero_init_last=False)
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    assert all(p.grad is not None for p in model.parameters())


class FakeDDP:
    def __init__(self, module: nn.Module):
        self.module = module


class FakeCompiled(nn.Module):
    def __init__(self, module: nn.Module):
        super().__init__()
        self._orig_mod = module


def test_unwrap_and_state_dict_prefix():
    model = resnet18d(num_classes=10)
    for wrapped in (FakeDDP(model), FakeCompiled(model), FakeDDP(FakeCompiled(model)), model):
        assert unwrap(wrapped) is model
        assert not any(k.startswith(('module.', '_orig_mod.')) for k in unwrap(wrapped).state_dict())
        assert last_conv_stage(wrapped) is model.layer4
    # A real DataParallel (no devices needed to construct it on CPU) also carries `.module`.
    assert unwrap(nn.DataParallel(model)) is model


def test_last_conv_stage_torchvision_and_gradcam_hook():
    model = build_model('resnet18', 10, zero_init_last=False).eval()
    stage = last_conv_stage(model)
    assert stage is model.layer4
    feats = {}
    handle = stage.register_forward_hook(lambda m, i, o: feats.setdefault('act', o))
    try:
        out = model(torch.randn(1, 3, 64, 64))
    finally:
        handle.remove()
    grad, = torch.autograd.grad(out[0, 0], feats['act'])
    assert feats['act'].shape == grad.shape == (1, 512, 2, 2)
    with pytest.raises(TypeError):
        last_conv_stage(nn.Linear(2, 2))
