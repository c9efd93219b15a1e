"""predict (CSV per image) and ensemble (vote, mean)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from helpers import tiny_config
from mediscope.api import fit
from mediscope.errors import DataError
from mediscope.inference.ensemble import ensemble
from mediscope.tasks.validate import config_from_dict


@pytest.fixture(scope="module")
def trained(tiny_crops: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    runs = tmp_path_factory.mktemp("runs")
    return fit(config_from_dict(tiny_config(tiny_crops, runs, trainer={"max_epochs": 1}))).run_dir


def test_predict_folder_csv_and_files(cli, trained: Path, tiny_crops: Path, tmp_path: Path) -> None:
    folder = tiny_crops / "test" / "G-cocci"
    files = sorted(folder.glob("*.png"))
    manifest = tmp_path / "list.csv"
    pd.DataFrame({"path": [str(f) for f in files[:2]]}).to_csv(manifest, index=False)
    out = tmp_path / "pred.csv"
    result = cli(
        "predict",
        trained,
        "--input",
        folder,
        "--input",
        manifest,
        "--input",
        files[0],
        "--output",
        out,
    )
    assert result.code == 0, result.err
    table = pd.read_csv(out)
    assert list(table.columns) == ["path", "label", "G+bacilli", "G+cocci", "G-bacilli", "G-cocci"]
    assert len(table) == len(files) + 3
    assert table[["G+bacilli", "G+cocci", "G-bacilli", "G-cocci"]].sum(axis=1).round(4).eq(1).all()
    probs = table.iloc[:, 2:].to_numpy()
    assert (table["label"] == [table.columns[2 + i] for i in probs.argmax(axis=1)]).all()
    # the same image, whatever way it came in, gets the same prediction
    same = table[table["path"] == str(files[0])]
    assert len(same) == 3 and same.iloc[:, 2:].nunique().max() == 1
    # predictions equal the test evaluation of the same checkpoint
    ckpt = trained / "checkpoints" / "best.ckpt"
    cfg = trained / "config.yaml"
    again = cli("predict", cfg, "--checkpoint", ckpt, "--input", folder, "--output", tmp_path)
    assert again.code == 0, again.err
    assert (
        pd.read_csv(tmp_path / "predictions.csv")["label"].tolist()
        == table["label"][: len(files)].tolist()
    )


def test_predict_errors(cli, trained: Path, tmp_path: Path) -> None:
    missing = cli(
        "predict", trained, "--input", tmp_path / "none.png", "--output", tmp_path / "o.csv"
    )
    assert missing.code == 2 and "not an image, folder, CSV or NPZ file" in missing.err
    cfg = trained / "config.yaml"
    need = cli("predict", cfg, "--input", tmp_path, "--output", tmp_path / "o.csv")
    assert need.code == 2 and "--checkpoint is required" in need.err
    assert not (tmp_path / "o.csv").exists()


def write_preds(path: Path, rows: list[tuple[str, str, float, float, float]]) -> Path:
    frame = pd.DataFrame(rows, columns=["path", "label", "a", "b", "c"])
    frame.to_csv(path, index=False)
    return path


def test_majority_vote_with_mean_probability_tie_break(tmp_path: Path) -> None:
    one = write_preds(tmp_path / "1.csv", [("x", "a", 0.6, 0.3, 0.1), ("y", "a", 0.5, 0.4, 0.1)])
    two = write_preds(tmp_path / "2.csv", [("x", "b", 0.2, 0.7, 0.1), ("y", "b", 0.1, 0.8, 0.1)])
    three = write_preds(tmp_path / "3.csv", [("x", "b", 0.1, 0.5, 0.4), ("y", "c", 0.3, 0.3, 0.4)])
    vote = ensemble([one, two, three], method="vote", output=tmp_path / "v.csv")
    assert vote.set_index("path").loc["x", "label"] == "b"  # 2 votes of 3
    assert vote.set_index("path").loc["x", "votes"] == 2
    # y: a, b, c one vote each; b has the highest mean probability (0.5)
    assert vote.set_index("path").loc["y", "label"] == "b"
    mean = ensemble([one, three], method="mean", output=tmp_path / "m.csv")
    assert mean.set_index("path").loc["x", "label"] == "b"  # (0.3+0.5)/2 > (0.6+0.1)/2
    assert mean.set_index("path").loc["x", "b"] == pytest.approx(0.4)
    assert pd.read_csv(tmp_path / "m.csv").shape == (2, 5)


def test_ensemble_errors(cli, tmp_path: Path) -> None:
    one = write_preds(tmp_path / "1.csv", [("x", "a", 0.6, 0.3, 0.1)])
    other = write_preds(tmp_path / "2.csv", [("z", "a", 0.6, 0.3, 0.1)])
    with pytest.raises(DataError, match="images differ"):
        ensemble([one, other], method="vote", output=tmp_path / "o.csv")
    result = cli("ensemble", one, one, "--method", "median", "--output", tmp_path / "o.csv")
    assert result.code == 2 and "unknown method 'median'" in result.err
    assert not (tmp_path / "o.csv").exists()


def test_predict_npz_input(cli, trained: Path, tiny_crops: Path, tmp_path: Path) -> None:
    import numpy as np
    from PIL import Image

    files = sorted((tiny_crops / "test").rglob("*.png"))[:5]
    images = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])
    np.savez(tmp_path / "batch.npz", images=images, labels=np.zeros(len(files), dtype=np.int64))
    out = tmp_path / "npz.csv"
    result = cli("predict", trained, "--input", tmp_path / "batch.npz", "--output", out)
    assert result.code == 0, result.err
    table = pd.read_csv(out)
    assert len(table) == 5 and table["path"].str.contains("batch.npz::images::").all()
    inputs = [x for f in files for x in ("--input", f)]
    by_file = cli("predict", trained, *inputs, "--output", tmp_path / "f.csv")
    assert by_file.code == 0, by_file.err
    same = pd.read_csv(tmp_path / "f.csv")
    assert np.allclose(same.iloc[:, 2:].to_numpy(), table.iloc[:, 2:].to_numpy(), atol=1e-5)


@pytest.mark.parametrize("labels", [None, -1])
def test_predict_npz_without_labels(
    cli, trained: Path, tiny_crops: Path, tmp_path: Path, labels: int | None
) -> None:
    """Prediction needs no labels: an npz of images only, or with -1 for unknown."""
    import numpy as np
    from PIL import Image

    files = sorted((tiny_crops / "test").rglob("*.png"))[:3]
    images = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])
    arrays = {"images": images}
    if labels is not None:
        arrays["labels"] = np.full(len(files), labels)
    np.savez(tmp_path / "unlabelled.npz", **arrays)  # type: ignore[arg-type]
    out = tmp_path / "p.csv"
    result = cli("predict", trained, "--input", tmp_path / "unlabelled.npz", "--output", out)
    assert result.code == 0, result.err
    table = pd.read_csv(out)
    assert len(table) == 3 and table["path"].str.contains("unlabelled.npz::images::").all()
