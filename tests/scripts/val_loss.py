#!/usr/bin/python3
"""Prints the validation loss of a sample-run checkpoint as PyTorch computes it with the fixture's own
forward: bitnet_reference.load_checkpoint + window_loss over the fixed windows of VAL (make_run.py's
definition). Usage: val_loss.py CKPT VAL.bin [WINDOWS]: with WINDOWS, only the first WINDOWS windows (the
claims' windows of a resurrection that searched; the later ones scored its candidates)."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "sample_ckpts"))
import bitnet_reference as ref  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)
model, ckpt = ref.load_checkpoint(sys.argv[1])
seq_len = ckpt["config"]["train"]["seq_len"] if "config" in ckpt else 64
tokens = ref.read_tokens(sys.argv[2])
if len(sys.argv) > 3:
    tokens = tokens[: int(sys.argv[3]) * seq_len + 1]  # windows start every seq_len tokens and take seq_len + 1
print(repr(ref.window_loss(model, tokens, seq_len)))
