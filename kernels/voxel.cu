// Matrix-free kernels of the regular hex8 voxel grid; the NumPy twins in voxel.py define the
// layout and semantics and are the reference these kernels are tested against.
//
// Nodal vectors are (nz+1, ny+1, nx+1, 3) in C order, moduli E are (nz, ny, nx), element dofs
// are corner-major in VTK hex8 order. matvec and diagonal run one thread per node of the node
// planes k0 <= k < k1 and gather from the (up to) 8 voxels around the node, so every output is
// written by exactly one thread: no atomics, and the same numbers on every run. strain runs one
// thread per element of the element planes e0 <= e < e1. Indices are 64-bit (grids of 10^8 nodes).
// The file compiles unchanged with nvcc / NVRTC and, through cuda_emulation.h, with g++ -x c++.
#ifndef __CUDACC__
#include "cuda_emulation.h"
#endif

typedef long long i64;

// corner offsets of the VTK hex8 order (0,0,0) (1,0,0) (1,1,0) (0,1,0) (0,0,1) (1,0,1) (1,1,1)
// (0,1,1), as bit tricks so the kernels need no constant memory
__device__ __forceinline__ i64 corner_i(int c) { return ((c + 1) >> 1) & 1; }
__device__ __forceinline__ i64 corner_j(int c) { return (c >> 1) & 1; }
__device__ __forceinline__ i64 corner_k(int c) { return c >> 2; }

__device__ __forceinline__ i64 first_index() {
    return (i64)blockIdx.x * (i64)blockDim.x + (i64)threadIdx.x;
}

__device__ __forceinline__ i64 grid_stride() { return (i64)blockDim.x * (i64)gridDim.x; }

// out[k - k0] = (A u)[k]: A = sum_e E_e P_e^T Ke P_e, gathered at each node from its voxels.
// u and out are stored as T, the sums are taken in TA (the type of Ke): TA = T for the plain
// products, TA = double with T = float for mixed precision's CG product (a smooth u's element
// forces cancel between neighbouring voxels, which float32 sums cannot resolve)
template <typename T, typename TE, typename TA>
__device__ void voxel_matvec_impl(const T* __restrict__ u, const TE* __restrict__ E,
                                  const TA* __restrict__ Ke, T* __restrict__ out, i64 nx, i64 ny,
                                  i64 nz, i64 k0, i64 k1) {
    const i64 sy = nx + 1, sz = (nx + 1) * (ny + 1);
    const i64 n = (k1 - k0) * sz;
    for (i64 idx = first_index(); idx < n; idx += grid_stride()) {
        const i64 i = idx % sy, j = (idx / sy) % (ny + 1), k = k0 + idx / sz;
        TA acc0 = 0, acc1 = 0, acc2 = 0;
        for (int c = 0; c < 8; ++c) {
            const i64 ei = i - corner_i(c), ej = j - corner_j(c), ek = k - corner_k(c);
            if (ei < 0 || ej < 0 || ek < 0 || ei >= nx || ej >= ny || ek >= nz) continue;
            const TA e = (TA)E[ei + nx * (ej + ny * ek)];
            if (e == (TA)0) continue;  // empty voxel: most of a bone's bounding box
            const i64 base = ei + sy * ej + sz * ek;
            TA f0 = 0, f1 = 0, f2 = 0;
            for (int b = 0; b < 8; ++b) {
                const T* ub = u + 3 * (base + corner_i(b) + sy * corner_j(b) + sz * corner_k(b));
                for (int q = 0; q < 3; ++q) {
                    const TA* row = Ke + (3 * b + q) * 24 + 3 * c;  // Ke[3b+q, 3c:3c+3]
                    const TA uq = (TA)ub[q];
                    f0 += row[0] * uq;
                    f1 += row[1] * uq;
                    f2 += row[2] * uq;
                }
            }
            acc0 += e * f0;
            acc1 += e * f1;
            acc2 += e * f2;
        }
        out[3 * idx] = (T)acc0;
        out[3 * idx + 1] = (T)acc1;
        out[3 * idx + 2] = (T)acc2;
    }
}

