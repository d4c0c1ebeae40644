"""The one-thread default every stage process gets."""

from neurossl.job_env import BLAS_THREAD_VARIABLES, one_thread_per_job


def test_unset_thread_counts_become_one_and_a_users_choice_stays():
    environ = {"OMP_NUM_THREADS": "4", "PATH": "/bin"}
    one_thread_per_job(environ)
    assert environ["OMP_NUM_THREADS"] == "4"
    assert all(environ[v] == "1" for v in BLAS_THREAD_VARIABLES if v != "OMP_NUM_THREADS")
    assert environ["PATH"] == "/bin"
