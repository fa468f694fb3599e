"""Building the model, the Trainer and what it needs: callbacks, checkpoints, several processes, LoRA, CPU memory."""
