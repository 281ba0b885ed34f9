// Matrix-free kernels of the regular hex8 voxel grid; the NumPy twins in voxel.py define the
// layout and semantics and are the reference these kernels are tested against.
//
// Nodal vectors are (nz+1, ny+1, nx+1, 3) in C order, moduli E are (nz, ny, nx), element dofs
// are corner-major in VTK hex8 order. matvec, diagonal and the multigrid's fused steps (smooth,
// mask, prolong) run one thread per node of the node planes k0 <= k < k1 and gather from the (up
// to) 8 voxels around the node; restrict runs one thread per coarse node and gathers its fine
// neighbours; so every output is written by exactly one thread: no atomics, and the same numbers
// on every run. strain runs one thread per element of the element planes e0 <= e < e1. The
// vector steps of CG reduce into one partial sum per thread, which the launcher adds. Offsets are
// 64-bit (grids of 10^9 nodes); a launch covers fewer than 2^32 items (split3).
// The file compiles unchanged with nvcc / NVRTC and, through cuda_emulation.h, with g++ -x c++.
#ifndef __CUDACC__
#include "cuda_emulation.h"
#endif

typedef long long i64;

#ifdef __CUDACC__
#define UNROLL _Pragma("unroll")
#else
#define UNROLL
#endif

// The reference stiffness Ke (24 x 24, row-major, E = 1) of the launch, in constant memory: all
// threads of a warp read the same entry at the same time, which constant memory serves as one
// broadcast, and with the loops unrolled every entry is an operand of its multiply-add instead
// of a load (576 per node). The launcher copies the level's Ke here before each launch, on the
// launch's stream (kernels/cuda.py: _upload_ke; the host driver: memcpy).
__constant__ double voxel_ke_f64[576];
__constant__ float voxel_ke_f32[576];

template <typename TA>
__device__ __forceinline__ TA ke(int i);
template <>
__device__ __forceinline__ double ke<double>(int i) {
    return voxel_ke_f64[i];
}
template <>
__device__ __forceinline__ float ke<float>(int i) {
    return voxel_ke_f32[i];
}

// corner offsets of the VTK hex8 order (0,0,0) (1,0,0) (1,1,0) (0,1,0) (0,0,1) (1,0,1) (1,1,1)
// (0,1,1), as bit tricks so the kernels need no constant memory
__device__ __forceinline__ i64 corner_i(int c) { return ((c + 1) >> 1) & 1; }
__device__ __forceinline__ i64 corner_j(int c) { return (c >> 1) & 1; }
__device__ __forceinline__ i64 corner_k(int c) { return c >> 2; }

__device__ __forceinline__ i64 first_index() {
    return (i64)blockIdx.x * (i64)blockDim.x + (i64)threadIdx.x;
}

__device__ __forceinline__ i64 grid_stride() { return (i64)blockDim.x * (i64)gridDim.x; }

// (a, b, c) of item idx of a launch over c-planes of nb rows of na items: idx = a + na (b + nb c).
// In 32-bit arithmetic: the launchers refuse launches of 2^32 items or more (kernels/cuda.py,
// MAX_ITEMS), and a 64-bit division costs a GPU a subroutine of about a hundred instructions,
// three per item, against a few for 32 bits
__device__ __forceinline__ void split3(i64 idx, i64 na, i64 nb, i64* a, i64* b, i64* c) {
    const unsigned int u = (unsigned int)idx, ua = (unsigned int)na, ub = (unsigned int)nb;
    const unsigned int row = u / ua, plane = row / ub;
    *a = (i64)(u - row * ua);
    *b = (i64)(row - plane * ub);
    *c = (i64)plane;
}

