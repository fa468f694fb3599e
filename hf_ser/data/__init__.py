"""From audio files to a checked, split `datasets.DatasetDict`: decoding, corpora, augmentation, transforms, collation."""
