"""
``ssl-obstacle train DATA.h5 [DATA.h5 …] --out MODEL.pt``: train the model offline.

The options, the messages and the checkpoint; the training loop, the validation split by
file and the dataset inspection are :mod:`ssl_obstacle.core.training`'s, shared with
``evaluate`` and the benchmarks. ``--protocol nava2019`` trains as Nava et al. 2019 did on
their published recordings (:mod:`ssl_obstacle.core.nava_protocol`); without it nothing
changes.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
from typing import Any

from .. import __version__
from ..core.nava_protocol import (BATCH_SIZE, EPOCHS, find_recordings, LEARNING_RATE, NAME,
                                  paper_batches, ProtocolError, split_recordings,
                                  STEPS_PER_EPOCH)
from ..core.training import (check_compatible, FileInfo, Frames, inspect_dataset, load_frames,
                             split_by_file, train_model, TrainError, TrainResult,
                             with_implied_blocking)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of the ``train`` subcommand."""
    parser.add_argument('data', nargs='+',
                        help='dataset files (HDF5, from ssl-obstacle export); with --protocol '
                             f'{NAME}: the folder (or files) of ssl-obstacle import-idsia')
    parser.add_argument('--out', required=True, help='checkpoint to write (e.g. model.pt)')
    parser.add_argument('--protocol', choices=(NAME,), default=None,
                        help=f'{NAME}: train as the paper did, on a folder of import-idsia '
                             'files: recordings 0-8, 60 epochs x 1000 steps x batch 64, Adam '
                             '2e-4, its augmentation and batch drawing, no validation (the '
                             'last model is kept; 9 and 10 are for evaluate)')
    parser.add_argument('--epochs', type=int, default=None,
                        help=f'passes over the training data (default {DEFAULTS["epochs"]}; '
                             f'{NAME}: {EPOCHS} epochs of --steps-per-epoch batches)')
    parser.add_argument('--steps-per-epoch', type=int, default=None,
                        help=f'batches per epoch, with --protocol {NAME} only (default '
                             f'{STEPS_PER_EPOCH})')
    parser.add_argument('--batch-size', type=int, default=None,
                        help=f'default {DEFAULTS["batch_size"]} ({NAME}: {BATCH_SIZE})')
    parser.add_argument('--lr', type=float, default=None,
                        help=f'Adam learning rate (default {DEFAULTS["lr"]:g}; {NAME}: '
                             f'{LEARNING_RATE:g})')
    parser.add_argument('--val-fraction', type=float, default=None,
                        help='share held out for validation: with several files the last '
                             'file(s), with one file its tail (default 0.2; 0 = none; not '
                             f'with --protocol {NAME})')
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


#: The options' values without a protocol (what they were before there was one).
DEFAULTS = {'epochs': 10, 'batch_size': 64, 'lr': 1e-3, 'val_fraction': 0.2}

#: The same under --protocol nava2019 (its train.py's defaults; no validation split).
PROTOCOL_DEFAULTS = {'epochs': EPOCHS, 'batch_size': BATCH_SIZE, 'lr': LEARNING_RATE,
                     'steps_per_epoch': STEPS_PER_EPOCH, 'val_fraction': 0.0}


def _resolve_defaults(args: argparse.Namespace) -> None:
    """Fill the options left unset with the defaults of the chosen protocol (or none)."""
    if args.protocol is None:
        if args.steps_per_epoch is not None:
            raise TrainError(f'--steps-per-epoch is for --protocol {NAME}; without it an '
                             'epoch is one pass over the training frames')
        defaults = DEFAULTS
    else:
        if args.val_fraction is not None:
            raise TrainError(f'--protocol {NAME} has no validation split (its test '
                             'recordings 9 and 10 are for evaluate); drop --val-fraction')
        defaults = PROTOCOL_DEFAULTS
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)


def _check_args(args: argparse.Namespace) -> None:
    import torch

    _resolve_defaults(args)
    if args.steps_per_epoch is not None and args.steps_per_epoch < 1:
        raise TrainError('--steps-per-epoch must be positive')

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
        if args.protocol == NAME:
            infos, train, val, options = _protocol_data(args)
        else:
            infos, train, val = _default_data(args)
            options = {}
        result = train_model(
            train, val, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
            seed=args.seed, max_updates=args.max_updates, max_seconds=args.max_seconds,
            use_augment=not args.no_augment,
            device=args.device, progress=not args.no_progress and sys.stderr.isatty(),
            log=print, **options)
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
    if val is None and args.protocol == NAME:
        print(f'kept the last model (epoch {result.best_epoch}), as the paper does; '
              f'{result.updates} updates in {result.seconds:.1f} s; wrote {args.out}')
        return 0
    print(f'best epoch {result.best_epoch}: val AUC {result.best_val_auc:.4f}, val loss '
          f'{result.best_val_loss:.4f}; {result.updates} updates in {result.seconds:.1f} s; '
          f'wrote {args.out}')
    return 0


def _default_data(args: argparse.Namespace) -> tuple[list[FileInfo], Frames, Frames | None]:
    """Return the files, training and validation frames of a run without a protocol."""
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
    return infos, train, val


def _protocol_data(args: argparse.Namespace,
                   ) -> tuple[list[FileInfo], Frames, None, dict[str, Any]]:
    """
    Return the files, training frames and train_model options of the paper's protocol.

    Recordings 0-8 only, with the paper's augmentation and batch drawing; its labels as
    they are (no implied blocking: the paper trains on what was observed).
    """
    from ..core.model import PAPER_AUGMENTATION

    try:
        train_recordings, _ = split_recordings(find_recordings(args.data))
    except ProtocolError as error:
        raise TrainError(str(error)) from error
    infos = [inspect_dataset(path) for _, path in train_recordings]
    check_compatible(infos)
    train = load_frames(infos, [(i, 0, info.frames) for i, info in enumerate(infos)])
    lengths = [info.frames for info in infos]
    print(f'{NAME}: training on recordings 0-8 ({len(train)} frames: '
          f'{", ".join(map(str, lengths))}); 9 and 10 are left for evaluate; {args.epochs} '
          f'epochs x {args.steps_per_epoch} steps x batch {args.batch_size}, Adam lr '
          f'{args.lr:g}, the paper\'s augmentation{" (off)" if args.no_augment else ""}, '
          'observed labels only (no implied blocking), no validation')
    options = {'augmentation': PAPER_AUGMENTATION, 'steps_per_epoch': args.steps_per_epoch,
               'sampler': lambda rng: paper_batches(lengths, args.batch_size, rng)}
    return infos, train, None, options


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
        'implied_blocking': not args.no_implied_blocking and args.protocol is None,
        'max_seconds': args.max_seconds,
        'protocol': args.protocol, 'steps_per_epoch': args.steps_per_epoch,
        'best_val_auc': result.best_val_auc, 'best_val_loss': result.best_val_loss,
        'history': result.history,
    }
