"""fastvae's version numbers, in a module of their own so that every layer can
read them without importing the package root."""

__version__ = "0.1.0"

# Version of the C-level API (the .pxd files and C headers); bumped whenever
# a declared signature changes. Additions do not bump it. It must equal
# FASTVAE_C_API_VERSION in src_c/fastvae/version.h.
C_API_VERSION = 1
