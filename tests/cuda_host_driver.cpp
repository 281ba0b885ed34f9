// Host driver for tests/test_cuda_kernels.py: compiled with g++ together with kernels/voxel.cu
// (built against cuda_emulation.h) into a shared library, so that ctypes can run every kernel of
// the .cu serially on the CPU, with an explicit grid and block, and compare it with its NumPy twin.
#include "cuda_emulation.h"

#include <cstring>

typedef long long i64;

// the constant reference stiffness of voxel.cu (plain globals in the host build): the wrappers
// copy the Ke they are given into it before the launch, as kernels/cuda.py does on the device
extern double voxel_ke_f64[576];
extern float voxel_ke_f32[576];
inline void upload_ke(const double* Ke) { std::memcpy(voxel_ke_f64, Ke, sizeof voxel_ke_f64); }
inline void upload_ke(const float* Ke) { std::memcpy(voxel_ke_f32, Ke, sizeof voxel_ke_f32); }

#define HOST_MATVEC(NAME, T, TE)                                                               \
    extern "C" void NAME(const T*, const TE*, T*, i64, i64, i64, i64, i64);                    \
    extern "C" void host_##NAME(unsigned grid, unsigned block, const T* u, const TE* E,         \
                                const T* Ke, T* out, i64 nx, i64 ny, i64 nz, i64 k0, i64 k1) { \
        upload_ke(Ke);                                                                         \
        LAUNCH(NAME, dim3(grid), dim3(block), u, E, out, nx, ny, nz, k0, k1);                  \
    }
#define HOST_MATVEC_ACC(NAME, T, TE, TA)                                                        \
    extern "C" void NAME(const T*, const TE*, T*, i64, i64, i64, i64, i64);                     \
    extern "C" void host_##NAME(unsigned grid, unsigned block, const T* u, const TE* E,         \
                                const TA* Ke, T* out, i64 nx, i64 ny, i64 nz, i64 k0, i64 k1) { \
        upload_ke(Ke);                                                                          \
        LAUNCH(NAME, dim3(grid), dim3(block), u, E, out, nx, ny, nz, k0, k1);                   \
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

#define HOST_SMOOTH(NAME, T, TE)                                                                \
    extern "C" void NAME(const T*, const T*, const TE*, const T*, const unsigned char*, T, T*,    \
                         i64, i64, i64, i64, i64, int);                                           \
    extern "C" void host_##NAME(unsigned grid, unsigned block, const T* z, const T* r,            \
                                const TE* E, const T* Ke, const T* kdiag,                         \
                                const unsigned char* bits, T omega, T* out, i64 nx, i64 ny,       \
                                i64 nz, i64 k0, i64 k1, int mode) {                               \
        upload_ke(Ke);                                                                            \
        LAUNCH(NAME, dim3(grid), dim3(block), z, r, E, kdiag, bits, omega, out, nx, ny, nz, k0,   \
               k1, mode);                                                                         \
    }
#define HOST_CG_PRODUCT(NAME, T, TE, TA)                                                        \
    extern "C" void NAME(const T*, const TE*, const unsigned char*, T*, double*, i64, i64, i64,  \
                         i64, i64);                                                              \
    extern "C" void host_##NAME(unsigned grid, unsigned block, const T* p, const TE* E,          \
                                const TA* Ke, const unsigned char* bits, T* out, double* partial, \
                                i64 nx, i64 ny, i64 nz, i64 k0, i64 k1) {                        \
        upload_ke(Ke);                                                                           \
        LAUNCH(NAME, dim3(grid), dim3(block), p, E, bits, out, partial, nx, ny, nz, k0, k1);     \
    }
#define HOST_MASK(NAME, T)                                                                      \
    extern "C" void NAME(T*, const unsigned char*, i64, i64, i64, i64);                         \
    extern "C" void host_##NAME(unsigned grid, unsigned block, T* v, const unsigned char* bits, \
                                i64 nx, i64 ny, i64 k0, i64 k1) {                               \
        LAUNCH(NAME, dim3(grid), dim3(block), v, bits, nx, ny, k0, k1);                         \
    }
