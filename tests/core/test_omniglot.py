"""The Omniglot loader, on the real files in ../shared/data and on broken copies."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import core
from core.data.omniglot import OMNIGLOT_FILES, _resize, load_omniglot, omniglot_split
from tests.shared_data import DATA
from tests.shared_data import require_omniglot as _require_data


@pytest.fixture(scope="module")
def omniglot():
    return load_omniglot(_require_data())


def test_real_files_load_as_1623_characters_of_20_drawings(omniglot):
    x = omniglot.images
    assert x.shape == (1623, 20, 28, 28) and x.dtype == torch.float32
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    # ink is 1 and sparse: strokes cover well under a fifth of a character's box
    assert 0.02 < float(x.mean()) < 0.2
    assert float(x[..., 0, :].mean()) < 0.05  # the border is background


def test_split_is_1200_100_323_disjoint_characters_and_seeded(omniglot):
    idx = omniglot.indices
    assert [len(idx[k]) for k in ("train", "val", "test")] == [1200, 100, 323]
    everything = torch.cat(list(idx.values()))
    assert torch.equal(everything.sort().values, torch.arange(1623))
    assert omniglot.split("val").shape == (100, 20, 28, 28)
    assert torch.equal(omniglot.split("test")[0], omniglot.images[idx["test"][0]])
    assert all(torch.equal(omniglot_split(0)[k], idx[k]) for k in idx)  # seed 0 by default
    assert not torch.equal(omniglot_split(1)["train"], idx["train"])
    with pytest.raises(core.ConfigurationError, match="split must be one of"):
        omniglot.split("dev")


def test_area_resize_averages_ink_and_inverts():
    img = np.ones((1, 20, 105, 105), dtype=bool)  # all background
    img[0, 1] = False  # all ink
    img[0, 2, :, :52] = False  # left half ink
    out = _resize(img, 28)
    assert out.shape == (1, 20, 28, 28)
    assert float(out[0, 0].abs().max()) == 0.0 and bool((out[0, 1] == 1).all())
    # adaptive windows of 3-4 pixels overlap where 105/28 is not whole: the mean is kept
    # to within one window's share
    assert float(out[0, 2].mean()) == pytest.approx(52 / 105, abs=4 / 105)
    assert float(out[0, 2, :, 0].min()) == 1.0 and float(out[0, 2, :, -1].max()) == 0.0


def _fake_files(folder: Path) -> None:
    folder.mkdir(parents=True)
    for name in OMNIGLOT_FILES:
        path = folder / name
        np.savez(path, images=np.ones((2, 20, 105, 105), dtype=bool), labels=np.zeros((2, 20)))
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        (folder / (name + ".sha256")).write_text(f"{digest}  {name}\n")


def test_missing_files_give_one_message_listing_what_is_expected_where(tmp_path):
    with pytest.raises(core.ConfigurationError) as err:
        load_omniglot(tmp_path)
    msg = str(err.value)
    for name in OMNIGLOT_FILES:
        assert name in msg and name + ".sha256" in msg
    assert str((tmp_path / "omniglot").resolve()) in msg and "--data-dir" in msg
    _fake_files(tmp_path / "omniglot")
    (tmp_path / "omniglot" / "images_evaluation.npz.sha256").unlink()
    with pytest.raises(core.ConfigurationError, match=r"images_evaluation\.npz\.sha256 is missing"):
        load_omniglot(tmp_path)


def test_checksum_mismatch_is_reported_with_both_digests(tmp_path):
    _fake_files(tmp_path / "omniglot")
    path = tmp_path / "omniglot" / "images_background.npz"
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(core.ConfigurationError, match=r"checksum mismatch for .*images_background"):
        load_omniglot(tmp_path)
    # an intact copy passes verification; its 4 characters are what fails then
    _fake_files(tmp_path / "intact" / "omniglot")
    with pytest.raises(core.ConfigurationError, match="expected 1623 characters, got 4"):
        load_omniglot(tmp_path / "intact")


def test_real_checksums_are_verified(tmp_path):
    data = _require_data() / "omniglot"
    copy = tmp_path / "omniglot"
    shutil.copytree(data, copy)
    sums = copy / "images_evaluation.npz.sha256"
    sums.chmod(0o644)
    sums.write_text("0" * 64 + "  images_evaluation.npz\n")
    with pytest.raises(core.ConfigurationError, match=r"checksum mismatch .*images_evaluation"):
        load_omniglot(tmp_path)


def test_bad_size_is_rejected():
    with pytest.raises(core.ConfigurationError, match="size must be an integer in \\[1, 105\\]"):
        load_omniglot(DATA, size=0)
