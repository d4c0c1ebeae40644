"""Simple baselines (ridge, forecasters, oracle) that need no pretrained backbone."""
