/*
 * Version of fastvae's C-level API: the declarations of fastvae/__init__.pxd
 * (functions, struct layouts, constants) and of these headers.
 *
 * It is bumped whenever a declared signature, struct layout or constant
 * changes; additions do not bump it. It must equal fastvae.C_API_VERSION
 * (fastvae/__init__.py; tests/test_embed.py checks that they agree). A
 * module compiled against one version must not run with another:
 * fastvae.check_c_api_version() (fastvae/__init__.pxd) raises ImportError
 * when they differ.
 */
#ifndef FASTVAE_VERSION_H
#define FASTVAE_VERSION_H

#define FASTVAE_C_API_VERSION 1

#endif /* FASTVAE_VERSION_H */
