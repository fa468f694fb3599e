"""Many runs of one training function: cross-validation, seeds, comparison."""
