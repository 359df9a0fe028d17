"""Package discovery: `kernels/` and `tasks/` install as `mambaseq.kernels` and `mambaseq.tasks`.

A top-level `kernels` package would shadow Hugging Face's `kernels` package that transformers probes,
so the two folders live at the repository top level but are only importable under `mambaseq.`.
"""
from setuptools import find_packages, setup


def _packages_under(prefix: str, directory: str) -> list[str]:
    return [prefix] + [f"{prefix}.{name}" for name in find_packages(directory)]


setup(
    packages=find_packages(include=["mambaseq", "mambaseq.*"])
    + _packages_under("mambaseq.kernels", "kernels")
    + _packages_under("mambaseq.tasks", "tasks"),
)
