"""Checkpoint folders: nothing in a run dir is unpickled (a planted payload never runs), and the
portable `latest.pt` always holds the step the training state resumes from, even after a kill
between the two writes."""

from __future__ import annotations

import importlib.util
import pickle
from pathlib import Path

import pytest
import torch

from synthdata.core.checkpoint import load_checkpoint
from synthdata.core.contract import CheckpointError
from synthdata.core.run_dir import CheckpointFolder, remove_inside
from synthdata.core.runtime import make_accelerator

_spec = importlib.util.spec_from_file_location("training_tests", Path(__file__).parents[1] / "generation" / "test_training.py")
training_tests = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(training_tests)  # the stub dataset and tiny settings of the stage tests
run, TINY = training_tests.run, training_tests.TINY


class Payload:
    """Unpickling this creates a file: proof that code from the run dir ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_planted_pickle_in_the_state_is_refused_and_never_runs(tmp_path, capsys):
    run(tmp_path, "layout", 2)
    state = tmp_path / "run" / "checkpoints" / "layout" / "state"
    marker = tmp_path / "pwned"
    (state / "custom_checkpoint_0.pkl").write_bytes(pickle.dumps(Payload(marker)))
    code = training_tests.main(["recipe=toy", *TINY, "stage=layout", "train.steps=4", f"run_dir={tmp_path / 'run'}"])
    assert code == 2
    err = capsys.readouterr().err
    assert "custom_checkpoint_0.pkl" in err and "never unpickles" in err
    assert not marker.exists()


def test_planted_payload_in_an_extra_state_file_is_refused(tmp_path):
    run(tmp_path, "layout", 2)
    folder = tmp_path / "run" / "checkpoints" / "layout"
    marker = tmp_path / "pwned"
    torch.save({"payload": Payload(marker)}, folder / "state" / "extra_ema.pt")
    with pytest.raises(CheckpointError, match="extra_ema.pt"):
        run(tmp_path, "layout", 4)
    assert not marker.exists()


def test_ema_is_saved_as_plain_tensors_and_no_pickle_is_written(tmp_path):
    run(tmp_path, "layout", 2)
    state = tmp_path / "run" / "checkpoints" / "layout" / "state"
    assert not list(state.glob("*.pkl")) or all(p.name.startswith("random_states") for p in state.glob("*.pkl"))
    ema = torch.load(state / "extra_ema.pt", weights_only=True)
    assert ema and all(torch.is_tensor(v) or isinstance(v, (int, float)) for v in _leaves(ema))


def _leaves(tree):
    if isinstance(tree, dict):
        for v in tree.values():
            yield from _leaves(v)
    else:
        yield tree


def test_kill_between_portable_and_state_writes_resumes_to_a_consistent_pair(tmp_path, monkeypatch):
    """Fail the state write of the last checkpoint (after latest.pt): the rerun finishes the run and
    latest.pt and the state agree on the final step."""
    real = CheckpointFolder._save_state

    def failing(self, progress):
        if progress["step"] == 4:
            raise KeyboardInterrupt("killed between the two writes")
        real(self, progress)

    monkeypatch.setattr(CheckpointFolder, "_save_state", failing)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, "layout", 4)
    monkeypatch.setattr(CheckpointFolder, "_save_state", real)
    folder = tmp_path / "run" / "checkpoints" / "layout"
    assert load_checkpoint(folder / "latest.pt")["step"] == 4  # written first
    summary = run(tmp_path, "layout", 4)  # the state says 2: steps 3-4 again, deterministically
    assert summary["steps"] == 2
    assert load_checkpoint(folder / "latest.pt")["step"] == 4
    assert '"step": 4' in (folder / "state" / "progress.json").read_text()


def test_stale_latest_is_repaired_from_the_state_on_start(tmp_path):
    """A run dir whose latest.pt is older than its state (the order of earlier versions, or a copy
    gone wrong) is repaired on the next start instead of being sampled stale."""
    run(tmp_path, "layout", 2)
    folder = tmp_path / "run" / "checkpoints" / "layout"
    stale = (folder / "latest.pt").read_bytes()  # step 2
    run(tmp_path, "layout", 4)
    assert not (folder / "previous.pt").exists() and not (folder / "state.previous").exists()  # finished
    final = load_checkpoint(folder / "latest.pt")
    (folder / "latest.pt").write_bytes(stale)
    assert load_checkpoint(folder / "latest.pt")["step"] == 2
    with pytest.warns(UserWarning, match="holds step 2"):
        summary = run(tmp_path, "layout", 4)
    assert summary["steps"] == 0  # nothing to train...
    repaired = load_checkpoint(folder / "latest.pt")  # ...but latest.pt is the state's step 4 again
    assert repaired["step"] == 4
    for k, v in final["ema"].items():
        assert torch.equal(v, repaired["ema"][k]), k


def test_folder_without_state_resumes_nothing(tmp_path):
    acc = make_accelerator(mixed_precision="no")
    assert CheckpointFolder(acc, tmp_path / "none").resume() is None


def test_checkpoint_chunks_end_at_checkpoints_and_resume_in_the_same_places():
    from synthdata.core.run_dir import checkpoint_chunks

    assert list(checkpoint_chunks(0, 10, 4)) == [(0, 4), (4, 8), (8, 10)]
    assert list(checkpoint_chunks(4, 10, 4)) == [(4, 8), (8, 10)]  # a resume starts where a chunk did
    assert list(checkpoint_chunks(5, 10, 4)) == [(5, 8), (8, 10)]
    assert list(checkpoint_chunks(10, 10, 4)) == []


def test_exact_batches_passes_again_when_a_loader_rounds_down_and_refuses_an_empty_one():
    from synthdata.core.run_dir import exact_batches

    assert list(exact_batches([1, 2], 5)) == [1, 2, 1, 2, 1]
    assert list(exact_batches([1, 2, 3], 2)) == [1, 2]
    with pytest.raises(RuntimeError, match="no batch"):
        list(exact_batches([], 1))


def _victim(tmp_path: Path) -> Path:
    """A folder outside the run dir holding what the issue 34 rerun deleted."""
    victim = tmp_path / "victim"
    (victim / "state-keep").mkdir(parents=True)
    (victim / "state-keep" / "photo.png").write_bytes(b"keep")
    (victim / "previous.pt").write_bytes(b"keep")
    return victim


def test_remove_inside_never_follows_a_link_or_leaves_its_root(tmp_path):
    victim, run = _victim(tmp_path), tmp_path / "run"
    folder = run / "checkpoints" / "segmenter"
    (folder / "state").mkdir(parents=True)
    (folder / "state" / "x.safetensors").write_bytes(b"x")
    (folder / "state" / "photos").symlink_to(victim)  # a link inside a deleted folder: removed as a link
    (run / "checkpoints" / "photos").symlink_to(victim)
    (folder / "state.previous").symlink_to(victim / "state-keep")  # the path itself a link: removed as one
    with pytest.warns(UserWarning, match="is a symbolic link"):
        assert not remove_inside(run / "checkpoints" / "photos" / "state-keep", run)  # a link on the way
    with pytest.warns(UserWarning, match="not inside"):
        assert not remove_inside(victim / "previous.pt", run)
    with pytest.warns(UserWarning, match="not inside"):
        assert not remove_inside(run / ".." / "victim", run)
    assert remove_inside(folder / "state", run) and not (folder / "state").exists()
    assert remove_inside(folder / "state.previous", folder) and not (folder / "state.previous").is_symlink()
    assert not remove_inside(folder / "absent", run)
    assert (victim / "state-keep" / "photo.png").read_bytes() == b"keep"
    assert (victim / "previous.pt").read_bytes() == b"keep"
    assert (run / "checkpoints" / "photos").is_symlink()

