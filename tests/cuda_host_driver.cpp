// Host driver for tests/test_cuda_kernels.py: compiled with g++ together with kernels/voxel.cu
// (built against cuda_emulation.h) into a shared library, so that ctypes can run every kernel of
// the .cu serially on the CPU, with an explicit grid and block, and compare it with its NumPy twin.
#include "cuda_emulation.h"

typedef long long i64;

#define HOST_MATVEC(NAME, T, TE)                                                               \
    extern "C" void NAME(const T*, const TE*, const T*, T*, i64, i64, i64, i64, i64);          \
    extern "C" void host_##NAME(unsigned grid, unsigned block, const T* u, const TE* E,         \
                                const T* Ke, T* out, i64 nx, i64 ny, i64 nz, i64 k0, i64 k1) { \
        LAUNCH(NAME, dim3(grid), dim3(block), u, E, Ke, out, nx, ny, nz, k0, k1);              \
    }
#define HOST_MATVEC_ACC(NAME, T, TE, TA)                                                        \
    extern "C" void NAME(const T*, const TE*, const TA*, T*, i64, i64, i64, i64, i64);         \
    extern "C" void host_##NAME(unsigned grid, unsigned block, const T* u, const TE* E,         \
                                const TA* Ke, T* out, i64 nx, i64 ny, i64 nz, i64 k0, i64 k1) { \
        LAUNCH(NAME, dim3(grid), dim3(block), u, E, Ke, out, nx, ny, nz, k0, k1);              \
    }
#define HOST_DIAGONAL(NAME, T, TE)                                                              \
    extern "C" void NAME(const TE*, const T*, T*, i64, i64, i64, i64, i64);                     \
    extern "C" void host_##NAME(unsigned grid, unsigned block, const TE* E, const T* kdiag,     \
                                T* out, i64 nx, i64 ny, i64 nz, i64 k0, i64 k1) {               \
        LAUNCH(NAME, dim3(grid), dim3(block), E, kdiag, out, nx, ny, nz, k0, k1);               \
    }
#define HOST_STRAIN(NAME, T)                                                                    \
    extern "C" void NAME(const T*, const T*, T*, i64, i64, i64, i64, i64);                      \
    extern "C" void host_##NAME(unsigned grid, unsigned block, const T* u, const T* B, T* out,  \
                                i64 nx, i64 ny, i64 nz, i64 e0, i64 e1) {                       \
        LAUNCH(NAME, dim3(grid), dim3(block), u, B, out, nx, ny, nz, e0, e1);                   \
    }

HOST_MATVEC(voxel_matvec_f64_f64, double, double)
HOST_MATVEC(voxel_matvec_f64_f32, double, float)
HOST_MATVEC(voxel_matvec_f32_f32, float, float)
HOST_MATVEC(voxel_matvec_f32_f64, float, double)
HOST_MATVEC_ACC(voxel_matvec_acc_f32_f32, float, float, double)
HOST_DIAGONAL(voxel_diagonal_f64_f64, double, double)
HOST_DIAGONAL(voxel_diagonal_f64_f32, double, float)
HOST_DIAGONAL(voxel_diagonal_f32_f32, float, float)
HOST_DIAGONAL(voxel_diagonal_f32_f64, float, double)
HOST_STRAIN(voxel_strain_f64, double)
HOST_STRAIN(voxel_strain_f32, float)
