"""
``import-idsia``: the dataset of Nava et al. 2019, written here exactly as their code does.

Their ``code/preprocess.py`` (idsia-robotics/learning-long-range-perception) is mirrored by
:func:`write_idsia_file`: OpenCV's BGR uint8 frames at 80×64, each standardised with
``(x - x.mean()) / x.std()``, stored as float64 ``bag{i}_x``; ``bag{i}_y`` float64 with the
columns ``t_{d}_prox_{lx,cl,cx,cr,rx}`` distance-major, raw intensities, -1.0 unknown.
"""

import json

import h5py
import numpy as np
import pytest

from ssl_obstacle.cli import main
from ssl_obstacle.commands import import_idsia
from ssl_obstacle.core.dataset import read_dataset
from ssl_obstacle.io.idsia_dataset import (convert_labels, distances_for, IdsiaLayoutError,
                                           inspect_file, standardisation_error, to_uint8)

SENSORS = ('lx', 'cl', 'cx', 'cr', 'rx')


def their_standardise(raw: np.ndarray) -> np.ndarray:
    """Their ``df['camera'].apply(lambda x: (x - x.mean()) / x.std())`` on one uint8 frame."""
    return (raw - raw.mean()) / raw.std()


def bgr_frames(count: int, rng: np.random.Generator, height: int = 64,
               width: int = 80) -> np.ndarray:
    """
    Return BGR uint8 frames with a known mark: a pure red patch (BGR 0, 0, 250) top left.

    The background is a texture of 30..140 per channel, different in each channel, so a
    channel mix-up or a lost pixel shows.
    """
    frames = rng.integers(30, 141, size=(count, height, width, 3)).astype(np.uint8)
    frames[:, 4:12, 4:14] = (0, 0, 250)
    return frames


def intensity_rows(count: int, distances: int, rng: np.random.Generator) -> np.ndarray:
    """Return their y rows: raw intensities (0 free, 1000-4500 obstacle) and -1 unknown."""
    rows = np.where(rng.random((count, 5 * distances)) < 0.4,
                    rng.integers(1000, 4501, size=(count, 5 * distances)), 0).astype(np.float64)
    rows[rng.random(rows.shape) < 0.3] = -1.0
    return rows


def write_idsia_file(path, recordings: dict[int, tuple[np.ndarray, np.ndarray]]) -> None:
    """Write ``{i: (bgr uint8 frames, y rows)}`` as their preprocess.py writes its file."""
    with h5py.File(path, 'w') as h5f:
        for index, (frames, rows) in recordings.items():
            length, width = len(frames), rows.shape[1]
            xs = h5f.create_dataset(f'bag{index}_x', shape=(length, 64, 80, 3),
                                    maxshape=(None, 64, 80, 3), dtype=np.float64, data=None,
                                    chunks=True)
            ys = h5f.create_dataset(f'bag{index}_y', shape=(length, width),
                                    maxshape=(None, width), dtype=np.float64, data=None,
                                    chunks=True)
            xs[:] = np.stack([their_standardise(frame) for frame in frames])
            ys[:] = rows


