"""Stage 7: red-team prompts, safety training, the safety merge and harm evaluation."""
