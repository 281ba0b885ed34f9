// Host emulation of the few CUDA constructs the kernels in this folder use, so that a .cu file
// compiles unchanged with g++ (-x c++) and runs on the CPU against its NumPy twin in CI, where
// there is no GPU. A launch runs every thread of the grid one after the other, so kernels must
// be written one thread per node or element, without shared memory or __syncthreads (both are
// left undefined here on purpose: using them breaks the host build instead of giving wrong
// numbers). Included by the .cu files only when __CUDACC__ is not defined (nvcc, NVRTC).
#ifndef FEM_CUDA_EMULATION_H
#define FEM_CUDA_EMULATION_H

#ifdef __CUDACC__
#error "cuda_emulation.h is for host compilers only"
#endif

#define __global__
#define __device__
#define __host__
#define __constant__
#define __forceinline__ inline

struct uint3 {
    unsigned int x, y, z;
};

struct dim3 {
    unsigned int x, y, z;
    dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1) : x(x_), y(y_), z(z_) {}
};

// one definition shared by every translation unit of the host library (C++17 inline variables)
inline uint3 threadIdx = {0, 0, 0};
inline uint3 blockIdx = {0, 0, 0};
inline dim3 blockDim;
inline dim3 gridDim;

template <typename T>
inline T atomicAdd(T* address, T value) {
    T old = *address;
    *address += value;
    return old;
}

// Run kernel<<<grid, block>>>(args...) serially: every block, every thread of the block.
template <typename Kernel, typename... Args>
inline void cuda_emulation_launch(dim3 grid, dim3 block, Kernel kernel, Args... args) {
    gridDim = grid;
    blockDim = block;
    for (unsigned int bz = 0; bz < grid.z; ++bz)
        for (unsigned int by = 0; by < grid.y; ++by)
            for (unsigned int bx = 0; bx < grid.x; ++bx)
                for (unsigned int tz = 0; tz < block.z; ++tz)
                    for (unsigned int ty = 0; ty < block.y; ++ty)
                        for (unsigned int tx = 0; tx < block.x; ++tx) {
                            blockIdx = {bx, by, bz};
                            threadIdx = {tx, ty, tz};
                            kernel(args...);
                        }
}

#define LAUNCH(kernel, grid, block, ...) cuda_emulation_launch((grid), (block), (kernel), __VA_ARGS__)

#endif  // FEM_CUDA_EMULATION_H