// f = (A u) at node (i, j, k), gathered from its (up to) 8 voxels, and S = the sum of their
// moduli (the node's stiffness diagonal over the reference one's). u is stored as T, the sums are
// taken in TA (the type of Ke): TA = T for the plain products, TA = double with T = float for
// mixed precision's CG product (a smooth u's element forces cancel between neighbouring voxels,
// which float32 sums cannot resolve)
template <typename T, typename TE, typename TA>
__device__ __forceinline__ void node_product(const T* __restrict__ u, const TE* __restrict__ E,
                                             i64 nx, i64 ny, i64 nz, i64 i, i64 j, i64 k, TA f[3],
                                             TA* S) {
    const i64 sy = nx + 1, sz = (nx + 1) * (ny + 1);
    TA acc0 = 0, acc1 = 0, acc2 = 0, s = 0;
    UNROLL
    for (int c = 0; c < 8; ++c) {
        const i64 ei = i - corner_i(c), ej = j - corner_j(c), ek = k - corner_k(c);
        if (ei < 0 || ej < 0 || ek < 0 || ei >= nx || ej >= ny || ek >= nz) continue;
        const TA e = (TA)E[ei + nx * (ej + ny * ek)];
        if (e == (TA)0) continue;  // empty voxel: most of a bone's bounding box
        s += e;
        const i64 base = ei + sy * ej + sz * ek;
        TA f0 = 0, f1 = 0, f2 = 0;
        UNROLL
        for (int b = 0; b < 8; ++b) {
            const T* ub = u + 3 * (base + corner_i(b) + sy * corner_j(b) + sz * corner_k(b));
            UNROLL
            for (int q = 0; q < 3; ++q) {
                const int row = (3 * b + q) * 24 + 3 * c;  // Ke[3b+q, 3c:3c+3] (Ke symmetric)
                const TA uq = (TA)ub[q];
                f0 += ke<TA>(row) * uq;
                f1 += ke<TA>(row + 1) * uq;
                f2 += ke<TA>(row + 2) * uq;
            }
        }
        acc0 += e * f0;
        acc1 += e * f1;
        acc2 += e * f2;
    }
    f[0] = acc0;
    f[1] = acc1;
    f[2] = acc2;
    *S = s;
}

// the sum of the moduli of the voxels around node (i, j, k)
template <typename T, typename TE>
__device__ __forceinline__ T node_moduli(const TE* __restrict__ E, i64 nx, i64 ny, i64 nz, i64 i,
                                         i64 j, i64 k) {
    T s = 0;
    for (int c = 0; c < 8; ++c) {
        const i64 ei = i - corner_i(c), ej = j - corner_j(c), ek = k - corner_k(c);
        if (ei < 0 || ej < 0 || ek < 0 || ei >= nx || ej >= ny || ek >= nz) continue;
        s += (T)E[ei + nx * (ej + ny * ek)];
    }
    return s;
}

// whether dof q of a node with support flags b is free: bits 0-2 supported x/y/z, bit 3 no voxel
__device__ __forceinline__ bool free_dof(unsigned char b, int q) {
    return ((b >> q) & 1) == 0 && (b & 8) == 0;
}

// out[k - k0] = (A u)[k]: A = sum_e E_e P_e^T Ke P_e, gathered at each node from its voxels
template <typename T, typename TE, typename TA>
__device__ void voxel_matvec_impl(const T* __restrict__ u, const TE* __restrict__ E,
                                  T* __restrict__ out, i64 nx, i64 ny, i64 nz, i64 k0, i64 k1) {
    const i64 sy = nx + 1, sz = (nx + 1) * (ny + 1);
    const i64 n = (k1 - k0) * sz;
    for (i64 idx = first_index(); idx < n; idx += grid_stride()) {
        i64 i, j, k;
        split3(idx, sy, ny + 1, &i, &j, &k);
        k += k0;
        TA f[3], s;
        node_product<T, TE, TA>(u, E, nx, ny, nz, i, j, k, f, &s);
        out[3 * idx] = (T)f[0];
        out[3 * idx + 1] = (T)f[1];
        out[3 * idx + 2] = (T)f[2];
    }
}

