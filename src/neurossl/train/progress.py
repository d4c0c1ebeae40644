"""What a person watching a training job sees: a bar on a terminal, plain lines in a log.

A job under Snakemake writes its stderr to a log file, where a carriage-return bar turns
into one garbled line per refresh; so the bar is drawn only when stderr is a terminal,
and every job, in every family, logs the same plain line every ``every`` steps (and at
its last step) through the ``neurossl`` logger, which the rule's log file receives.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from typing import SupportsFloat, TextIO

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

logger = logging.getLogger("neurossl")


def format_line(
    step: int, total: int, loss: float, valid_loss: float, rate: float, desc: str = "train"
) -> str:
    """``train step 50/200 loss 1.2345 valid_loss 1.3012 3.2 steps/s ETA 0:47``."""
    valid = f"{valid_loss:.4f}" if math.isfinite(valid_loss) else "-"
    eta = tqdm.format_interval((total - step) / rate) if rate > 0 else "?"
    return (
        f"{desc} step {step}/{total} loss {loss:.4f} valid_loss {valid} "
        f"{rate:.2f} steps/s ETA {eta}"
    )


class Progress:
    """Progress of one training run from step ``initial`` (a resumed run) to ``total``.

    ``enabled`` is false on every DDP rank but the first, so a run reports once.
    """

    def __init__(
        self,
        total: int,
        initial: int = 0,
        every: int = 50,
        enabled: bool = True,
        bar: bool = True,
        desc: str = "train",
        stream: TextIO | None = None,
    ) -> None:
        stream = sys.stderr if stream is None else stream
        self.total, self.every, self.enabled, self.desc = total, max(1, every), enabled, desc
        self.initial, self.step, self.started = initial, initial, time.perf_counter()
        self.valid_loss, self.logged = math.nan, initial
        self.loss: SupportsFloat = math.nan
        on_terminal = bool(getattr(stream, "isatty", lambda: False)())
        self.bar = tqdm(
            total=total,
            initial=initial,
            desc=desc,
            file=stream,
            disable=not (enabled and bar and on_terminal),
        )
        # Log records would break the bar's line; tqdm.write prints them above it.
        self._redirect = logging_redirect_tqdm([logger]) if not self.bar.disable else None
        if self._redirect is not None:
            self._redirect.__enter__()

    def update(self, step: int, loss: SupportsFloat, valid_loss: float = math.nan) -> None:
        """Record that ``step`` finished with training ``loss`` (and a validation loss).

        ``loss`` may be a tensor: it is read only when shown, so a GPU loop that calls
        this every step synchronises only every ``every`` steps (or for a drawn bar).
        """
        if math.isfinite(valid_loss):
            self.valid_loss = valid_loss
        if not self.enabled:
            return
        self.step, self.loss = step, loss
        if not self.bar.disable:
            self.bar.set_postfix(loss=f"{float(loss):.4f}", refresh=False)
            self.bar.update(step - self.bar.n)
        if step % self.every == 0 or step == self.total:
            self._log()

    def _log(self) -> None:
        rate = self.rate()
        loss = float(self.loss)
        logger.info(format_line(self.step, self.total, loss, self.valid_loss, rate, self.desc))
        self.logged = self.step

    def rate(self) -> float:
        """Steps per second of this process (a resumed run counts from where it resumed)."""
        elapsed = time.perf_counter() - self.started
        return (self.step - self.initial) / elapsed if elapsed > 0 else 0.0

    def close(self) -> None:
        """Finish the bar; a run stopped early logs the step it stopped at."""
        if self.enabled and self.step > self.logged:
            self._log()
        self.bar.close()
        if self._redirect is not None:
            self._redirect.__exit__(None, None, None)
            self._redirect = None
