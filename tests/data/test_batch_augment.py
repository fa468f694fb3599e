"""Batch transforms on collated waveforms: they change real samples only, at the SNR / gain / span they draw, the
same way for the same key, and a bad recipe entry is a one-line error naming it."""

import pytest
import torch

from hf_ser.data.batch_augment import AddGaussianSNR, Gain, Mixup, TimeMask, build_batch_augmenter, check_batch_input
from hf_ser.data.votes import LABEL_DISTRIBUTION

LENGTHS = [16000, 12000, 4000]


def padded_batch() -> dict:
    """Three clips of a 0.1-amplitude tone, right-padded with zeros to the longest, with their attention mask."""
    values = torch.zeros(len(LENGTHS), max(LENGTHS))
    mask = torch.zeros(len(LENGTHS), max(LENGTHS), dtype=torch.long)
    for row, length in enumerate(LENGTHS):
        values[row, :length] = 0.1 * torch.sin(torch.arange(length) * 0.05)
        mask[row, :length] = 1
    return {"input_values": values, "attention_mask": mask, "labels": torch.tensor([0, 1, 2])}


def run(specs: list, key: int = 0) -> tuple[dict, dict]:
    augmenter = build_batch_augmenter(specs, seed=3)
    batch = padded_batch()
    return batch, augmenter(batch, augmenter.generator(torch.device("cpu"), 0, key, 0))


@pytest.mark.parametrize(
    "spec",
    [
        {"name": "AddGaussianSNR", "p": 1.0, "min_snr_db": 0.0, "max_snr_db": 0.0},
        {"name": "Gain", "p": 1.0, "min_gain_db": 6.0, "max_gain_db": 6.0},
        {"name": "TimeMask", "p": 1.0, "min_band_part": 0.5, "max_band_part": 0.5},
    ],
)
def test_every_batch_transform_changes_real_samples_and_leaves_padding_alone(spec):
    batch, augmented = run([spec])
    real = batch["attention_mask"].bool()
    assert augmented["input_values"].shape == batch["input_values"].shape
    assert augmented["input_values"].dtype == torch.float32
    assert torch.equal(augmented["input_values"][~real], batch["input_values"][~real])  # padding stays 0
    assert augmented["attention_mask"] is batch["attention_mask"] and augmented["labels"] is batch["labels"]
    for row, length in enumerate(LENGTHS):
        assert not torch.equal(augmented["input_values"][row, :length], batch["input_values"][row, :length])


def test_noise_is_at_the_drawn_snr_over_each_items_real_samples():
    batch, augmented = run([{"name": "AddGaussianSNR", "p": 1.0, "min_snr_db": 10.0, "max_snr_db": 10.0}])
    for row, length in enumerate(LENGTHS):
        clean = batch["input_values"][row, :length]
        noise = augmented["input_values"][row, :length] - clean
        snr_db = 10 * torch.log10(clean.square().mean() / noise.square().mean())
        assert snr_db.item() == pytest.approx(10.0, abs=0.5)


def test_gain_scales_by_the_drawn_decibels():
    batch, augmented = run([{"name": "Gain", "p": 1.0, "min_gain_db": -6.0, "max_gain_db": -6.0}])
    torch.testing.assert_close(augmented["input_values"], batch["input_values"] * 10 ** (-6 / 20))


