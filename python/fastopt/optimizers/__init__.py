"""One module per optimizer: its torch.optim-style class and its functional
form side by side (the rule itself is one C++ header in csrc/optimizers/ and
one function of :mod:`fastopt.reference`). The public faces are
:mod:`fastopt.optim` and :mod:`fastopt.functional`."""
