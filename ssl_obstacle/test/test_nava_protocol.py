"""
The protocol of Nava et al. 2019: their split, batch drawing, test-time flip and bootstrap.

The bootstrap is checked against a transcription of their ``test.py`` loop (with a
pairwise AUC, independent of ours), and ``train``/``evaluate --protocol nava2019`` end to
end on a tiny folder written in their layout and imported.
"""

import json

import h5py
import numpy as np
import pytest

from ssl_obstacle.cli import main
from ssl_obstacle.core.checkpoint import build_model, load_checkpoint
from ssl_obstacle.core.dataset import read_dataset
from ssl_obstacle.core.model import predict_probabilities
from ssl_obstacle.core.nava_protocol import (find_recordings, mirror_average, paper_batches,
                                             paper_bootstrap, paper_orientation,
                                             paper_test_flip, ProtocolError, split_recordings,
                                             summarise_rounds)
from test_idsia_import import bgr_frames, intensity_rows, write_idsia_file
from test_train_evaluate import is_png
import torch

torch.set_num_threads(1)  # 2 threads spin badly when other tests share the CPUs


# ---------------------------------------------------------------------- split
def test_the_split_is_recordings_0_to_8_against_9_and_10():
    recordings = {i: f'bag{i}.h5' for i in range(12)}
    train, test = split_recordings(recordings)
    assert [i for i, _ in train] == list(range(9)) and [i for i, _ in test] == [9, 10]
    assert [p for _, p in test] == ['bag9.h5', 'bag10.h5']
    del recordings[10], recordings[3]
    with pytest.raises(ProtocolError, match='missing: 3, 10'):
        split_recordings(recordings)


def test_recordings_are_found_by_their_attribute_not_their_name(tmp_path):
    for index, name in ((4, 'x.h5'), (9, 'y.h5')):
        with h5py.File(tmp_path / name, 'w') as file:
            file.attrs['recording'] = index
    assert find_recordings([tmp_path]) == {4: str(tmp_path / 'x.h5'),
                                           9: str(tmp_path / 'y.h5')}
    assert find_recordings([tmp_path / 'y.h5']) == {9: str(tmp_path / 'y.h5')}
    with pytest.raises(ProtocolError, match='both recording 9'):
        find_recordings([tmp_path, tmp_path / 'y.h5'])
    with h5py.File(tmp_path / 'plain.h5', 'w'):
        pass
    with pytest.raises(ProtocolError, match='no "recording" attribute'):
        find_recordings([tmp_path])
    (tmp_path / 'empty').mkdir()
    with pytest.raises(ProtocolError, match=r'holds no \.h5 files'):
        find_recordings([tmp_path / 'empty'])


# ---------------------------------------------------------------------- batches
def their_generator(lengths, batch_size, choices):
    """Their unified_model.generator's index arithmetic, fed the recordings it picks."""
    counts = [0] * len(lengths)
    for index in choices:
        start = counts[index]
        yield index, start, min(start + batch_size, lengths[index])
        counts[index] += batch_size
        if counts[index] + batch_size > lengths[index]:
            counts[index] = 0


def test_batches_are_consecutive_blocks_of_a_uniformly_chosen_recording():
    lengths, batch = [10, 3, 25], 4
    offsets = np.cumsum([0, *lengths[:-1]])
    drawn = list(zip(range(300), paper_batches(lengths, batch, np.random.default_rng(5))))
    again = [b for _, b in zip(range(300), paper_batches(lengths, batch,
                                                         np.random.default_rng(5)))]
    assert all(np.array_equal(a, b) for (_, a), b in zip(drawn, again))  # seeded
    other = [b for _, b in zip(range(300), paper_batches(lengths, batch,
                                                         np.random.default_rng(6)))]
    assert not all(np.array_equal(a, b) for (_, a), b in zip(drawn, other))
    choices = [int(np.searchsorted(offsets, rows[0], side='right') - 1) for _, rows in drawn]
    expected = their_generator(lengths, batch, choices)
    for (_, rows), (index, start, end) in zip(drawn, expected):
        np.testing.assert_array_equal(rows, np.arange(start, end) + offsets[index])
    # Recording 0 (10 frames) gives [0:4], [4:8], then rewinds: its rows 8 and 9 are never
    # drawn; recording 1 (3 frames, under a batch) gives all three every time.
    seen = np.unique(np.concatenate([rows for _, rows in drawn]))
    assert 8 not in seen and 9 not in seen and {10, 11, 12} <= set(seen)
    # Uniform over recordings, whatever their size.
    share = np.bincount(choices, minlength=3) / len(choices)
    assert (np.abs(share - 1 / 3) < 0.08).all(), share