#define HOST_RESTRICT(NAME, T)                                                                   \
    extern "C" void NAME(const T*, T*, const unsigned char*, i64, i64, i64, i64, i64, int, int,  \
                         int, i64, i64, int);                                                    \
    extern "C" void host_##NAME(unsigned grid, unsigned block, const T* t, T* rc,                \
                                const unsigned char* bits_c, i64 nfx, i64 nfy, i64 ncx, i64 ncy, \
                                i64 ncz, int fx, int fy, int fz, i64 k0, i64 m, int whole) {     \
        LAUNCH(NAME, dim3(grid), dim3(block), t, rc, bits_c, nfx, nfy, ncx, ncy, ncz, fx, fy,    \
               fz, k0, m, whole);                                                                \
    }
#define HOST_PROLONG(NAME, T)                                                                    \
    extern "C" void NAME(const T*, const unsigned char*, T*, i64, i64, i64, i64, int, int, int,  \
                         i64, i64);                                                              \
    extern "C" void host_##NAME(unsigned grid, unsigned block, const T* zc,                      \
                                const unsigned char* bits, T* z, i64 nfx, i64 nfy, i64 ncx,      \
                                i64 ncy, int fx, int fy, int fz, i64 k0, i64 k1) {               \
        LAUNCH(NAME, dim3(grid), dim3(block), zc, bits, z, nfx, nfy, ncx, ncy, fx, fy, fz, k0,    \
               k1);                                                                              \
    }

#define HOST_DOT(NAME, TA, TB)                                                              \
    extern "C" void NAME(const TA*, const TB*, double*, i64);                               \
    extern "C" void host_##NAME(unsigned grid, unsigned block, const TA* a, const TB* b,    \
                                double* partial, i64 n) {                                   \
        LAUNCH(NAME, dim3(grid), dim3(block), a, b, partial, n);                            \
    }
#define HOST_CG_UPDATE(NAME, T)                                                              \
    extern "C" void NAME(double*, T*, const T*, const T*, double, double*, i64);             \
    extern "C" void host_##NAME(unsigned grid, unsigned block, double* x, T* r, const T* p,  \
                                const T* q, double alpha, double* partial, i64 n) {          \
        LAUNCH(NAME, dim3(grid), dim3(block), x, r, p, q, alpha, partial, n);                \
    }
#define HOST_CG_DIRECTION(NAME, T)                                                           \
    extern "C" void NAME(T*, const T*, double, i64);                                         \
    extern "C" void host_##NAME(unsigned grid, unsigned block, T* p, const T* z, double beta, \
                                i64 n) {                                                     \
        LAUNCH(NAME, dim3(grid), dim3(block), p, z, beta, n);                                \
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
HOST_SMOOTH(voxel_smooth_f64_f64, double, double)
HOST_SMOOTH(voxel_smooth_f64_f32, double, float)
HOST_SMOOTH(voxel_smooth_f32_f32, float, float)
HOST_SMOOTH(voxel_smooth_f32_f64, float, double)
HOST_MASK(voxel_mask_f64, double)
HOST_MASK(voxel_mask_f32, float)
HOST_RESTRICT(voxel_restrict_f64, double)
HOST_RESTRICT(voxel_restrict_f32, float)
HOST_PROLONG(voxel_prolong_f64, double)
HOST_PROLONG(voxel_prolong_f32, float)
HOST_DOT(vector_dot_f64_f64, double, double)
HOST_DOT(vector_dot_f64_f32, double, float)
HOST_DOT(vector_dot_f32_f64, float, double)
HOST_DOT(vector_dot_f32_f32, float, float)
HOST_CG_UPDATE(cg_update_f64, double)
HOST_CG_UPDATE(cg_update_f32, float)
HOST_CG_DIRECTION(cg_direction_f64, double)
HOST_CG_DIRECTION(cg_direction_f32, float)
HOST_CG_PRODUCT(voxel_cg_product_f64_f64, double, double, double)
HOST_CG_PRODUCT(voxel_cg_product_f64_f32, double, float, double)
HOST_CG_PRODUCT(voxel_cg_product_f32_f32, float, float, float)
HOST_CG_PRODUCT(voxel_cg_product_f32_f64, float, double, float)
HOST_CG_PRODUCT(voxel_cg_product_acc_f32_f32, float, float, double)