// out[k - k0] = diag(A) at node plane k: sum over the node's voxels of E_e kdiag[corner]
template <typename T, typename TE>
__device__ void voxel_diagonal_impl(const TE* __restrict__ E, const T* __restrict__ kdiag,
                                    T* __restrict__ out, i64 nx, i64 ny, i64 nz, i64 k0, i64 k1) {
    const i64 sy = nx + 1, sz = (nx + 1) * (ny + 1);
    const i64 n = (k1 - k0) * sz;
    for (i64 idx = first_index(); idx < n; idx += grid_stride()) {
        i64 i, j, k;
        split3(idx, sy, ny + 1, &i, &j, &k);
        k += k0;
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
        i64 ei, ej, ek;
        split3(idx, nx, ny, &ei, &ej, &ek);
        ek += e0;
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

// The V-cycle's fused steps: one thread per node of the node planes k0 <= k < k1, each reading the
// grid once (twins in voxel.py: voxel_jacobi_first, voxel_jacobi, voxel_residual). With F the
// free-dof factor and D = kdiag[q] x (the sum of the node's moduli), out[k - k0] is
//   mode 0: omega F D^-1 r            (a damped Jacobi sweep from z = 0; z and Ke unused)
// (Ke: the constant voxel_ke_* of T, as for the products)
//   mode 1: omega F D^-1 (A z - r)    (the negative of a damped Jacobi sweep's update)
//   mode 2: F (r - A z)               (the residual)
template <typename T, typename TE>
__device__ void voxel_smooth_impl(const T* __restrict__ z, const T* __restrict__ r,
                                  const TE* __restrict__ E, const T* __restrict__ kdiag,
                                  const unsigned char* __restrict__ bits,
                                  T omega, T* __restrict__ out, i64 nx, i64 ny, i64 nz, i64 k0,
                                  i64 k1, int mode) {
    const i64 sy = nx + 1, sz = (nx + 1) * (ny + 1);
    const i64 n = (k1 - k0) * sz;
    for (i64 idx = first_index(); idx < n; idx += grid_stride()) {
        i64 i, j, k;
        split3(idx, sy, ny + 1, &i, &j, &k);
        k += k0;
        const i64 node = idx + k0 * sz;
        const unsigned char b = bits[node];
        T f[3] = {0, 0, 0}, s;
        if (mode == 0)
            s = node_moduli<T, TE>(E, nx, ny, nz, i, j, k);
        else
            node_product<T, TE, T>(z, E, nx, ny, nz, i, j, k, f, &s);
        for (int q = 0; q < 3; ++q) {
            const T rq = r[3 * node + q];
            T v = 0;
            if (free_dof(b, q)) {
                if (mode == 2) {
                    v = rq - f[q];
                } else {
                    const T d = s > (T)0 ? (T)1 / s / kdiag[q] * omega : (T)0;
                    v = mode == 0 ? d * rq : (f[q] - rq) * d;
                }
            }
            out[3 * idx + q] = v;
        }
    }
}

// CG's product in one pass: out[k - k0] = F (A p)[k] at the node planes k0 <= k < k1 (sums in TA,
// as voxel_matvec_impl) and partial[thread] = the sum of p . out over the thread's nodes in double
template <typename T, typename TE, typename TA>
__device__ void voxel_cg_product_impl(const T* __restrict__ p, const TE* __restrict__ E,
                                      const unsigned char* __restrict__ bits, T* __restrict__ out,
                                      double* __restrict__ partial, i64 nx, i64 ny, i64 nz, i64 k0,
                                      i64 k1) {
    const i64 sy = nx + 1, sz = (nx + 1) * (ny + 1);
    const i64 n = (k1 - k0) * sz;
    double acc = 0;
    for (i64 idx = first_index(); idx < n; idx += grid_stride()) {
        i64 i, j, k;
        split3(idx, sy, ny + 1, &i, &j, &k);
        k += k0;
        const i64 node = idx + k0 * sz;
        const unsigned char b = bits[node];
        TA f[3], s;
        node_product<T, TE, TA>(p, E, nx, ny, nz, i, j, k, f, &s);
        for (int q = 0; q < 3; ++q) {
            const T v = free_dof(b, q) ? (T)f[q] : (T)0;
            out[3 * idx + q] = v;
            acc += (double)p[3 * node + q] * (double)v;
        }
    }
    partial[first_index()] = acc;
}

// v[k - k0] *= F at the node planes k0 <= k < k1
template <typename T>
__device__ void voxel_mask_impl(T* __restrict__ v, const unsigned char* __restrict__ bits,
                                i64 nx, i64 ny, i64 k0, i64 k1) {
    const i64 sz = (nx + 1) * (ny + 1);
    const i64 n = (k1 - k0) * sz;
    for (i64 idx = first_index(); idx < n; idx += grid_stride()) {
        const unsigned char b = bits[idx + k0 * sz];
        for (int q = 0; q < 3; ++q)
            if (!free_dof(b, q)) v[3 * idx + q] = 0;
    }
}

// trilinear transfer weights along one axis of coarsening factor f: the fine node 2I takes 1 of
// coarse I, the fine nodes 2I -+ 1 take 1/2 (f = 1: the same node, weight 1)
__device__ __forceinline__ int transfer_span(int f) { return f == 2 ? 1 : 0; }

// rc += R t: t holds the fine node planes k0 <= k < k0 + m (rows of nfy x nfx nodes); one thread
// per coarse node of the coarse planes that range reaches, summing its fine neighbours in the range.
// whole != 0: t is the whole fine grid, and rc = F_c R t is written, not added to, with the coarse
// supports bits_c applied (a level of one range: no zeroing and no masking launch)
template <typename T>
__device__ void voxel_restrict_impl(const T* __restrict__ t, T* __restrict__ rc,
                                    const unsigned char* __restrict__ bits_c, i64 nfx, i64 nfy,
                                    i64 ncx, i64 ncy, i64 ncz, int fx, int fy, int fz, i64 k0,
                                    i64 m, int whole) {
    const i64 k1 = k0 + m;
    const i64 c0 = fz == 2 ? k0 / 2 : k0;
    i64 c1 = fz == 2 ? k1 / 2 + 1 : k1;
    if (c1 > ncz) c1 = ncz;
    if (c1 <= c0) return;
    const i64 plane = ncx * ncy;
    const i64 n = (c1 - c0) * plane;
    const int sx = transfer_span(fx), sy = transfer_span(fy), sz = transfer_span(fz);
    for (i64 idx = first_index(); idx < n; idx += grid_stride()) {
        i64 I, J, K;
        split3(idx, ncx, ncy, &I, &J, &K);
        K += c0;
        T acc0 = 0, acc1 = 0, acc2 = 0;
        for (int dk = -sz; dk <= sz; ++dk) {
            const i64 k = fz * K + dk;
            if (k < k0 || k >= k1) continue;
            const T wk = dk == 0 ? (T)1 : (T)0.5;
            for (int dj = -sy; dj <= sy; ++dj) {
                const i64 j = fy * J + dj;
                if (j < 0 || j >= nfy) continue;
                const T wj = dj == 0 ? wk : (T)0.5 * wk;
                for (int di = -sx; di <= sx; ++di) {
                    const i64 i = fx * I + di;
                    if (i < 0 || i >= nfx) continue;
                    const T w = di == 0 ? wj : (T)0.5 * wj;
                    const T* tf = t + 3 * (i + nfx * (j + nfy * (k - k0)));
                    acc0 += w * tf[0];
                    acc1 += w * tf[1];
                    acc2 += w * tf[2];
                }
            }
        }
        T* o = rc + 3 * (idx + c0 * plane);
        if (whole) {
            const unsigned char b = bits_c[idx + c0 * plane];
            o[0] = free_dof(b, 0) ? acc0 : (T)0;
            o[1] = free_dof(b, 1) ? acc1 : (T)0;
            o[2] = free_dof(b, 2) ? acc2 : (T)0;
        } else {
            o[0] += acc0;
            o[1] += acc1;
            o[2] += acc2;
        }
    }
}

// z[k] += F P zc at the fine node planes k0 <= k < k1: one thread per fine node, which takes the
// coarse node it coincides with, or the mean of the two (four, eight) it lies between
template <typename T>
__device__ void voxel_prolong_impl(const T* __restrict__ zc, const unsigned char* __restrict__ bits,
                                   T* __restrict__ z, i64 nfx, i64 nfy, i64 ncx, i64 ncy, int fx,
                                   int fy, int fz, i64 k0, i64 k1) {
    const i64 plane = nfx * nfy;
    const i64 n = (k1 - k0) * plane;
    for (i64 idx = first_index(); idx < n; idx += grid_stride()) {
        i64 i, j, k;
        split3(idx, nfx, nfy, &i, &j, &k);
        k += k0;
        const i64 node = idx + k0 * plane;
        const unsigned char b = bits[node];
        // the coarse nodes around: index lo and, on an odd fine node of a coarsened axis, lo + 1
        const i64 Ilo = fx == 2 ? i >> 1 : i, Jlo = fy == 2 ? j >> 1 : j;
        const i64 Klo = fz == 2 ? k >> 1 : k;
        const int ni = (fx == 2 && (i & 1)) ? 2 : 1, nj = (fy == 2 && (j & 1)) ? 2 : 1,
                  nk = (fz == 2 && (k & 1)) ? 2 : 1;
        const T w = (T)1 / (T)(ni * nj * nk);
        T acc0 = 0, acc1 = 0, acc2 = 0;
        for (int a = 0; a < nk; ++a)
            for (int bj = 0; bj < nj; ++bj)
                for (int c = 0; c < ni; ++c) {
                    const T* zf = zc + 3 * ((Ilo + c) + ncx * ((Jlo + bj) + ncy * (Klo + a)));
                    acc0 += zf[0];
                    acc1 += zf[1];
                    acc2 += zf[2];
                }
        T* o = z + 3 * node;
        if (free_dof(b, 0)) o[0] += w * acc0;
        if (free_dof(b, 1)) o[1] += w * acc1;
        if (free_dof(b, 2)) o[2] += w * acc2;
    }
}

// CG's vector steps over n items of flat arrays. Reductions without shared memory: every thread
// of the launch sums its grid-stride items in double into partial[thread], and the launcher sums
// the partials (twins in voxel.py: vector_dot, cg_update, cg_direction)

// partial[t] = sum of a * b over thread t's items
template <typename TA, typename TB>
__device__ void vector_dot_impl(const TA* __restrict__ a, const TB* __restrict__ b,
                                double* __restrict__ partial, i64 n) {
    double s = 0;
    for (i64 idx = first_index(); idx < n; idx += grid_stride())
        s += (double)a[idx] * (double)b[idx];
    partial[first_index()] = s;
}

// x += alpha p (x double), r -= alpha q; partial[t] = the sum of the new r^2 over t's items
template <typename T>
__device__ void cg_update_impl(double* __restrict__ x, T* __restrict__ r, const T* __restrict__ p,
                               const T* __restrict__ q, double alpha, double* __restrict__ partial,
                               i64 n) {
    const T a = (T)alpha;
    double s = 0;
    for (i64 idx = first_index(); idx < n; idx += grid_stride()) {
        x[idx] += alpha * (double)p[idx];
        const T rn = r[idx] - a * q[idx];
        r[idx] = rn;
        s += (double)rn * (double)rn;
    }
    partial[first_index()] = s;
}

// p = beta p + z
template <typename T>
__device__ void cg_direction_impl(T* __restrict__ p, const T* __restrict__ z, double beta, i64 n) {
    const T b = (T)beta;
    for (i64 idx = first_index(); idx < n; idx += grid_stride()) p[idx] = p[idx] * b + z[idx];
}

// C entry points, named <kernel>_<compute dtype>_<modulus dtype> (strain has no modulus)
#define VOXEL_MATVEC(NAME, T, TE)                                                              \
    extern "C" __global__ void NAME(const T* u, const TE* E, T* out, i64 nx, i64 ny, i64 nz,   \
                                    i64 k0, i64 k1) {                                          \
        voxel_matvec_impl<T, TE, T>(u, E, out, nx, ny, nz, k0, k1);                            \
    }
// float32 u, E and out, double Ke and sums: mixed precision's product (voxel_matvec_acc)
#define VOXEL_MATVEC_ACC(NAME, T, TE, TA)                                                      \
    extern "C" __global__ void NAME(const T* u, const TE* E, T* out, i64 nx, i64 ny, i64 nz,   \
                                    i64 k0, i64 k1) {                                          \
        voxel_matvec_impl<T, TE, TA>(u, E, out, nx, ny, nz, k0, k1);                           \
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

#define VOXEL_SMOOTH(NAME, T, TE)                                                             \
    extern "C" __global__ void NAME(const T* z, const T* r, const TE* E, const T* kdiag,        \
                                    const unsigned char* bits, T omega, T* out, i64 nx, i64 ny, \
                                    i64 nz, i64 k0, i64 k1, int mode) {                         \
        voxel_smooth_impl<T, TE>(z, r, E, kdiag, bits, omega, out, nx, ny, nz, k0, k1, mode);   \
    }
#define VOXEL_CG_PRODUCT(NAME, T, TE, TA)                                                      \
    extern "C" __global__ void NAME(const T* p, const TE* E, const unsigned char* bits, T* out, \
                                    double* partial, i64 nx, i64 ny, i64 nz, i64 k0, i64 k1) {  \
        voxel_cg_product_impl<T, TE, TA>(p, E, bits, out, partial, nx, ny, nz, k0, k1);          \
    }
#define VOXEL_MASK(NAME, T)                                                                      \
    extern "C" __global__ void NAME(T* v, const unsigned char* bits, i64 nx, i64 ny, i64 k0,     \
                                    i64 k1) {                                                    \
        voxel_mask_impl<T>(v, bits, nx, ny, k0, k1);                                             \
    }
#define VOXEL_RESTRICT(NAME, T)                                                                  \
    extern "C" __global__ void NAME(const T* t, T* rc, const unsigned char* bits_c, i64 nfx,     \
                                    i64 nfy, i64 ncx, i64 ncy, i64 ncz, int fx, int fy, int fz,  \
                                    i64 k0, i64 m, int whole) {                                  \
        voxel_restrict_impl<T>(t, rc, bits_c, nfx, nfy, ncx, ncy, ncz, fx, fy, fz, k0, m,       \
                               whole);                                                           \
    }
#define VOXEL_PROLONG(NAME, T)                                                                   \
    extern "C" __global__ void NAME(const T* zc, const unsigned char* bits, T* z, i64 nfx,       \
                                    i64 nfy, i64 ncx, i64 ncy, int fx, int fy, int fz, i64 k0,   \
                                    i64 k1) {                                                    \
        voxel_prolong_impl<T>(zc, bits, z, nfx, nfy, ncx, ncy, fx, fy, fz, k0, k1);              \
    }

#define VECTOR_DOT(NAME, TA, TB)                                                           \
    extern "C" __global__ void NAME(const TA* a, const TB* b, double* partial, i64 n) {    \
        vector_dot_impl<TA, TB>(a, b, partial, n);                                         \
    }
#define CG_UPDATE(NAME, T)                                                                     \
    extern "C" __global__ void NAME(double* x, T* r, const T* p, const T* q, double alpha,     \
                                    double* partial, i64 n) {                                  \
        cg_update_impl<T>(x, r, p, q, alpha, partial, n);                                      \
    }
#define CG_DIRECTION(NAME, T)                                                                  \
    extern "C" __global__ void NAME(T* p, const T* z, double beta, i64 n) {                    \
        cg_direction_impl<T>(p, z, beta, n);                                                   \
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
VOXEL_SMOOTH(voxel_smooth_f64_f64, double, double)
VOXEL_SMOOTH(voxel_smooth_f64_f32, double, float)
VOXEL_SMOOTH(voxel_smooth_f32_f32, float, float)
VOXEL_SMOOTH(voxel_smooth_f32_f64, float, double)
VOXEL_MASK(voxel_mask_f64, double)
VOXEL_MASK(voxel_mask_f32, float)
VOXEL_RESTRICT(voxel_restrict_f64, double)
VOXEL_RESTRICT(voxel_restrict_f32, float)
VOXEL_PROLONG(voxel_prolong_f64, double)
VOXEL_PROLONG(voxel_prolong_f32, float)
VECTOR_DOT(vector_dot_f64_f64, double, double)
VECTOR_DOT(vector_dot_f64_f32, double, float)
VECTOR_DOT(vector_dot_f32_f64, float, double)
VECTOR_DOT(vector_dot_f32_f32, float, float)
CG_UPDATE(cg_update_f64, double)
CG_UPDATE(cg_update_f32, float)
CG_DIRECTION(cg_direction_f64, double)
CG_DIRECTION(cg_direction_f32, float)
VOXEL_CG_PRODUCT(voxel_cg_product_f64_f64, double, double, double)
VOXEL_CG_PRODUCT(voxel_cg_product_f64_f32, double, float, double)
VOXEL_CG_PRODUCT(voxel_cg_product_f32_f32, float, float, float)
VOXEL_CG_PRODUCT(voxel_cg_product_f32_f64, float, double, float)
VOXEL_CG_PRODUCT(voxel_cg_product_acc_f32_f32, float, float, double)
