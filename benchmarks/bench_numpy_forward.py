"""
Benchmark the torch-free predictor's forward pass against torch's, per frame and in memory.

The predictor node runs where there is no PyTorch (the robot's 32-bit ARM computer), with
``core.numpy_model.NumpyObstacleNet`` on weights read by ``core.checkpoint_reader``. This
measures, for one 64×80 frame at a time (as camera frames arrive), the wall time of a
prediction with numpy and with torch (``predict_probabilities``: eval mode,
``inference_mode``, 1 intra-op thread), median and 99th percentile over ``--runs`` frames
after a warm-up; and the resident memory (``VmRSS``, and its peak ``VmHWM``, from
``/proc/self/status``) of a fresh Python process that imports only numpy, numpy_model and
checkpoint_reader, reads a checkpoint and predicts, against one that does the same with
torch. Every measurement runs in a fresh subprocess, so neither library's imports, threads
or allocator state reaches the other's figures; numpy and torch rounds alternate, so a
change in the machine's load shows up in both.

Both run on one core: OpenBLAS (numpy's matrix products) is limited to ``--blas-threads``
(default 1, as torch's 1 intra-op thread), through ``OPENBLAS_NUM_THREADS`` and
``OMP_NUM_THREADS`` in the children. The weights are the default ``ModelConfig``'s, saved by
``save_checkpoint`` with a moving average (as the trainer saves them); the frame is random.

Usage (``SSL_OBSTACLE_DEV=1`` benchmarks the source tree instead of the install space)::

    scripts/with_env.sh python benchmarks/bench_numpy_forward.py
    scripts/with_env.sh python benchmarks/bench_numpy_forward.py --runs 500 --rounds 1
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np

FRAME_SHAPE = (64, 80, 3)


def rss_mb() -> dict[str, float]:
    """Return this process's resident memory now and at its peak, in MB."""
    values = {}
    with open('/proc/self/status', encoding='ascii') as status:
        for line in status:
            if line.startswith(('VmRSS:', 'VmHWM:')):
                values[line.split(':')[0]] = int(line.split()[1]) / 1024
    return {'rss_mb': values['VmRSS'], 'peak_mb': values['VmHWM']}


# ---------------------------------------------------------------------- children
def numpy_predictor(checkpoint: str):
    """Return a one-frame predict function built without torch, and the seconds it took."""
    start = time.perf_counter()
    from ssl_obstacle.core.checkpoint_reader import read_checkpoint_weights
    from ssl_obstacle.core.numpy_model import NumpyObstacleNet

    weights = read_checkpoint_weights(checkpoint)
    net = NumpyObstacleNet(weights.config, weights.state)
    return net.predict, time.perf_counter() - start


def torch_predictor(checkpoint: str):
    """Return a one-frame predict function with torch, and the seconds it took."""
    start = time.perf_counter()
    import torch
    from ssl_obstacle.core.checkpoint import build_model, load_checkpoint
    from ssl_obstacle.core.model import predict_probabilities

    torch.set_num_threads(1)
    model = build_model(load_checkpoint(checkpoint))

    def predict(frame: np.ndarray) -> np.ndarray:
        return predict_probabilities(model, frame)

    return predict, time.perf_counter() - start


def time_child(kind: str, checkpoint: str, frame_path: str, runs: int,
               out: str) -> dict[str, Any]:
    """Time ``runs`` one-frame predictions (after a warm-up); save the last probabilities."""
    predict, setup = (numpy_predictor if kind == 'numpy' else torch_predictor)(checkpoint)
    frame = np.load(frame_path)
    for _ in range(min(200, runs)):
        probabilities = predict(frame)
    times = np.empty(runs)
    for i in range(runs):
        start = time.perf_counter_ns()
        probabilities = predict(frame)
        times[i] = time.perf_counter_ns() - start
    np.save(out, probabilities)
    return {'median_ms': float(np.median(times)) / 1e6,
            'p99_ms': float(np.percentile(times, 99)) / 1e6,
            'setup_s': setup, 'load': os.getloadavg()[0]}


def memory_child(kind: str, checkpoint: str, frame_path: str) -> dict[str, Any]:
    """Import, read the checkpoint and predict one frame; report memory and what is loaded."""
    predict, setup = (numpy_predictor if kind == 'numpy' else torch_predictor)(checkpoint)
    predict(np.load(frame_path))
    return {**rss_mb(), 'setup_s': setup, 'torch_loaded': 'torch' in sys.modules}