# ---------------------------------------------------------------------- flip
def test_paper_flip_mirrors_chosen_frames_with_their_labels():
    images = np.arange(4 * 2 * 3 * 1).reshape(4, 2, 3, 1)  # (N, H, W, C)
    labels = np.arange(4 * 3 * 2, dtype=np.float64).reshape(4, 3, 2)  # (N, S, D)
    labels[0, 0, 1] = np.nan
    original = images.copy(), labels.copy()
    out_images, out_labels, flipped = paper_test_flip(images, labels,
                                                      np.random.default_rng(1))
    np.testing.assert_array_equal(flipped, np.random.default_rng(1).random(4) < 0.5)
    assert 0 < flipped.sum() < 4
    for n in range(4):
        if flipped[n]:
            np.testing.assert_array_equal(out_images[n, :, :, 0], images[n, :, ::-1, 0])
            np.testing.assert_array_equal(out_labels[n], labels[n, ::-1])  # right ↔ left
        else:
            np.testing.assert_array_equal(out_images[n], images[n])
            np.testing.assert_array_equal(out_labels[n], labels[n])
    np.testing.assert_array_equal(images, original[0])  # inputs untouched
    np.testing.assert_array_equal(labels, original[1])
    # Frame 0's unknown cell (left sensor) moves to the right sensor when mirrored.
    assert np.isnan(out_labels[0, 2 if flipped[0] else 0, 1])


def test_mirror_average_mirrors_the_second_opinion_back():
    images = np.zeros((2, 4, 6, 3), np.uint8)
    images[0, :, :2] = 200  # something bright on the left
    images[1, :, 4:] = 200  # on the right

    def thirds(batch):
        """One sensor per third of the image, left to right: its mean brightness / 255."""
        columns = np.array_split(np.arange(batch.shape[2]), 3)
        return np.stack([batch[:, :, c].mean(axis=(1, 2, 3)) / 255 for c in columns],
                        axis=1)[:, :, None]

    direct = thirds(images)
    np.testing.assert_allclose(mirror_average(thirds, images), direct)  # symmetric model

    def biased(batch):
        """Says 'obstacle on the left' whatever it sees."""
        out = np.zeros((len(batch), 3, 1))
        out[:, 0] = 1.0
        return out

    np.testing.assert_allclose(mirror_average(biased, images)[:, :, 0],
                               [[0.5, 0.0, 0.5]] * 2)


# ---------------------------------------------------------------------- bootstrap
def pairwise_auc(scores, targets):
    """AUC by counting pairs (ties half): independent of metrics.roc_auc."""
    positive, negative = scores[targets == 1], scores[targets == 0]
    if not len(positive) or not len(negative):
        raise ValueError('one class')
    greater = (positive[:, None] > negative[None, :]).sum()
    ties = (positive[:, None] == negative[None, :]).sum()
    return (greater + 0.5 * ties) / (len(positive) * len(negative))


def their_rounds(prediction, test_y, mask, rounds, rng, n_dist):
    """Their test.py loop, transcribed (columns i * 5 + j, rows n_dist - 1 - i)."""
    out = []
    for _ in range(rounds):
        aucs = np.zeros([n_dist, 5])
        for i in range(n_dist):
            for j in range(5):
                indices = np.where(mask[:, i * 5 + j])
                if len(indices[0]) > 0:
                    indices = (rng.choice(indices[0], len(indices[0])), )
                try:
                    auc = pairwise_auc(prediction[indices[0], i * 5 + j],
                                       test_y[indices[0], i * 5 + j])
                except ValueError:
                    auc = 0.5
                aucs[n_dist - 1 - i, j] = auc
        out.append(aucs)
    return np.array(out)


