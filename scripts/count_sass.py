"""Instructions per (channel, state, step) of the selective-scan kernels' main loops, without a GPU.

Compiles each kernel for sm_90 (Triton's bundled ptxas), disassembles the cubin (nvdisasm), takes the longest
backward branch as the main loop and divides its SASS instruction count by the (channel, state, step) elements one
lane handles per iteration. Flags are the training setting of ANCHORS.md (D, z, delta bias, softplus, even shapes).

    python scripts/count_sass.py
"""
from __future__ import annotations

import collections
import inspect
import re

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from triton.experimental.gluon._runtime import GluonASTSource

from mambaseq.kernels.triton.compiled_resources import disassembly
from mambaseq.kernels.triton.gluon_math import channel_sum_layout, scan_layout
from mambaseq.kernels.triton.selective_scan_bwd import selective_scan_bwd_kernel
from mambaseq.kernels.triton.selective_scan_bwd_gluon import selective_scan_bwd_gluon_kernel
from mambaseq.kernels.triton.selective_scan_fwd import selective_scan_fwd_kernel
from mambaseq.kernels.triton.selective_scan_fwd_gluon import selective_scan_fwd_gluon_kernel

BF16_POINTERS = {"u_ptr", "delta_ptr", "z_ptr", "y_ptr", "dy_ptr", "du_ptr", "dz_ptr", "ddelta_ptr", "B_ptr", "C_ptr",
                 "C_reversed_ptr"}
UNALIGNED_INTEGERS = {"d_state", "channels_per_group", "n_chunks", "n_steps", "n_state_chunks"}
FEATURES = dict(HAS_D=True, HAS_Z=True, HAS_DELTA_BIAS=True, DELTA_SOFTPLUS=True, HAS_RESET=False, EVEN_L=True,
                EVEN_N=True)


def loop_instructions(kernel, constants: dict, num_warps: int) -> collections.Counter:
    """Opcode counts of the longest loop of `kernel` compiled for sm_90 with `constants`."""
    names = list(inspect.signature(kernel.fn).parameters)
    signature = {name: "constexpr" if name in constants else
                 ("*i8" if name == "reset_ptr" else "*bf16" if name in BF16_POINTERS else "*fp32")
                 if name.endswith("_ptr") else "i32" for name in names}
    aligned = {(index,): [["tt.divisibility", 16]] for index, name in enumerate(names)
               if signature[name] != "constexpr" and name not in UNALIGNED_INTEGERS}
    source = (GluonASTSource if kernel.is_gluon() else ASTSource)(kernel, signature, constants, aligned)
    compiled = triton.compile(source, target=GPUTarget("cuda", 90, 32), options=dict(num_warps=num_warps))
    lines = disassembly(compiled.asm["cubin"]).splitlines()
    labels = {line.strip()[:-1]: index for index, line in enumerate(lines) if re.match(r"\s*\.L_x_\d+:", line)}
    loop = max(((labels[target], index) for index, line in enumerate(lines)
                for target in re.findall(r"BRA `\((\.L_x_\d+)\)", line)
                if labels.get(target, index) < index), key=lambda span: span[1] - span[0])
    opcodes = (re.search(r"\*/\s+(?:@!?U?P\w+\s+)?([A-Z0-9_]+)", line) for line in lines[loop[0]:loop[1] + 1])
    return collections.Counter(match.group(1) for match in opcodes if match)


def main() -> None:
    triton_tile = dict(BLOCK_D=1, BLOCK_N=16, CHUNK=32)
    gluon_tile = dict(LAYOUT=scan_layout(4, 4, 8, 2), BLOCK_D=16, BLOCK_N=16, STEPS=8, EVEN_D=True)
    cases = {
        "Triton forward (1 channel, 32 steps, 1 warp)": (
            selective_scan_fwd_kernel, dict(FEATURES, HAS_INITIAL_STATE=False, STORE_FINAL_STATE=True,
                                            STORE_CHUNK_STATES=True, SUMMARY=False, **triton_tile), 1, 16 * 32 // 32),
        "Triton backward (1 channel, 32 steps, 1 warp)": (
            selective_scan_bwd_kernel, dict(FEATURES, HAS_DFINAL_STATE=False, STORE_DINITIAL_STATE=False,
                                            **triton_tile), 1, 16 * 32 // 32),
        "Gluon forward (4 states x 8 steps per lane)": (
            selective_scan_fwd_gluon_kernel, dict(FEATURES, HAS_INITIAL_STATE=False, STORE_CHUNK_STATES=True,
                                                  STATE_EVERY=1, **gluon_tile), 2, 4 * 8),
        "Gluon backward (4 states x 8 steps per lane)": (
            selective_scan_bwd_gluon_kernel, dict(FEATURES, HAS_DFINAL_STATE=False,
                                                  SUM_LAYOUT=channel_sum_layout(16, 16, 8, 2), **gluon_tile), 2, 4 * 8),
    }
    for name, (kernel, constants, num_warps, elements_per_lane) in cases.items():
        counts = loop_instructions(kernel, constants, num_warps)
        top = ", ".join(f"{opcode} {count}" for opcode, count in counts.most_common(6))
        print(f"{name}: {sum(counts.values()) / elements_per_lane:.1f} instructions per element ({top})")


if __name__ == "__main__":
    main()
