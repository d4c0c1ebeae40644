"""The one model-file format: a header every reader checks before the payload."""

from __future__ import annotations

import pytest
import torch

from neurossl.train.model_file import load_model_file, save_model_file


def test_round_trip_and_refusals_name_the_file(tmp_path):
    path = tmp_path / "model.pt"
    save_model_file(path, "ndt", "mtm", "pretrain", {"state_dict": {"w": torch.ones(2)}})
    payload = load_model_file(path, "ndt", "pretrain")
    assert payload["method"] == "mtm" and torch.equal(payload["state_dict"]["w"], torch.ones(2))
    with pytest.raises(ValueError, match=r"model\.pt: a 'ndt' model, expected 'perceiver'"):
        load_model_file(path, "perceiver")
    with pytest.raises(ValueError, match=r"a 'pretrain' model, expected 'finetune'"):
        load_model_file(path, "ndt", "finetune")
    torch.save({"state_dict": {}}, tmp_path / "old.pt")
    with pytest.raises(ValueError, match=r"old\.pt: not a neurossl model file"):
        load_model_file(tmp_path / "old.pt", "ndt")
    torch.save({**payload, "version": 0}, tmp_path / "v0.pt")
    with pytest.raises(ValueError, match=r"v0\.pt: model file version 0"):
        load_model_file(tmp_path / "v0.pt", "ndt")
    with pytest.raises(FileNotFoundError, match=r"missing\.pt"):
        load_model_file(tmp_path / "missing.pt", "ndt")
    with pytest.raises(ValueError, match="header keys"):
        save_model_file(path, "ndt", "mtm", "pretrain", {"stage": "x"})
