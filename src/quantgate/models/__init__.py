"""Model architectures quantgate trains for the demo, and the pyfunc wrapper it logs.

Any ``nn.Module`` can be governed: the wrapper carries the module plus the preprocessing that
turns raw rows (tabular) or raw text into tensors, so a logged model predicts on raw inputs.
"""