def test_bootstrap_is_their_test_loop_seeded_13():
    rng = np.random.default_rng(0)
    frames, n_dist = 60, 4
    labels = (rng.random((frames, 5, n_dist)) < 0.4).astype(np.float64)
    labels[rng.random(labels.shape) < 0.3] = np.nan
    labels[:, 4, 3] = np.nan  # never known
    labels[:, 3, 2] = np.where(np.isnan(labels[:, 3, 2]), np.nan, 1.0)  # one class
    probabilities = np.clip(0.3 * labels + 0.7 * rng.random(labels.shape), 0, 1)
    probabilities = np.nan_to_num(probabilities, nan=0.3)
    probabilities[:5] = 0.5  # some ties
    ours = paper_bootstrap(probabilities, labels, 20, np.random.RandomState(13))
    assert ours.shape == (20, 5, n_dist)
    # Their arrays: (N, 5·D) distance-major, -1 unknown, mask y != -1.
    test_y = np.nan_to_num(labels, nan=-1.0).transpose(0, 2, 1).reshape(frames, -1)
    prediction = probabilities.transpose(0, 2, 1).reshape(frames, -1)
    theirs = their_rounds(prediction, test_y, test_y != -1.0, 20, np.random.RandomState(13),
                          n_dist)
    np.testing.assert_allclose(ours.transpose(0, 2, 1)[:, ::-1, :], theirs, atol=1e-12)
    assert (ours[:, 4, 3] == 0.5).all() and (ours[:, 3, 2] == 0.5).all()
    again = paper_bootstrap(probabilities, labels, 20, np.random.RandomState(13))
    np.testing.assert_array_equal(ours, again)
    other = paper_bootstrap(probabilities, labels, 20, np.random.RandomState(14))
    assert not np.array_equal(ours, other)
    assert len(np.unique(ours[:, 0, 0])) > 3  # the rounds differ: they resample


def test_unknown_frames_are_never_resampled():
    labels = np.full((40, 1, 1), np.nan)
    labels[:20, 0, 0] = np.tile([0.0, 1.0], 10)
    probabilities = labels.copy()
    probabilities[20:] = 1 - np.arange(20)[:, None, None] % 2  # would ruin a pooled AUC
    rounds = paper_bootstrap(probabilities, labels, 50, np.random.RandomState(13))
    assert set(np.unique(rounds)) <= {1.0, 0.5} and (rounds == 1.0).mean() > 0.9


def test_rounds_of_both_recordings_are_pooled_into_one_mean_and_std():
    first = np.full((3, 2, 2), 0.6)
    second = np.full((3, 2, 2), 0.8)
    second[:, 0, 1] = [0.5, 0.7, 0.9]
    scores = summarise_rounds({9: first, 10: second})
    assert scores.rounds == 6
    np.testing.assert_allclose(scores.mean[1, 1], 0.7)
    np.testing.assert_allclose(scores.mean[0, 1], (0.6 * 3 + 0.5 + 0.7 + 0.9) / 6)
    np.testing.assert_allclose(scores.std[1, 1], 0.1)
    np.testing.assert_allclose(scores.by_recording[10][1, 1], 0.8)
    grid = np.array([[1, 2, 3], [4, 5, 6]])  # (S=2, D=3)
    np.testing.assert_array_equal(paper_orientation(grid), [[3, 6], [2, 5], [1, 4]])


# ---------------------------------------------------------------------- end to end
def tiny_paper_folder(tmp_path, distances=3):
    """Write 11 tiny recordings in their layout and import them; return the folder."""
    rng = np.random.default_rng(7)
    content = {}
    for index in range(11):
        count = 9 + index
        frames = bgr_frames(count, rng)
        rows = intensity_rows(count, distances, rng)
        content[index] = (frames, rows)
    write_idsia_file(tmp_path / 'theirs.h5', content)
    folder = tmp_path / 'paper'
    assert main(['import-idsia', str(tmp_path / 'theirs.h5'), '--out', str(folder),
                 '--no-progress']) == 0
    return folder