# ---------------------------------------------------------------------- orchestration
def child(env: dict[str, str], *argv: str) -> dict[str, Any]:
    """Run this script in a fresh subprocess for one measurement; return its JSON report."""
    result = subprocess.run([sys.executable, __file__, *argv], check=True, env=env,
                            stdout=subprocess.PIPE, text=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def write_inputs(workdir: pathlib.Path) -> tuple[str, str]:
    """Write a default-config checkpoint (with a moving average) and one random frame."""
    import torch
    from ssl_obstacle.core.checkpoint import save_checkpoint
    from ssl_obstacle.core.model import ModelConfig, ObstacleNet

    torch.manual_seed(0)
    model = ObstacleNet(ModelConfig())
    average = {k: v.detach().clone() * 0.9 for k, v in model.state_dict().items()}
    checkpoint = workdir / 'model.pt'
    save_checkpoint(checkpoint, model, counters={'updates': 0}, average_state=average)
    frame = workdir / 'frame.npy'
    np.save(frame, np.random.default_rng(0).integers(0, 256, FRAME_SHAPE, dtype=np.uint8))
    return str(checkpoint), str(frame)


def cpu_model() -> str:
    """Return the processor's name from /proc/cpuinfo (empty if unknown)."""
    try:
        with open('/proc/cpuinfo', encoding='ascii', errors='replace') as cpuinfo:
            for line in cpuinfo:
                if line.startswith(('model name', 'Model')):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return ''


def machine_conditions(blas_threads: int) -> list[str]:
    """Describe what the figures were measured on: they mean little without it."""
    import torch

    affinity = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else None
    load = ' '.join(f'{v:.2f}' for v in os.getloadavg())
    return [
        f'machine: {platform.machine()} {cpu_model()}, {os.cpu_count()} CPUs '
        f'({affinity} usable), load {load} (1, 5, 15 min)',
        f'python {platform.python_version()}, numpy {np.__version__}, torch '
        f'{torch.__version__}; BLAS threads {blas_threads or "default"}, torch 1 thread',
    ]


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, or one of its measurements when invoked as a child process."""
    parser = argparse.ArgumentParser(description=__doc__.strip().split('\n', 1)[0])
    parser.add_argument('--runs', type=int, default=2000, help='timed frames per round')
    parser.add_argument('--rounds', type=int, default=2,
                        help='numpy/torch timing rounds, alternating (default: 2)')
    parser.add_argument('--blas-threads', type=int, default=1,
                        help="OpenBLAS threads in the children (0: the library's default)")
    parser.add_argument('--time', nargs=4, metavar=('KIND', 'CKPT', 'FRAME', 'OUT'),
                        help=argparse.SUPPRESS)
    parser.add_argument('--memory', nargs=3, metavar=('KIND', 'CKPT', 'FRAME'),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.time:  # child process: timing
        kind, checkpoint, frame, out = args.time
        print(json.dumps(time_child(kind, checkpoint, frame, args.runs, out)))
        return 0
    if args.memory:  # child process: memory
        print(json.dumps(memory_child(*args.memory)))
        return 0

    env = dict(os.environ)
    if args.blas_threads > 0:
        env['OPENBLAS_NUM_THREADS'] = env['OMP_NUM_THREADS'] = str(args.blas_threads)
    workdir = pathlib.Path(tempfile.mkdtemp(prefix='bench_numpy_forward_'))
    try:
        checkpoint, frame = write_inputs(workdir)
        print('\n'.join(machine_conditions(args.blas_threads)))
        print(f'one {FRAME_SHAPE[0]}x{FRAME_SHAPE[1]} frame per call, {args.runs} timed calls '
              'per round after a warm-up; setup = imports + reading the checkpoint + building '
              'the model; RSS after one prediction in a fresh process')
        print(f'{"":8} {"round":>5} {"median ms":>9} {"p99 ms":>8} {"load":>5}', flush=True)
        outputs = {}
        for round_ in range(1, args.rounds + 1):
            for kind in ('numpy', 'torch'):
                out = str(workdir / f'{kind}.npy')
                r = child(env, '--runs', str(args.runs), '--time', kind, checkpoint, frame, out)
                outputs[kind] = np.load(out)
                print(f'{kind:8} {round_:5d} {r["median_ms"]:9.3f} {r["p99_ms"]:8.3f} '
                      f'{r["load"]:5.2f}', flush=True)
        difference = float(np.abs(outputs['numpy'] - outputs['torch']).max())
        print(f'max |numpy - torch| probability: {difference:.2g}')
        print(f'{"":8} {"RSS MB":>7} {"peak MB":>7} {"setup s":>7}  torch in sys.modules')
        for kind in ('numpy', 'torch'):
            m = child(env, '--memory', kind, checkpoint, frame)
            print(f'{kind:8} {m["rss_mb"]:7.1f} {m["peak_mb"]:7.1f} {m["setup_s"]:7.2f}  '
                  f'{m["torch_loaded"]}', flush=True)
        print(f'load after: {" ".join(f"{v:.2f}" for v in os.getloadavg())}')
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
