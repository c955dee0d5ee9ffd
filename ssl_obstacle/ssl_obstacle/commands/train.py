"""
``ssl-obstacle train DATA.h5 [DATA.h5 …] --out MODEL.pt``: train the model offline.

The options, the messages and the checkpoint; the training loop, the validation split by
file and the dataset inspection are :mod:`ssl_obstacle.core.training`'s, shared with
``evaluate`` and the benchmarks.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
from typing import Any

from .. import __version__
from ..core.training import (check_compatible, FileInfo, Frames, inspect_dataset, load_frames,
                             split_by_file, train_model, TrainError, TrainResult,
                             with_implied_blocking)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of the ``train`` subcommand."""
    parser.add_argument('data', nargs='+', help='dataset files (HDF5, from ssl-obstacle export)')
    parser.add_argument('--out', required=True, help='checkpoint to write (e.g. model.pt)')
    parser.add_argument('--epochs', type=int, default=10, help='passes over the training data')
    parser.add_argument('--batch-size', type=int, default=64)
    parser.add_argument('--lr', type=float, default=1e-3, help='Adam learning rate')
    parser.add_argument('--val-fraction', type=float, default=0.2,
                        help='share held out for validation: with several files the last '
                             'file(s), with one file its tail (default 0.2; 0 = none)')
    parser.add_argument('--max-updates', type=int, default=None,
                        help='stop after this many batches (default: no limit)')
    parser.add_argument('--max-seconds', type=float, default=None,
                        help='stop after this many seconds of training (default: no limit)')
    parser.add_argument('--no-augment', action='store_true', help='train on the frames as is')
    parser.add_argument('--no-implied-blocking', action='store_true',
                        help='train on the observed labels only, not also on the cells '
                             'beyond an obstacle the centre sensor saw (as the online '
                             'learner does by default; validation always uses observed ones)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--device', default='cpu', help="torch device, e.g. 'cpu' or 'cuda'")
    parser.add_argument('--no-progress', action='store_true', help='no progress bar')


def _check_args(args: argparse.Namespace) -> None:
    import torch

    if args.epochs < 1 or args.batch_size < 1 or not args.lr > 0:
        raise TrainError('--epochs, --batch-size and --lr must be positive')
    if args.max_seconds is not None and not args.max_seconds > 0:
        raise TrainError('--max-seconds must be positive')
    if not 0.0 <= args.val_fraction < 1.0:
        raise TrainError('--val-fraction must be in [0, 1)')
    out = pathlib.Path(args.out)
    if not out.parent.is_dir():
        raise TrainError(f'output directory {str(out.parent)!r} does not exist')
    if out.is_dir():
        raise TrainError(f'output path {str(out)!r} is a directory')
    if args.device.startswith('cuda') and not torch.cuda.is_available():
        raise TrainError('--device cuda requested but CUDA is not available')


def run(args: argparse.Namespace) -> int:
    """Train and write the checkpoint; 0 on success, 2 with ``error: ...`` when it cannot."""
    from ..core.checkpoint import save_checkpoint

    try:
        _check_args(args)
        infos = [inspect_dataset(path) for path in args.data]
        check_compatible(infos)
        train_ranges, val_ranges = split_by_file(infos, args.val_fraction)
        train = load_frames(infos, train_ranges)
        val = load_frames(infos, val_ranges) if val_ranges else None
        if not args.no_implied_blocking:
            train = with_implied_blocking(train, infos[0], log=print)
        print(f'training on {len(train)} frames, validating on {len(val) if val else 0} '
              f'({", ".join(f"{os.path.basename(p)}[{s}:{e}]" for p, s, e in val.sources)})'
              if val else f'training on {len(train)} frames, no validation')
        result = train_model(
            train, val, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
            seed=args.seed, max_updates=args.max_updates, max_seconds=args.max_seconds,
            use_augment=not args.no_augment,
            device=args.device, progress=not args.no_progress and sys.stderr.isatty(),
            log=print)
        info = infos[0]
        save_checkpoint(args.out, result.model, result.optimizer, counters={
            'epochs': len(result.history), 'updates': result.updates,
            'frames_seen': result.frames_seen, 'best_epoch': result.best_epoch,
        }, params=_params(args, info, result, train, val))
    except TrainError as error:
        print(f'error: {" ".join(str(error).split())}', file=sys.stderr)
        return 2
    except OSError as error:
        print(f'error: cannot write {args.out!r}: {error}', file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print('error: interrupted; no model written', file=sys.stderr)
        return 130
    print(f'best epoch {result.best_epoch}: val AUC {result.best_val_auc:.4f}, val loss '
          f'{result.best_val_loss:.4f}; {result.updates} updates in {result.seconds:.1f} s; '
          f'wrote {args.out}')
    return 0


def _params(args: argparse.Namespace, info: FileInfo, result: TrainResult, train: Frames,
            val: Frames | None) -> dict[str, Any]:
    """Return what a reader of the checkpoint needs: data layout, settings and provenance."""
    return {
        'sensor_names': list(info.sensor_names),
        'distances': list(info.distances),
        'trained_by': f'ssl-obstacle train {__version__}',
        'train_sources': [list(s) for s in train.sources],
        'val_sources': [list(s) for s in val.sources] if val else [],
        'epochs': args.epochs, 'batch_size': args.batch_size, 'lr': args.lr,
        'val_fraction': args.val_fraction, 'seed': args.seed,
        'augment': not args.no_augment, 'max_updates': args.max_updates,
        'implied_blocking': not args.no_implied_blocking,
        'max_seconds': args.max_seconds,
        'best_val_auc': result.best_val_auc, 'best_val_loss': result.best_val_loss,
        'history': result.history,
    }