def test_a_time_mask_is_one_span_of_the_drawn_share_inside_the_real_length():
    _, augmented = run([{"name": "TimeMask", "p": 1.0, "min_band_part": 0.25, "max_band_part": 0.25}])
    for row, length in enumerate(LENGTHS):
        zeros = (augmented["input_values"][row, :length] == 0).nonzero().flatten()
        tone_zeros = (padded_batch()["input_values"][row, :length] == 0).sum().item()  # sin(0) at sample 0
        assert len(zeros) - tone_zeros in (length // 4, length // 4 - 1)  # the span, less a tone zero inside it
        masked = zeros[zeros > 0]
        assert masked.max() - masked.min() + 1 == len(masked)  # one contiguous span


def test_p_decides_per_item_and_the_same_key_draws_the_same():
    specs = [{"name": "Gain", "p": 0.5, "min_gain_db": 6.0, "max_gain_db": 6.0}]
    batch, first = run(specs, key=1)
    _, again = run(specs, key=1)
    torch.testing.assert_close(first["input_values"], again["input_values"])
    changed = set()
    for key in range(12):
        _, augmented = run(specs, key=key)
        changed |= {tuple(not torch.equal(a, b) for a, b in zip(augmented["input_values"], batch["input_values"]))}
    assert len(changed) > 2  # items are chosen independently, not all or none


def test_without_an_attention_mask_every_sample_is_real():
    augmenter = build_batch_augmenter([{"name": "Gain", "p": 1.0, "min_gain_db": 6.0, "max_gain_db": 6.0}])
    values = torch.ones(2, 10)
    out = augmenter({"input_values": values}, augmenter.generator(torch.device("cpu"), 0))
    torch.testing.assert_close(out["input_values"], torch.full((2, 10), 10 ** (6 / 20)))


def test_unset_keys_take_audiomentations_defaults():
    augmenter = build_batch_augmenter([{"name": "AddGaussianSNR"}, {"name": "Gain"}, {"name": "TimeMask"}])
    assert augmenter.transforms == [AddGaussianSNR(), Gain(), TimeMask()]
    assert (AddGaussianSNR().min_snr_db, Gain().max_gain_db, TimeMask().max_band_part) == (5.0, 12.0, 0.2)
    assert build_batch_augmenter([{"name": "Mixup"}]).transforms == [Mixup(p=0.5, alpha=0.4)]
    assert build_batch_augmenter([]) is None and build_batch_augmenter(None) is None


@pytest.mark.parametrize(
    ("specs", "message"),
    [
        ([{"name": "Reverb"}], r"^batch_augmentations\[0\]: no batch transform 'Reverb'; use one of AddGaussianSNR"),
        (
            [{"name": "Gain"}, {"name": "Gain", "max_gain": 3}],
            r"^batch_augmentations\[1\] \(Gain\): unknown key 'max_gain'",
        ),
        ([{"name": "Gain", "p": 2}], r"^batch_augmentations\[0\] \(Gain\): p=2.0 is not a probability"),
        (
            [{"name": "TimeMask", "max_band_part": 1.5}],
            r"^batch_augmentations\[0\] \(TimeMask\): min_band_part=0.01 and max_band_part=1.5 must",
        ),
        ([{"name": "AddGaussianSNR", "min_snr_db": "loud"}], r"^batch_augmentations\[0\] \(AddGaussianSNR\): every"),
        (
            [{"name": "Gain", "min_gain_db": 3, "max_gain_db": -3}],
            r"^batch_augmentations\[0\] \(Gain\): min_gain_db=3.0 and",
        ),
        (["Gain"], r"^batch_augmentations\[0\] must be a mapping with a `name`"),
        ([{"name": "Mixup", "alpha": 0}], r"^batch_augmentations\[0\] \(Mixup\): alpha=0.0 must be positive"),
        ([{"name": "Mixup", "beta": 1}], r"^batch_augmentations\[0\] \(Mixup\): unknown key 'beta'"),
    ],
)
def test_a_bad_entry_is_a_one_line_error_naming_it(specs, message):
    with pytest.raises(ValueError, match=message) as error:
        build_batch_augmenter(specs)
    assert "\n" not in str(error.value)


def test_models_without_waveform_input_are_refused():
    check_batch_input("input_values")
    with pytest.raises(ValueError, match="this model's input is input_features"):
        check_batch_input("input_features")


def mixed(specs: list, batch: dict, key: int = 0, num_labels=3) -> dict:
    augmenter = build_batch_augmenter(specs, seed=5, num_labels=num_labels)
    return augmenter(batch, augmenter.generator(torch.device("cpu"), 0, key, 0))


def test_mixup_mixes_each_chosen_item_with_a_partner_and_mixes_the_targets_alike():
    batch = padded_batch()
    batch["input_values"][1] *= 3  # tell the three clips apart by scale and length
    batch["input_values"][2] *= 7
    out = mixed([{"name": "Mixup", "p": 1.0, "alpha": 0.4}], batch, key=2)
    targets = out[LABEL_DISTRIBUTION]
    assert targets.shape == (3, 3) and torch.allclose(targets.sum(dim=1), torch.ones(3))
    assert out["labels"] is batch["labels"]  # the hard labels stay for metrics; the loss uses the distributions
    for row in range(3):
        lam = targets[row, row].item() if targets[row].max() < 1 else 1.0
        assert lam >= 0.5  # the item stays the larger part of its mixture
        partner = next((col for col in range(3) if col != row and targets[row, col] > 0), row)
        expected = lam * batch["input_values"][row] + (1 - lam) * batch["input_values"][partner]
        torch.testing.assert_close(out["input_values"][row], expected)
        union = torch.maximum(batch["attention_mask"][row], batch["attention_mask"][partner])
        assert torch.equal(out["attention_mask"][row], union)
    assert (targets.max(dim=1).values < 1).any()  # p=1 with three distinct clips: someone was mixed


def test_mixup_at_p_0_changes_nothing_but_hands_the_loss_one_hot_targets():
    batch = padded_batch()
    out = mixed([{"name": "Mixup", "p": 0.0}], batch)
    torch.testing.assert_close(out["input_values"], batch["input_values"])
    assert torch.equal(out[LABEL_DISTRIBUTION], torch.eye(3))


def test_mixup_mixes_existing_label_distributions_and_dimensional_values():
    batch = padded_batch()
    batch[LABEL_DISTRIBUTION] = torch.tensor([[0.5, 0.5, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    out = mixed([{"name": "Mixup", "p": 1.0, "alpha": 1.0}], batch, num_labels=None)
    assert torch.allclose(out[LABEL_DISTRIBUTION].sum(dim=1), torch.ones(3))
    dimensional = padded_batch()
    dimensional["labels"] = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    out = mixed([{"name": "Mixup", "p": 1.0, "alpha": 1.0}], dimensional, num_labels=None)
    assert LABEL_DISTRIBUTION not in out and out["labels"].shape == (3, 2)
    # each row is a convex mix of two rows: its second value minus its first stays 1
    torch.testing.assert_close(out["labels"][:, 1] - out["labels"][:, 0], torch.ones(3))


def test_mixup_draws_are_keyed_and_run_after_the_other_transforms():
    specs = [{"name": "Mixup", "p": 1.0}, {"name": "Gain", "p": 1.0, "min_gain_db": 6.0, "max_gain_db": 6.0}]
    batch = padded_batch()
    first, again = mixed(specs, batch, key=4), mixed(specs, padded_batch(), key=4)
    torch.testing.assert_close(first["input_values"], again["input_values"])
    gain = 10 ** (6 / 20)
    targets = first[LABEL_DISTRIBUTION]
    assert (targets.max(dim=1).values < 1).any()  # not the identity permutation: someone has a partner
    for row in range(3):
        lam = targets[row, row].item()
        partner = next((col for col in range(3) if col != row and targets[row, col] > 0), row)
        # gained first, then mixed: the partner's samples beyond the item's own length are gained too
        expected = gain * (lam * batch["input_values"][row] + (1 - lam) * batch["input_values"][partner])
        torch.testing.assert_close(first["input_values"][row], expected)