def paper_like_file(path, sizes: dict[int, int], distances: int = 31,
                    seed: int = 0) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Write a file of recordings ``{index: frames}``; return their raw content."""
    rng = np.random.default_rng(seed)
    content = {i: (bgr_frames(n, rng), intensity_rows(n, distances, rng))
               for i, n in sizes.items()}
    write_idsia_file(path, content)
    return content


def leftovers(directory) -> list[str]:
    """Return hidden (temporary) entries of a directory."""
    return sorted(p.name for p in directory.iterdir() if p.name.startswith('.'))


def test_import_recovers_the_frames_labels_and_distances(tmp_path, capsys):
    source = tmp_path / 'data_many_dist_fixed_step.h5'
    content = paper_like_file(source, {0: 40, 1: 300, 2: 7})
    out = tmp_path / 'paper'
    assert main(['import-idsia', str(source), '--out', str(out), '--no-progress']) == 0
    printed = capsys.readouterr().out
    assert '31 distances: taken as 0 … 30 cm in 1 cm steps' in printed
    assert '300/300 images exact' in printed
    assert sorted(p.name for p in out.iterdir()) == ['bag0.h5', 'bag1.h5', 'bag2.h5']
    for index, (frames, rows) in content.items():
        data = read_dataset(out / f'bag{index}.h5')
        images = data['images']
        assert images.dtype == np.uint8 and images.shape == (len(frames), 64, 80, 3)
        # Their BGR frame, as rgb, shifted so its darkest pixel is 0: nothing else changed.
        expected = frames[..., ::-1].astype(np.int64) \
            - frames.reshape(len(frames), -1).min(axis=1)[:, None, None, None]
        np.testing.assert_array_equal(images, expected)
        assert (images[:, 4:12, 4:14, 0] > 200).all()  # the red mark is in the red channel
        assert (images[:, 4:12, 4:14, 1:] == 0).all()
        labels, counts = data['labels'], data['counts']
        assert labels.shape == (len(frames), 5, 31) and counts.shape == labels.shape
        for n in (0, len(frames) - 1):
            for d in (0, 17, 30):
                for s in range(5):
                    value = rows[n, 5 * d + s]
                    if value == -1.0:
                        assert np.isnan(labels[n, s, d]) and counts[n, s, d] == 0
                    else:
                        assert labels[n, s, d] == (1.0 if value > 0 else 0.0)
                        assert counts[n, s, d] == 1
        assert np.isnan(labels).sum() == (rows == -1.0).sum()
        assert np.nansum(labels) == (rows > 0).sum()
        np.testing.assert_allclose(data['distances'], np.arange(31) / 100.0)
        assert data['sensor_names'] == ['left', 'center_left', 'center', 'center_right',
                                        'right']
        attrs = data['attrs']
        assert attrs['recording'] == index
        assert attrs['source'] == f'{source}:bag{index}_x,bag{index}_y'
        assert attrs['images_exact'] == len(frames)
        assert attrs['standardisation_max_error'] < 1e-9
        assert attrs['frames'] == len(frames)
        assert data['label_params']['rule'] == 'nava2019'
    assert leftovers(tmp_path) == [] and leftovers(out) == []


def test_our_standardisation_of_the_stored_frames_is_their_image(tmp_path):
    import torch

    from ssl_obstacle.core.model import preprocess

    source = tmp_path / 'theirs.h5'
    paper_like_file(source, {3: 20}, distances=4)
    assert main(['import-idsia', str(source), '--out', str(tmp_path / 'ours')]) == 0
    images = read_dataset(tmp_path / 'ours' / 'bag3.h5')['images']
    with h5py.File(source, 'r') as file:
        theirs = file['bag3_x'][()]
    ours = preprocess(images).permute(0, 2, 3, 1).numpy()  # (N, H, W, 3) rgb
    error = np.abs(ours[..., ::-1] - theirs).max()
    assert error < 1e-5, error  # float32 rounding only
    assert isinstance(torch.as_tensor(ours), torch.Tensor)


def test_frames_not_from_uint8_fall_back_to_min_max_with_a_small_measured_error():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((16, 64, 80, 3))
    x = (x - x.mean(axis=(1, 2, 3), keepdims=True)) / x.std(axis=(1, 2, 3), keepdims=True)
    images, exact = to_uint8(x)
    assert not exact.any()
    flat = images.reshape(16, -1)
    assert (flat.min(axis=1) == 0).all() and (flat.max(axis=1) == 255).all()
    error = standardisation_error(images, x)
    # Rounding to integers: at most half a level of the min..max range, in std units.
    span = x.reshape(16, -1).max(axis=1) - x.reshape(16, -1).min(axis=1)
    assert (error <= 0.5 * span / 255 * 1.1).all(), (error, span)
    assert 0.005 < error.max() < 0.03
    # The channel order is reversed whichever path an image takes.
    red = x[:1].copy()
    red[..., 2] += 10.0  # BGR: far more red than anything else, off any lattice
    red = (red - red.mean()) / red.std()
    rgb, exact = to_uint8(red)
    assert not exact.any()
    assert rgb[0, :, :, 0].min() > rgb[0, :, :, 1:].max()
    # Two grey levels 9 apart: on a lattice of step 9 / std, stored as levels 0 and 1 (an
    # affine map still, which standardisation undoes exactly).
    levels, exact = to_uint8(np.stack([their_standardise(np.full((64, 80, 3), (0, 0, 9)))]))
    assert exact.all() and (levels[0, :, :, 0] == 1).all() and (levels[0, :, :, 1:] == 0).all()


def test_flat_or_invalid_frames_become_black_and_are_not_counted_exact():
    x = np.full((2, 64, 80, 3), np.nan)
    x[1] = 0.0
    images, exact = to_uint8(x)
    assert not exact.any() and (images == 0).all()


def test_labels_are_distance_major_with_unknown_cells():
    rows = np.array([[0.0, 5.0, -1.0, 1.0, 0.0,   # distance 0: lx, cl, cx, cr, rx
                      -1.0, -1.0, 3000.0, 0.0, 0.0]])  # distance 1
    labels, counts = convert_labels(rows)
    assert labels.shape == (1, 5, 2)
    np.testing.assert_array_equal(labels[0, :, 0], [0.0, 1.0, np.nan, 1.0, 0.0])
    np.testing.assert_array_equal(labels[0, :, 1], [np.nan, np.nan, 1.0, 0.0, 0.0])
    np.testing.assert_array_equal(counts[0], [[1, 0], [1, 0], [0, 1], [1, 1], [1, 1]])


def test_distances_follow_their_preprocess_unless_told():
    metres, how = distances_for(31)
    np.testing.assert_allclose(metres, np.arange(31) / 100)
    assert '1 cm steps' in how
    metres, how = distances_for(4)
    np.testing.assert_allclose(metres, [0.0, 0.033, 0.066, 0.10])
    assert 'default' in how
    metres, _ = distances_for(3, step_cm=2.5)
    np.testing.assert_allclose(metres, [0.0, 0.025, 0.05])


def wrong_layouts(tmp_path):
    """Yield (name, path, words the error must contain) of files not in their layout."""
    ours = tmp_path / 'ours.h5'
    with h5py.File(ours, 'w') as file:
        file['images'] = np.zeros((2, 64, 80, 3), np.uint8)
        file['labels'] = np.zeros((2, 5, 31), np.float32)
    yield 'ours', ours, ['no bag{i}_x', 'images uint8 (2, 64, 80, 3)']
    unpaired = tmp_path / 'unpaired.h5'
    with h5py.File(unpaired, 'w') as file:
        file['bag0_x'] = np.zeros((2, 64, 80, 3))
        file['bag0_y'] = np.zeros((2, 155))
        file['bag1_x'] = np.zeros((2, 64, 80, 3))
    yield 'unpaired', unpaired, ['without both datasets: bag1', 'bag1_x float64']
    width = tmp_path / 'width.h5'
    with h5py.File(width, 'w') as file:
        file['bag0_x'] = np.zeros((2, 64, 80, 3))
        file['bag0_y'] = np.zeros((2, 7))
    yield 'width', width, ['bag0_y has shape (2, 7), not (N, 5*D)']
    frames = tmp_path / 'frames.h5'
    with h5py.File(frames, 'w') as file:
        file['bag0_x'] = np.zeros((3, 64, 80, 3))
        file['bag0_y'] = np.zeros((2, 155))
    yield 'frames', frames, ['bag0_x has 3 frames but bag0_y 2 rows']
    integers = tmp_path / 'integers.h5'
    with h5py.File(integers, 'w') as file:
        file['bag0_x'] = np.zeros((2, 64, 80, 3), np.uint8)
        file['bag0_y'] = np.zeros((2, 155))
    yield 'integers', integers, ['bag0_x is not a float dataset']
    simulation = tmp_path / 'simulation.h5'
    with h5py.File(simulation, 'w') as file:
        for index in (0, 1):  # as their README names them (their code: cam1, target1)
            for camera in ('input_cam1', 'input_cam2', 'input_cam3'):
                file[f'bag{index}/x/{camera}'] = np.zeros((2, 64, 80, 3))
            file[f'bag{index}/y/output_target1'] = np.zeros((2, 289))
    yield 'simulation', simulation, ['simulation dataset',
                                     'x/{input_cam1, input_cam2, input_cam3}',
                                     'three cameras', 'y/{output_target1}']
    text = tmp_path / 'text.h5'
    text.write_text('not hdf5')
    yield 'text', text, ['cannot be read as HDF5']


def test_a_file_in_another_layout_fails_clearly_and_writes_nothing(tmp_path, capsys):
    for name, path, words in wrong_layouts(tmp_path):
        out = tmp_path / f'out_{name}'
        assert main(['import-idsia', str(path), '--out', str(out)]) == 2, name
        err = capsys.readouterr().err
        assert err.startswith('error: ') and len(err.splitlines()) == 1, err
        for word in words:
            assert word in err, (name, word, err)
        assert not out.exists(), name
    assert leftovers(tmp_path) == []
    with pytest.raises(IdsiaLayoutError):
        inspect_file(tmp_path / 'ours.h5')


def test_a_failure_midway_leaves_no_output(tmp_path, monkeypatch):
    source = tmp_path / 'theirs.h5'
    paper_like_file(source, {0: 30, 1: 30, 2: 30}, distances=4)
    calls = []
    real = import_idsia.to_uint8

    def failing(x):
        calls.append(len(x))
        if len(calls) == 2:  # recording 0 is written by now; recording 1 fails
            raise KeyboardInterrupt
        return real(x)

    monkeypatch.setattr(import_idsia, 'to_uint8', failing)
    out = tmp_path / 'out'
    assert main(['import-idsia', str(source), '--out', str(out)]) == 130
    assert len(calls) == 2
    assert not out.exists() and leftovers(tmp_path) == []
    out.mkdir()  # an empty directory is a fine target, and stays one after a failure
    calls.clear()
    with pytest.raises(KeyboardInterrupt):
        import_idsia.import_idsia(source, out, log=lambda line: None)
    assert list(out.iterdir()) == [] and leftovers(tmp_path) == []


def test_an_output_with_files_in_it_is_refused(tmp_path, capsys):
    source = tmp_path / 'theirs.h5'
    paper_like_file(source, {0: 5}, distances=4)
    out = tmp_path / 'out'
    out.mkdir()
    (out / 'notes.txt').write_text('mine')
    assert main(['import-idsia', str(source), '--out', str(out)]) == 2
    assert 'already exists and is not an empty directory' in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ['notes.txt']
    assert main(['import-idsia', str(source), '--out', str(tmp_path / 'no' / 'out')]) == 2
    assert 'does not exist' in capsys.readouterr().err


def test_a_source_attribute_names_the_file_and_group(tmp_path):
    source = tmp_path / 'theirs.h5'
    paper_like_file(source, {5: 3}, distances=4)
    assert main(['import-idsia', str(source), '--out', str(tmp_path / 'o')]) == 0
    with h5py.File(tmp_path / 'o' / 'bag5.h5', 'r') as file:
        attrs = dict(file.attrs)
    assert attrs['source'] == f'{source}:bag5_x,bag5_y'
    assert 'preprocess.py' in attrs['source_layout']
    assert json.loads(attrs['label_params'])['unknown'].startswith('their -1.0')
    assert np.isnan(read_dataset(tmp_path / 'o' / 'bag5.h5')['poses']).all()