def test_train_and_evaluate_with_the_protocol_end_to_end(tmp_path, capsys):
    folder = tiny_paper_folder(tmp_path)
    model_path = tmp_path / 'model.pt'
    code = main(['train', '--protocol', 'nava2019', str(folder), '--out', str(model_path),
                 '--epochs', '2', '--steps-per-epoch', '3', '--batch-size', '8',
                 '--no-progress'])
    out = capsys.readouterr().out
    assert code == 0, out
    assert 'training on recordings 0-8' in out and 'kept the last model' in out
    checkpoint = load_checkpoint(model_path)
    params = checkpoint['params']
    assert params['protocol'] == 'nava2019' and params['lr'] == pytest.approx(2e-4)
    assert params['steps_per_epoch'] == 3 and params['implied_blocking'] is False
    assert [s[0] for s in params['train_sources']] == [str(folder / f'bag{i}.h5')
                                                       for i in range(9)]
    assert params['val_sources'] == []
    assert checkpoint['counters']['updates'] == 6

    report_dir = tmp_path / 'report'
    args = ['evaluate', '--protocol', 'nava2019', '--model', str(model_path), str(folder),
            '--out', str(report_dir), '--bootstrap', '7']
    assert main(args) == 0
    out = capsys.readouterr().out
    assert 'AUC x 100 by the nava2019 protocol' in out and 'mean AUC' in out
    report = json.loads((report_dir / 'report.json').read_text())
    section = report['nava2019']
    assert section['test_recordings'] == [9, 10]
    assert section['frames'] == {'9': 18, '10': 19} and report['frames'] == 37
    assert report['datasets'] == [str(folder / 'bag9.h5'), str(folder / 'bag10.h5')]
    assert np.asarray(section['auc_mean']).shape == (5, 3)
    assert section['table']['distances_cm'] == [2.0, 1.0, 0.0]
    assert section['bootstrap']['rounds_per_recording'] == 7
    assert 0 < section['mirrored_frames']['9'] < 18
    # The same numbers as the protocol's functions applied by hand.
    model = build_model(checkpoint)
    flip_rng, boot_rng = np.random.default_rng(0), np.random.RandomState(13)
    rounds = {}
    for index in (9, 10):
        data = read_dataset(folder / f'bag{index}.h5')
        images, labels, _ = paper_test_flip(data['images'], data['labels'], flip_rng)
        rounds[index] = paper_bootstrap(predict_probabilities(model, images), labels, 7,
                                        boot_rng)
    np.testing.assert_allclose(section['auc_mean'], summarise_rounds(rounds).mean, atol=1e-6)
    table = (report_dir / 'auc_table_nava2019.csv').read_text().splitlines()
    assert table[0].startswith('distance_cm,left_auc,center_left_auc')
    assert [row.split(',')[0] for row in table[1:]] == ['2', '1', '0']
    for name in ('auc_heatmap_nava2019.png', 'auc_vs_distance_nava2019.png', 'auc_heatmap.png'):
        assert is_png(report_dir / name), name
    # Repeatable: the same report again, and another flip gives other numbers.
    assert main([*args, '--out', str(tmp_path / 'again')]) == 0
    again = json.loads((tmp_path / 'again' / 'report.json').read_text())['nava2019']
    assert again['auc_mean'] == section['auc_mean']
    assert main([*args, '--out', str(tmp_path / 'mean'), '--flip', 'mean']) == 0
    mean = json.loads((tmp_path / 'mean' / 'report.json').read_text())['nava2019']
    assert mean['flip'] == 'mean' and mean['auc_mean'] != section['auc_mean']
    capsys.readouterr()


def test_protocol_options_that_do_not_apply_are_refused(tmp_path, capsys):
    folder = tiny_paper_folder(tmp_path)
    model = str(tmp_path / 'm.pt')
    assert main(['train', '--protocol', 'nava2019', str(folder), '--out', model,
                 '--val-fraction', '0.1']) == 2
    assert 'no validation split' in capsys.readouterr().err
    assert main(['train', str(folder / 'bag0.h5'), '--out', model,
                 '--steps-per-epoch', '3']) == 2
    assert '--steps-per-epoch is for --protocol nava2019' in capsys.readouterr().err
    (folder / 'bag10.h5').unlink()
    assert main(['train', '--protocol', 'nava2019', str(folder), '--out', model]) == 2
    assert 'missing: 10' in capsys.readouterr().err
    assert main(['evaluate', '--model', model, str(folder / 'bag0.h5'), '--out',
                 str(tmp_path / 'r'), '--flip', 'mean']) == 2
    assert '--flip is for --protocol nava2019' in capsys.readouterr().err
    assert not (tmp_path / 'm.pt').exists()
