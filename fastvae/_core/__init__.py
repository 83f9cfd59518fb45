"""fastvae's compiled core: the kernels and the nogil training engine
(Cython over the header-only C of src_c/fastvae/), and their Python face:
thread and instruction-set controls (``threads``) and the flat parameter
buffer's layout (``params``).

Layer: the lowest but for the foundation modules (errors, version,
argument checks). Nothing here imports data, models or the command line.
The public C-level API is ``cimport fastvae`` (fastvae/__init__.pxd), which
re-exports the stable part of these modules' declarations.
"""