// out[k - k0] = diag(A) at node plane k: sum over the node's voxels of E_e kdiag[corner]
template <typename T, typename TE>
__device__ void voxel_diagonal_impl(const TE* __restrict__ E, const T* __restrict__ kdiag,
                                    T* __restrict__ out, i64 nx, i64 ny, i64 nz, i64 k0, i64 k1) {
    const i64 sy = nx + 1, sz = (nx + 1) * (ny + 1);
    const i64 n = (k1 - k0) * sz;
    for (i64 idx = first_index(); idx < n; idx += grid_stride()) {
        const i64 i = idx % sy, j = (idx / sy) % (ny + 1), k = k0 + idx / sz;
        T acc0 = 0, acc1 = 0, acc2 = 0;
        for (int c = 0; c < 8; ++c) {
            const i64 ei = i - corner_i(c), ej = j - corner_j(c), ek = k - corner_k(c);
            if (ei < 0 || ej < 0 || ek < 0 || ei >= nx || ej >= ny || ek >= nz) continue;
            const T e = (T)E[ei + nx * (ej + ny * ek)];
            acc0 += e * kdiag[3 * c];
            acc1 += e * kdiag[3 * c + 1];
            acc2 += e * kdiag[3 * c + 2];
        }
        out[3 * idx] = acc0;
        out[3 * idx + 1] = acc1;
        out[3 * idx + 2] = acc2;
    }
}

// out[e - e0] = B u_e: element-average strain (xx, yy, zz, xy, yz, xz) of element plane e
template <typename T>
__device__ void voxel_strain_impl(const T* __restrict__ u, const T* __restrict__ B,
                                  T* __restrict__ out, i64 nx, i64 ny, i64 nz, i64 e0, i64 e1) {
    (void)nz;
    const i64 sy = nx + 1, sz = (nx + 1) * (ny + 1);
    const i64 n = (e1 - e0) * nx * ny;
    for (i64 idx = first_index(); idx < n; idx += grid_stride()) {
        const i64 ei = idx % nx, ej = (idx / nx) % ny, ek = e0 + idx / (nx * ny);
        const i64 base = ei + sy * ej + sz * ek;
        T s[6] = {0, 0, 0, 0, 0, 0};
        for (int b = 0; b < 8; ++b) {
            const T* ub = u + 3 * (base + corner_i(b) + sy * corner_j(b) + sz * corner_k(b));
            for (int q = 0; q < 3; ++q) {
                const T uq = ub[q];
                for (int r = 0; r < 6; ++r) s[r] += B[r * 24 + 3 * b + q] * uq;
            }
        }
        for (int r = 0; r < 6; ++r) out[6 * idx + r] = s[r];
    }
}

// C entry points, named <kernel>_<compute dtype>_<modulus dtype> (strain has no modulus)
#define VOXEL_MATVEC(NAME, T, TE)                                                                 \
    extern "C" __global__ void NAME(const T* u, const TE* E, const T* Ke, T* out, i64 nx, i64 ny, \
                                    i64 nz, i64 k0, i64 k1) {                                     \
        voxel_matvec_impl<T, TE, T>(u, E, Ke, out, nx, ny, nz, k0, k1);                           \
    }
// float32 u, E and out, double Ke and sums: mixed precision's product (voxel_matvec_acc)
#define VOXEL_MATVEC_ACC(NAME, T, TE, TA)                                                         \
    extern "C" __global__ void NAME(const T* u, const TE* E, const TA* Ke, T* out, i64 nx,       \
                                    i64 ny, i64 nz, i64 k0, i64 k1) {                             \
        voxel_matvec_impl<T, TE, TA>(u, E, Ke, out, nx, ny, nz, k0, k1);                          \
    }
#define VOXEL_DIAGONAL(NAME, T, TE)                                                        \
    extern "C" __global__ void NAME(const TE* E, const T* kdiag, T* out, i64 nx, i64 ny,   \
                                    i64 nz, i64 k0, i64 k1) {                              \
        voxel_diagonal_impl<T, TE>(E, kdiag, out, nx, ny, nz, k0, k1);                     \
    }
#define VOXEL_STRAIN(NAME, T)                                                                   \
    extern "C" __global__ void NAME(const T* u, const T* B, T* out, i64 nx, i64 ny, i64 nz,     \
                                    i64 e0, i64 e1) {                                           \
        voxel_strain_impl<T>(u, B, out, nx, ny, nz, e0, e1);                                    \
    }

VOXEL_MATVEC(voxel_matvec_f64_f64, double, double)
VOXEL_MATVEC(voxel_matvec_f64_f32, double, float)
VOXEL_MATVEC(voxel_matvec_f32_f32, float, float)
VOXEL_MATVEC(voxel_matvec_f32_f64, float, double)
VOXEL_MATVEC_ACC(voxel_matvec_acc_f32_f32, float, float, double)
VOXEL_DIAGONAL(voxel_diagonal_f64_f64, double, double)
VOXEL_DIAGONAL(voxel_diagonal_f64_f32, double, float)
VOXEL_DIAGONAL(voxel_diagonal_f32_f32, float, float)
VOXEL_DIAGONAL(voxel_diagonal_f32_f64, float, double)
VOXEL_STRAIN(voxel_strain_f64, double)
VOXEL_STRAIN(voxel_strain_f32, float)
