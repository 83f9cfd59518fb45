"""fastvae.config: the BLAS settings it warns about, and show_config."""

import fastvae
from fastvae.config import blas_warnings

AVX512 = {"fpu", "avx2", "fma", "avx512f"}


def test_a_forced_pre_avx512_openblas_core_is_reported_on_an_avx512_cpu():
    (warning,) = blas_warnings({"OPENBLAS_CORETYPE": "Haswell"}, AVX512, "blas")
    assert warning.startswith(
        "OPENBLAS_CORETYPE=Haswell makes OpenBLAS use pre-AVX-512"
    )
    assert "unset it" in warning
    assert blas_warnings({"OPENBLAS_CORETYPE": " zen "}, AVX512, "blas")


def test_no_warning_when_the_core_is_right_or_unknown_or_the_cpu_has_no_avx512():
    assert blas_warnings({}, AVX512, "blas") == []
    assert blas_warnings({"OPENBLAS_CORETYPE": "SkylakeX"}, AVX512, "blas") == []
    assert (
        blas_warnings({"OPENBLAS_CORETYPE": "Haswell"}, {"avx2", "fma"}, "blas") == []
    )
    assert blas_warnings({"OPENBLAS_CORETYPE": "NeoverseN1"}, AVX512, "blas") == []


def test_no_warning_when_the_training_step_uses_fastvaes_own_gemm():
    assert blas_warnings({"OPENBLAS_CORETYPE": "Haswell"}, AVX512, "own") == []


def test_show_config_reports_threads_blas_and_the_core_setting(capsys):
    text = fastvae.show_config()
    assert capsys.readouterr().out.strip() == text
    assert f"fastvae {fastvae.__version__}" in text
    assert "OpenMP:" in text and "BLAS:" in text and "OPENBLAS_CORETYPE:" in text
    assert "GEMM of the training step:" in text


def test_importing_an_unbuilt_source_tree_says_what_to_do(tmp_path):
    """Python run from a source tree imports that tree, compiled or not."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    src = Path(fastvae.__file__).parent
    shutil.copytree(
        src,
        tmp_path / "fastvae",
        ignore=shutil.ignore_patterns("*.so", "*.pyd", "include", "__pycache__"),
    )
    # -S: no site-packages, so an editable install's import hook cannot win
    # over the working directory (as it can when developing, not for users)
    proc = subprocess.run(
        [sys.executable, "-S", "-c", "import fastvae"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0
    assert "fastvae's compiled modules are missing" in proc.stderr
    assert "pip install -e ." in proc.stderr
