"""The model card and publishing a run to the Hub."""
