#!/usr/bin/env python3
"""Point the ROS wheels' exported CMake include paths at this virtual environment.

The Jazzy wheels were built in a manylinux container and their
``*__rosidl_generator_pyExport.cmake`` files name that container's Python and
numpy include directories, which makes CMake refuse to configure any package
that depends on their messages. No tool fixes this, so we rewrite the paths.
Idempotent: files already pointing here are left untouched.
"""

import pathlib
import sys
import sysconfig

import numpy

BUILD_PYTHON_INCLUDE = '/opt/python/cp311-cp311/include/python3.11'
BUILD_NUMPY_INCLUDE = '/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include'


def main() -> int:
    prefix = pathlib.Path(sys.prefix)
    python_include = sysconfig.get_paths()['include']
    numpy_include = numpy.get_include()
    fixed = 0
    for path in sorted((prefix / 'share').glob('*/cmake/*.cmake')):
        text = path.read_text()
        if BUILD_PYTHON_INCLUDE not in text and BUILD_NUMPY_INCLUDE not in text:
            continue
        text = text.replace(BUILD_NUMPY_INCLUDE, numpy_include)
        text = text.replace(BUILD_PYTHON_INCLUDE, python_include)
        path.write_text(text)
        fixed += 1
    print(f'fix_cmake_exports: rewrote include paths in {fixed} file(s) under {prefix}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
