"""Post-training: SFT, RL (GRPO family), reward model, RLHF, DPO and their shared loop."""
