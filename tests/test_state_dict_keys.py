"""State-dict keys of every registered variant: checkpoints written before must keep loading.

The digests were recorded from the networks as they were before the UNet and U-MixFormer shared
one encoder builder (:mod:`fwi_attn.nn.models.encoder`); every ``model.pt`` of an earlier study
has these keys. A change here means old checkpoints no longer load: keep the keys, or convert.
"""
from __future__ import annotations

import hashlib

import pytest
import torch

from fwi_attn.nn.models import create_model, list_models

SHAPE = dict(in_shots=5, nt=320, n_receivers=64, nz=64, nx=64)  # the default study's survey
HYPERS = {
    "defaults": {},
    "default_study": dict(width=8, depth=3, attn_levels=3, mix_pool=4, width_mult=0.25),
    "salt_heads": dict(width=4, depth=2, salt_heads=True),
}

#: ``"<variant>/<hyper-parameters>": (sha256 of the "key [shape]" lines, first 16 digits; number of keys)``.
RECORDED = {
    "none/defaults": ("8c0a471020e991ca", 98),
    "none/default_study": ("e9d73fce538396e2", 98),
    "none/salt_heads": ("195235f2732cde27", 78),
    "se/defaults": ("fc352170d53f41c6", 114),
    "se/default_study": ("ecc435f11c5f83bb", 110),
    "se/salt_heads": ("6bea76c86b53e81a", 90),
    "cbam/defaults": ("6a94fb8a577a3584", 122),
    "cbam/default_study": ("1abaad9cbb7efe38", 116),
    "cbam/salt_heads": ("718860b854c5b1b9", 96),
    "ca/defaults": ("2ef875b3d06f37e8", 138),
    "ca/default_study": ("35e44f904566c9eb", 128),
    "ca/salt_heads": ("453e52ecf0b14658", 108),
    "psa/defaults": ("d55570447647d8a2", 142),
    "psa/default_study": ("31bee549499cfa12", 131),
    "psa/salt_heads": ("74cc44d729880c32", 111),
    "mask/defaults": ("25632e62465b8d3a", 130),
    "mask/default_study": ("8b777648774addbd", 130),
    "mask/salt_heads": ("96a31726f0806c22", 110),
    "mask_hard/defaults": ("25632e62465b8d3a", 130),
    "mask_hard/default_study": ("8b777648774addbd", 130),
    "mask_hard/salt_heads": ("96a31726f0806c22", 110),
    "gate/defaults": ("6007944c44fe3f6a", 113),
    "gate/default_study": ("913c2c43bc60f612", 113),
    "gate/salt_heads": ("655274cdcebbf6f8", 88),
    "m2f/defaults": ("4e059fa1afa030ea", 213),
    "m2f/default_study": ("7e8e2f3356788f9a", 178),
    "m2f/salt_heads": ("e9e123309ef1cdd3", 150),
    "mixformer/defaults": ("12daff7ea12539d1", 141),
    "mixformer/default_study": ("70ecd569d5bc90dd", 141),
    "mixformer/salt_heads": ("18518b864e9c99b0", 102),
    "inversionnet/defaults": ("d4cfab5d094eb42b", 175),
    "inversionnet/default_study": ("4c85817943af9c02", 175),
    "inversionnet/salt_heads": ("d4cfab5d094eb42b", 175),
    "none_salt/defaults": ("7aaeb998e035f14a", 106),
    "none_salt/default_study": ("dbe9eee496d6e1a1", 106),
    "none_salt/salt_heads": ("195235f2732cde27", 78),
    "none_wide/defaults": ("8c0a471020e991ca", 98),
    "none_wide/default_study": ("e9d73fce538396e2", 98),
    "none_wide/salt_heads": ("195235f2732cde27", 78),
}


def key_digest(model: torch.nn.Module) -> tuple[str, int]:
    sd = model.state_dict()
    lines = "\n".join(f"{k} {list(v.shape)}" for k, v in sd.items())
    return hashlib.sha256(lines.encode()).hexdigest()[:16], len(sd)


def test_every_registered_variant_is_recorded():
    assert {k.split("/")[0] for k in RECORDED} == set(list_models())


@pytest.mark.parametrize("case", sorted(RECORDED))
def test_state_dict_keys_and_shapes_are_unchanged(case):
    name, hyper = case.split("/")
    with torch.device("meta"):  # shapes only
        model = create_model(name, **SHAPE, **HYPERS[hyper])
    assert key_digest(model) == RECORDED[case], f"{case}: state-dict keys or shapes changed"


def test_unet_and_mixformer_share_the_encoder_keys():
    with torch.device("meta"):
        unet = create_model("none", **SHAPE, width=8)
        mix = create_model("mixformer", **SHAPE, width=8)
    prefixes = ("stem.", "encoder.", "bottleneck.")

    def encoder(m):
        return {k: tuple(v.shape) for k, v in m.state_dict().items() if k.startswith(prefixes)}

    assert encoder(unet) == encoder(mix) and encoder(unet)
