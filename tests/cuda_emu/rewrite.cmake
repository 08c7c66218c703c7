# Rewrites the kernel launches of a .cu file for the CPU emulation (see include/cuda_runtime.h):
# k<<<grid, block, smem, stream>>>(args) -> k | pg_emu_config(grid, block, smem, stream) |
# pg_emu_args(args). Usage: cmake -DIN=file.cu -DOUT=file.cpp -P rewrite.cmake
file(READ "${IN}" text)
string(REPLACE "<<<" " | pg_emu_config(" text "${text}")
string(REPLACE ">>>(" ") | pg_emu_args(" text "${text}")
file(WRITE "${OUT}" "// Generated from ${IN} by tests/cuda_emu/rewrite.cmake: do not edit.\n#line 1 \"${IN}\"\n${text}")
