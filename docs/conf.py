"""Sphinx configuration of fastvae's documentation (built by docs/build.sh)."""

import os
from pathlib import Path

from sphinx.errors import ConfigError

import fastvae

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent

# The gallery trains on MNIST from the folder fastvae reads
# (FASTVAE_DATA_DIR); by default the project's shared data beside the
# repository. Without it the build fails here, loudly, rather than publish a
# gallery that did not run.
_data = Path(
    os.environ.setdefault(
        "FASTVAE_DATA_DIR", str((ROOT / ".." / "shared" / "data").resolve())
    )
)
if not (_data / "mnist" / "train-images-idx3-ubyte.gz").is_file():
    raise ConfigError(
        f"MNIST not found in {_data}/mnist; the gallery trains on it. Set "
        "FASTVAE_DATA_DIR to a folder holding mnist/ (see the data page of "
        "the user guide)."
    )
# The gallery's numbers do not depend on the thread count; keep the build
# from fighting other jobs for the cores.
os.environ.setdefault("OMP_NUM_THREADS", "2")

project = "fastvae"
author = "fastvae developers"
copyright = "fastvae developers"  # noqa: A001
version = release = fastvae.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "images/README*", "requirements.txt"]
templates_path = ["_templates"]

# Markdown pages (the user guide, adapted from the README).
myst_enable_extensions = ["dollarmath"]
myst_heading_anchors = 3

# API reference: one page per public object, from the docstrings.
autosummary_generate = True
autodoc_typehints = "none"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_show_inherited_class_members = False
numpydoc_xref_param_type = False
# Check every docstring numpydoc renders; the build fails on a problem.
numpydoc_validation_checks = {
    "GL06",
    "GL07",
    "SS01",
    "PR01",
    "PR02",
    "PR10",
    "RT02",
    "YD01",
}
numpydoc_validation_exclude = {
    r"\.__init__$",
    r"\.__repr__$",
    r"\.__len__$",
    r"\.__post_init__$",
    r"\.__sklearn_tags__$",
    r"\.__sklearn_is_fitted__$",
    r"\.__getstate__$",
    r"\.__setstate__$",
}


sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "examples" / "gallery"),
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "abort_on_example_error": True,
    "only_warn_on_example_error": False,
    "download_all_examples": False,
    "remove_config_comments": True,
    "within_subsection_order": "FileNameSortKey",
    "reference_url": {"fastvae": None},
    "matplotlib_animations": False,
    "image_scrapers": ("matplotlib",),
    "show_memory": False,
    "plot_gallery": "True",
}

html_theme = "pydata_sphinx_theme"
html_title = f"fastvae {release}"
html_static_path = []
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "secondary_sidebar_items": ["page-toc"],
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
}
html_show_sourcelink = False
