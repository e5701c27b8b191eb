"""The README's MPI example runs as written (on the ranks of this job)."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

README = Path(__file__).resolve().parent.parent.parent / "README.md"


def test_readme_train_py_runs(comm, capsys):
    blocks = re.findall(r"```python\n(# train\.py:.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) == 1
    directory = comm.bcast(tempfile.mkdtemp(prefix="fastopt-readme-") if comm.rank == 0 else None, root=0)
    before = os.getcwd()
    os.chdir(directory)
    try:
        namespace = {"__name__": "__main__"}
        exec(compile(blocks[0], "README.md:train.py", "exec"), namespace)  # noqa: S102 - our own README
    finally:
        os.chdir(before)
    assert os.path.exists(os.path.join(directory, "checkpoint", "layout.json"))
    if comm.rank == 0:
        assert namespace["state"]["state"][0]["step"] == 200
        printed = capsys.readouterr().out
        losses = [float(v) for v in re.findall(r"loss (\d+\.\d+)", printed)]
        assert losses[-1] < 0.7 * losses[0]  # it learns (measured at step 150: 0.53x on 1 rank, 0.42x on 4)
