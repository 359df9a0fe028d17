"""What a Triton launch compiles to on sm_90, without a GPU: registers, spills and SASS of the cubin that a real
launch with the same arguments would get (Triton's bundled ptxas, cuobjdump and nvdisasm).

Launchers run on meta tensors while `recorded_launches` stands in for their kernels; each recorded call is then
compiled with the same constexprs, warps, stages and integer specialization (divisible by 16, or 1).
"""
from __future__ import annotations

import contextlib
import inspect
import os
import re
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from types import ModuleType

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

POINTER_TYPES = {torch.float32: "*fp32", torch.bfloat16: "*bf16", torch.float16: "*fp16", torch.int64: "*i64",
                 torch.int32: "*i32", torch.int8: "*i8", torch.bool: "*i1"}
TOOLS = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin")


def tools_available() -> bool:
    """Whether this Triton wheel ships the CUDA binary tools the report needs."""
    return all(os.path.exists(os.path.join(TOOLS, tool)) for tool in ("cuobjdump", "nvdisasm"))


class LaunchRecorder:
    """Stands in for a @triton.jit kernel: `kernel[grid](*args, **kwargs)` records the call instead of running it."""

    def __init__(self, kernel):
        self.kernel, self.calls = kernel, []

    def __getitem__(self, grid) -> Callable[..., None]:
        return lambda *args, **kwargs: self.calls.append((args, kwargs))


@contextlib.contextmanager
def recorded_launches(*modules: ModuleType) -> Iterator[dict[str, LaunchRecorder]]:
    """Within the block, every @triton.jit kernel that `modules` hold is a `LaunchRecorder` (one per kernel name,
    shared by the modules); the kernels are put back on exit."""
    recorders: dict[str, LaunchRecorder] = {}
    for module in modules:
        for name, value in vars(module).items():
            if isinstance(value, triton.runtime.jit.JITFunction):
                recorders.setdefault(name, LaunchRecorder(value))
                setattr(module, name, recorders[name])
    try:
        yield recorders
    finally:
        for module in modules:
            for name, recorder in recorders.items():
                if getattr(module, name, None) is recorder:
                    setattr(module, name, recorder.kernel)


def compile_launch(kernel, args: tuple, kwargs: dict):
    """The sm_90 compilation a real launch of `kernel` with these arguments would get."""
    names = list(inspect.signature(kernel.fn).parameters)
    values = dict(zip(names, args)) | {k: v for k, v in kwargs.items() if k in names}
    options = {k: v for k, v in kwargs.items() if k not in names}
    constants = {name: value for name, value in values.items()
                 if value is None or isinstance(value, int) and value == 1 or name in kwargs}
    signature = {name: "constexpr" if name in constants else POINTER_TYPES[value.dtype]
                 if isinstance(value, torch.Tensor) else "i64" if abs(value) >= 2 ** 31 else "i32"
                 for name, value in values.items()}
    aligned = {(index,): [["tt.divisibility", 16]] for index, name in enumerate(names)
               if signature[name] != "constexpr" and (isinstance(values[name], torch.Tensor) or values[name] % 16 == 0)}
    source = ASTSource(kernel, signature, constants, aligned)
    return triton.compile(source, target=GPUTarget("cuda", 90, 32), options=options)


def _tool_output(tool: str, option: str, cubin: bytes) -> str:
    with tempfile.NamedTemporaryFile(suffix=".cubin") as file:
        file.write(cubin)
        file.flush()
        return subprocess.run([os.path.join(TOOLS, tool), option, file.name], capture_output=True, text=True,
                              check=True).stdout


def disassembly(cubin: bytes) -> str:
    """The cubin's SASS, as `nvdisasm -c` prints it."""
    return _tool_output("nvdisasm", "-c", cubin)


def cubin_report(cubin: bytes) -> dict[str, int]:
    """Registers and stack (spill) bytes per thread, SASS instructions and exponentials of a cubin."""
    usage = _tool_output("cuobjdump", "-res-usage", cubin)
    sass = disassembly(cubin)
    return dict(registers=int(re.search(r"REG:(\d+)", usage).group(1)),
                stack=int(re.search(r"STACK:(\d+)", usage).group(1)),
                instructions=len(re.findall(r"/\*[0-9a-f]{4,}\*/\s+[^;]*;", sass)),
                exponentials=sass.count("MUFU.EX2"))
