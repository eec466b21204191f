"""Lava processes and their CPU process models (numpy only).

Lava finds a process's models by executing every ``.py`` file in the process's folder, so
every module here is free of import-time side effects and imports only numpy and lava.
Import :mod:`qcfs_lava.lava_sim` (which makes lava importable) before these modules.
"""
