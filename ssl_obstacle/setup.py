"""Install the ssl_obstacle Python package, its launch, config and world files, and nodes."""

from glob import glob
import os

from setuptools import find_packages, setup

PACKAGE = 'ssl_obstacle'

setup(
    name=PACKAGE,
    version='0.1.0',
    packages=find_packages(exclude=['test']),
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + PACKAGE]),
        ('share/' + PACKAGE, ['package.xml']),
        (os.path.join('share', PACKAGE, 'launch'), glob('launch/*.launch.py')),
        (os.path.join('share', PACKAGE, 'config'), glob('config/*.yaml')),
        (os.path.join('share', PACKAGE, 'worlds'), glob('worlds/*.sdf')),
    ],
    install_requires=['setuptools'],
    zip_safe=True,
    maintainer='ssl_obstacle maintainers',
    maintainer_email='maintainers@ssl-obstacle.org',
    description='Self-supervised long-range obstacle perception for ROS 2 robots.',
    license='MIT',
    extras_require={'test': ['pytest', 'hypothesis']},
    entry_points={
        'console_scripts': [
            'labeler = ssl_obstacle.nodes.labeler_node:main',
            'simulator = ssl_obstacle.nodes.simulator_node:main',
            'explorer = ssl_obstacle.nodes.explorer_node:main',
            'avoider = ssl_obstacle.nodes.avoider_node:main',
            'trainer = ssl_obstacle.nodes.trainer_node:main',
            'predictor = ssl_obstacle.nodes.predictor_node:main',
            'scan_to_range = ssl_obstacle.nodes.scan_to_range_node:main',
            'ssl-obstacle = ssl_obstacle.cli:main',
        ],
    },
)
