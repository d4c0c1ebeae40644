"""Training progress: plain lines in a log file, a bar only on a terminal."""

from __future__ import annotations

import io
import logging
import math

import pytest

from neurossl.rule_logging import rule_logging
from neurossl.train.progress import Progress, format_line


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_line_has_step_loss_valid_rate_eta():
    line = format_line(50, 200, 1.23456, math.nan, 2.5)
    assert line == "train step 50/200 loss 1.2346 valid_loss - 2.50 steps/s ETA 01:00"
    assert "valid_loss 0.5000" in format_line(50, 200, 1.0, 0.5, 2.5)
    assert format_line(0, 10, 1.0, math.nan, 0.0).endswith("ETA ?")


def test_log_file_gets_lines_every_n_steps_and_no_bar(tmp_path, caplog):
    log = tmp_path / "job.log"
    stream = io.StringIO()  # not a terminal, like stderr redirected by a rule's shell
    with rule_logging(log):
        progress = Progress(total=10, every=4, stream=stream)
        for step in range(1, 11):
            progress.update(step, loss=1.0 / step, valid_loss=0.7 if step == 8 else math.nan)
        progress.close()
    text = log.read_text()
    lines = [line for line in text.splitlines() if " step " in line]
    assert [line.split(" step ")[1].split()[0] for line in lines] == ["4/10", "8/10", "10/10"]
    assert "valid_loss -" in lines[0] and "valid_loss 0.7000" in lines[2]
    assert "steps/s ETA" in lines[2]
    assert "\r" not in text and stream.getvalue() == ""


def test_early_stop_logs_the_last_step_and_other_ranks_stay_silent(caplog):
    caplog.set_level(logging.INFO, logger="neurossl")
    progress = Progress(total=100, initial=20, every=50, stream=io.StringIO())
    for step in range(21, 31):
        progress.update(step, loss=0.5)
    progress.close()
    assert [r.getMessage().split()[2] for r in caplog.records] == ["30/100"]
    caplog.clear()
    silent = Progress(total=10, every=1, enabled=False, stream=io.StringIO())
    silent.update(1, loss=0.5)
    silent.close()
    assert caplog.records == []


@pytest.mark.parametrize("bar", [True, False])
def test_bar_only_on_a_terminal_when_asked(bar):
    stream = Terminal()
    progress = Progress(total=3, every=100, bar=bar, stream=stream)
    for step in (1, 2, 3):
        progress.update(step, loss=0.1)
    progress.close()
    assert ("3/3" in stream.getvalue()) is bar


def test_engine_logs_progress_lines(tmp_path, caplog):
    """The engine reports through this module: one line per ``log_every`` steps."""
    import torch
    from test_loader import make_dataset

    from neurossl.data.loader import WindowDataset, make_loader
    from neurossl.models.ndt import NDT, make_config
    from neurossl.objectives.mtm import SCHEMES, MaskedModelingLoss, MaskRatios
    from neurossl.train.engine import TrainConfig, train

    torch.set_num_threads(1)
    paths, splits = make_dataset(tmp_path / "data", n_sessions=1)
    sessions = sorted(paths)
    train_set = WindowDataset(paths, splits, "train", sessions)
    valid_set = WindowDataset(paths, splits, "valid", sessions)
    model = NDT(
        make_config("tiny", n_prompts=4), {s: int(train_set.regions(s).size) for s in sessions}
    )
    loss = MaskedModelingLoss(SCHEMES, MaskRatios(), True, train_set.vocab.session_ids)
    config = TrainConfig(max_steps=6, warmup_steps=1, eval_every=3, log_every=4)
    caplog.set_level(logging.INFO, logger="neurossl")
    train(model, loss, make_loader(train_set, 8, True, 0, True),
          make_loader(valid_set, 8, False, 0, True), config, tmp_path / "ckpt",
          tmp_path / "log.csv", "cpu")  # fmt: skip
    lines = [r.getMessage() for r in caplog.records if " step " in r.getMessage()]
    assert [line.split()[2] for line in lines] == ["4/6", "6/6"]
    assert "valid_loss -" not in lines[0]  # step 3's validation loss is carried forward
