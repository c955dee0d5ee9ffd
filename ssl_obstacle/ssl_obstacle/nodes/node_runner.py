"""
Run nodes of this package: several in this process, or one in a child process of its own.

``ssl-obstacle run`` and ``sim`` run their nodes in this process; ``ssl-obstacle up`` runs
every node of its setup here but the trainer, which it starts as a child process (as ``ros2
launch`` runs each node in a process of its own), so that prediction never shares an
interpreter, and its lock, with training. This module imports neither the command line nor
``commands/up.py`` nor the bringup: the first two import it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import functools
import os
import signal
import subprocess
import sys
import tempfile
import threading
from typing import Any, Callable, Mapping, Sequence


@dataclass(frozen=True)
class NodeSpec:
    """One node to run: its registry name, its namespace, its parameter overrides."""

    name: str
    namespace: str = ''
    #: parameter name -> value; they win over the parameter files
    parameters: Mapping[str, Any] = field(default_factory=dict)


def run_nodes(nodes: Sequence[str | NodeSpec], ros_args: Sequence[str],
              overrides: dict[str, list] | None = None) -> int:
    """
    Run nodes of this package in this process until Ctrl-C; return the exit code.

    ``nodes`` are registry names or :class:`NodeSpec` (each with its own namespace, so one
    process can hold the nodes of several robots). ``overrides`` maps a plain name to its
    rclpy ``Parameter`` overrides, for parameters that must differ between the nodes of one
    process (``use_sim_time`` for all but the simulator, which makes the time).
    """
    from rclpy.parameter import Parameter

    from . import runtime
    from .registry import node_factory

    factories = []
    try:
        for node in nodes:
            if isinstance(node, NodeSpec):
                parameters = [Parameter(key, value=value) for key, value in
                              node.parameters.items()]
                kwargs: dict[str, Any] = {'parameter_overrides': parameters}
                if node.namespace:
                    kwargs['namespace'] = node.namespace
                factories.append(functools.partial(node_factory(node.name), **kwargs))
            else:
                factories.append(functools.partial(
                    node_factory(node), parameter_overrides=(overrides or {}).get(node, [])))
    except KeyError as error:
        print(f'error: {error.args[0]}', file=sys.stderr)
        return 2
    runtime.run_nodes(factories, ['ssl-obstacle', *ros_args])
    return 0


def overrides_file(spec: NodeSpec, directory: str) -> str:
    """
    Write ``spec``'s overrides as a parameter file for the node's full name; return its path.

    Not ``-p name:=value``: rcl files those under ``/**``, which loses to a ``/**/<node>``
    section of a file loaded after a ``/**`` one (config/labeler.yaml, then the setup's
    file). A section for the full name, loaded last, wins over both, as launch_ros writes a
    Node's dictionary of parameters and as overrides given to a node's constructor win.
    """
    import yaml

    namespace = spec.namespace.strip('/')
    full_name = f'/{namespace}/{spec.name}' if namespace else f'/{spec.name}'
    path = os.path.join(directory, f'{spec.name}_overrides.yaml')
    with open(path, 'w', encoding='utf-8') as stream:
        yaml.safe_dump({full_name: {'ros__parameters': dict(spec.parameters)}}, stream)
    return path


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Ask Linux to send the child SIGTERM if up dies without stopping it (kill -9)."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class NodeProcess:
    """
    A node of this package running in a child process, as ``ros2 run`` would start it.

    The child is ``python -m <the node's module> --ros-args ...`` with the same parameter
    files, remaps and extra ROS arguments as the nodes of this process, its namespace, and
    its overrides in a parameter file of their own, loaded last. It inherits the
    environment (the DDS settings: domain, discovery range) and the output streams. It
    runs in a session of its own, so a Ctrl-C in the terminal reaches this process only,
    and :meth:`stop` hands it on once: a second SIGINT would interrupt the node's closing
    (its last checkpoint). On Linux it also gets SIGTERM should this process die without
    stopping it (``kill -9``). A watcher thread calls ``on_exit(self, code)`` at once if
    the child ends while it should run (default: print :meth:`describe_exit` on stderr);
    ``unexpected_exit`` keeps the code.
    """

    def __init__(self, spec: NodeSpec, ros_args: Sequence[str],
                 on_exit: Callable[[NodeProcess, int], None] | None = None) -> None:
        from .registry import NODES

        if spec.name not in NODES:
            raise KeyError(f'unknown node {spec.name!r}; known: {", ".join(sorted(NODES))}')
        self.spec = spec
        module = NODES[spec.name].split(':')[0]
        args = list(ros_args)
        if args[:1] != ['--ros-args']:
            args.insert(0, '--ros-args')
        # After the files and the caller's rules: the first matching remap wins, so a
        # caller's own -r __ns:= still decides, as it does for the nodes here.
        if spec.namespace:
            args += ['-r', f'__ns:=/{spec.namespace.strip("/")}']
        self._directory = tempfile.TemporaryDirectory(prefix=f'ssl_obstacle_{spec.name}_')
        if spec.parameters:
            args += ['--params-file', overrides_file(spec, self._directory.name)]
        self.command = [sys.executable, '-m', module, *args]
        self._on_exit = on_exit or (lambda child, code: _say(
            f'error: {child.describe_exit(code)}'))
        self._stopping = threading.Event()
        self.unexpected_exit: int | None = None
        self.process = subprocess.Popen(self.command, stdin=subprocess.DEVNULL,
                                        start_new_session=True,
                                        preexec_fn=_die_with_parent
                                        if sys.platform.startswith('linux') else None)
        self.pid = self.process.pid
        self._watcher = threading.Thread(target=self._watch, name=f'watch-{spec.name}',
                                         daemon=True)
        self._watcher.start()

    def _watch(self) -> None:
        code = self.process.wait()
        if not self._stopping.is_set():
            self.unexpected_exit = code
            self._on_exit(self, code)

    def describe_exit(self, code: int) -> str:
        """Say how the child ended, by exit code or signal: 'the trainer (process 7) ...'."""
        name = self.spec.name
        if code < 0:
            try:
                how = f'was killed by {signal.Signals(-code).name}'
            except ValueError:
                how = f'was killed by signal {-code}'
            if code == -signal.SIGKILL:
                how += ' (out of memory?)'
        else:
            how = f'exited with code {code}'
        return f'the {name} (process {self.pid}) {how}'

    def poll(self) -> int | None:
        """Return the child's exit code, None while it runs."""
        return self.process.poll()

    def stop(self, timeout: float = 60.0) -> int:
        """
        Send SIGINT once, wait up to ``timeout`` s for the node to close; return the code.

        A node still running then, or a second Ctrl-C here, is killed (SIGKILL): its last
        checkpoint may be missing, which is reported.
        """
        self._stopping.set()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # nothing if it has just ended
            try:
                self.process.wait(timeout)
            except (subprocess.TimeoutExpired, KeyboardInterrupt) as error:
                why = 'asked twice' if isinstance(error, KeyboardInterrupt) else \
                    f'still running {timeout:g} s after SIGINT'
                _say(f'error: the {self.spec.name} (process {self.pid}) was {why}: '
                     'killed; its last checkpoint may be missing')
                self.process.kill()
                self.process.wait()
        self._watcher.join(timeout=1.0)
        self._directory.cleanup()
        return self.process.returncode
