"""Class mapping, splits and the training augmentation (samplers: tests/slides)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from autoscope.datasets.augment import augment_batch
from autoscope.datasets.classes import ClassMapper
from autoscope.datasets.splits import assign_splits
from autoscope.errors import UserError

CLASSES = [{"name": "tumor", "color": "#f00"}, {"name": "stroma", "color": "#00f"}]


def test_class_mapper() -> None:
    m = ClassMapper(CLASSES, {"Tumour": "tumor", "Other": None})
    assert m.index("tumor", "f") == 0 and m.index("Stroma", "f") == 1
    assert m.index("tumour", "f") == 0 and m.index("Other", "f") is None
    with pytest.raises(
        UserError, match=r"a.geojson: feature 3: unknown class 'Necrosis'.*class_map"
    ):
        m.index("Necrosis", "a.geojson: feature 3")
    with pytest.raises(UserError, match="not a project class"):
        ClassMapper(CLASSES, {"x": "fat"})


def _rows(n_groups: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for g in range(n_groups):
        for _ in range(int(rng.integers(20, 80))):
            rows.append({"group": f"g{g}", "label_idx": int(rng.integers(0, 2))})
    return pd.DataFrame(rows)


def test_splits_keep_groups_whole_and_are_seeded() -> None:
    df = _rows(30)
    fr = {"train": 0.7, "val": 0.15, "test": 0.15}
    s1 = assign_splits(df, fr, seed=1, num_classes=2)
    assert (s1 == assign_splits(df, fr, seed=1, num_classes=2)).all()
    assert not (s1 == assign_splits(df, fr, seed=2, num_classes=2)).all()
    assert (df.assign(split=s1).groupby("group")["split"].nunique() == 1).all()
    share = s1.value_counts(normalize=True)
    assert abs(share["train"] - 0.7) < 0.1 and share["val"] > 0.05 and share["test"] > 0.05
    # stratified: each split has the classes in a similar proportion
    per = df.assign(split=s1).groupby("split")["label_idx"].mean()
    assert per.max() - per.min() < 0.2


def test_splits_with_few_groups_give_every_split_one() -> None:
    df = _rows(3)
    s = assign_splits(df, {"train": 0.6, "val": 0.2, "test": 0.2}, seed=0, num_classes=2)
    assert set(s) == {"train", "val", "test"}


def test_splits_from_csv_are_kept_and_groups_follow() -> None:
    df = _rows(6)
    df["split"] = None
    df.loc[df["group"] == "g0", "split"] = "test"
    df.loc[df.index[df["group"] == "g1"][:1], "split"] = "val"
    s = assign_splits(df, {"train": 0.8, "val": 0.1, "test": 0.1}, seed=0, num_classes=2)
    assert set(s[df["group"] == "g0"]) == {"test"} and set(s[df["group"] == "g1"]) == {"val"}


def test_bad_fractions() -> None:
    with pytest.raises(UserError, match="fractions"):
        assign_splits(_rows(3), {"train": 0.5, "val": 0.2}, seed=0, num_classes=2)


def test_augment_batch() -> None:
    x = torch.randint(0, 256, (16, 32, 32, 3), dtype=torch.uint8)
    y = augment_batch(x, torch.Generator().manual_seed(0))
    assert y.shape == (16, 3, 32, 32) and y.dtype == torch.float32 and y.is_contiguous()
    assert 0.0 <= float(y.min()) and float(y.max()) <= 1.0
    assert torch.equal(y, augment_batch(x, torch.Generator().manual_seed(0)))
    plain = augment_batch(x, torch.Generator(), geometric=False, jitter=0.0)
    assert torch.allclose(plain, x.permute(0, 3, 1, 2).float() / 255, atol=1e-6)
    geo = augment_batch(x, torch.Generator().manual_seed(3), jitter=0.0)
    for i in range(16):  # each sample is a flip/rotation of the input: same pixels
        ref = x[i].permute(2, 0, 1).float() / 255
        assert torch.allclose(geo[i].sum(), ref.sum(), atol=1e-2)
        assert any(
            torch.allclose(geo[i], torch.rot90(r, k, (1, 2)), atol=1e-6)
            for r in (ref, ref.flip(2))
            for k in range(4)
        )
    norm = augment_batch(x, torch.Generator(), mean=[0.5] * 3, std=[0.25] * 3)
    assert float(norm.min()) >= -2.0 - 1e-6 and float(norm.max()) <= 2.0 + 1e-6
    with pytest.raises(ValueError):
        augment_batch(x.float(), torch.Generator())


def test_augment_cpu_fast_path_matches_the_torch_path() -> None:
    from autoscope.datasets.augment import _dihedral_u8, _planar_float

    x = torch.randint(0, 256, (40, 16, 16, 3), dtype=torch.uint8)
    codes = torch.arange(40) % 8
    want = _dihedral_u8(x, codes).permute(0, 3, 1, 2).float()  # the path other devices take
    assert torch.equal(_planar_float(x, codes), want)
    assert torch.equal(_planar_float(x, None), x.permute(0, 3, 1, 2).float())


def test_dataset_spec_from_the_config() -> None:
    from autoscope.config import compose
    from autoscope.stages.dataset import dataset_spec

    spec = dataset_spec(compose("demo", ["dataset=demo_tissue"]))
    assert spec.name == "demo_tissue" and spec.patch_px == 64 and spec.mpp == 1.0
    assert spec.sources[0].type == "geojson" and spec.sources[0].min_overlap is None
    assert (
        spec.setting(spec.sources[0], "min_overlap") == 0.75 and spec.stride(spec.sources[0]) == 64
    )
    assert spec.split.fractions == {"train": 0.6, "val": 0.2, "test": 0.2} and spec.workers == 1
    none = dataset_spec(compose("demo", ["dataset=none"]))
    assert none.name is None and none.patch_px == 224 and none.stride_px is None  # _base.yaml
    with pytest.raises(UserError, match=r"dataset.sources\[0\]: unknown key 'paht'"):
        dataset_spec(compose("demo", ["dataset.sources=[{type: geojson, paht: x}]"]))
