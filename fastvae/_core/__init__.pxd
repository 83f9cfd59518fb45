# Marks fastvae/_core as a Cython package, also in the copy of the .pxd
# files under fastvae.get_include(); the public C-level API is
# fastvae/__init__.pxd (`cimport fastvae`).
