// Proof-of-GPU kernels: matrix generation, chunk hashing and Merkle levels.
// They must produce exactly the bytes internal/pog computes on the CPU
// (prng.go, merkle.go); kernels_host_test.cu runs the same per-thread
// functions on the host to check that.
//
// Regenerate kernels.ptx after editing (go generate runs this):
//
//	nvcc -ptx -arch=compute_70 -O3 -o kernels.ptx kernels.cu
//
// compute_70 PTX is JIT-compiled by the driver for any GPU from Volta on.

#include <stdint.h>
#include <cuda_fp16.h>

#define POG_HD __host__ __device__ __forceinline__

// Philox-4x32-10, as prng.go.
POG_HD void pog_philox(uint32_t c[4], uint32_t k0, uint32_t k1) {
    for (int r = 0; r < 10; r++) {
        if (r > 0) {
            k0 += 0x9E3779B9u;
            k1 += 0xBB67AE85u;
        }
        uint64_t p0 = (uint64_t)0xD2511F53u * c[0];
        uint64_t p1 = (uint64_t)0xCD9E8D57u * c[2];
        uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
        uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
        uint32_t n0 = hi1 ^ c[1] ^ k0;
        uint32_t n2 = hi0 ^ c[3] ^ k1;
        c[0] = n0;
        c[1] = lo1;
        c[2] = n2;
        c[3] = lo0;
    }
}

// pog_half_bits returns the fp16 bits of k/2048 for k in [-2048, 2047]
// (exact: at most 11 significant bits, exponent in range).
POG_HD uint16_t pog_half_bits(int k) {
    __half_raw raw = __float2half_rn((float)k * (1.0f / 2048.0f));
    return raw.x;
}

// pog_generate_thread writes values 8b..8b+7 of row row: counter
// (b, row, c2, c3) under key (k0, k1); word w gives the values at 2w
// (bits 31..20) and 2w+1 (bits 15..4), each k − 2048. out points at the
// row's first value.
POG_HD void pog_generate_thread(uint16_t *row_out, uint32_t b, uint32_t row,
                                uint32_t k0, uint32_t k1, uint32_t c2, uint32_t c3) {
    uint32_t c[4] = {b, row, c2, c3};
    pog_philox(c, k0, k1);
    uint32_t packed[4];
    for (int w = 0; w < 4; w++) {
        int hi = (int)(c[w] >> 20) - 2048;
        int lo = (int)((c[w] >> 4) & 0xFFFu) - 2048;
        // Little-endian memory: the lower half holds the value at 2w.
        packed[w] = (uint32_t)pog_half_bits(hi) | ((uint32_t)pog_half_bits(lo) << 16);
    }
    uint32_t *dst = (uint32_t *)(row_out + 8u * b);
#ifdef __CUDA_ARCH__
    *(uint4 *)dst = make_uint4(packed[0], packed[1], packed[2], packed[3]);
#else
    for (int w = 0; w < 4; w++) dst[w] = packed[w];
#endif
}

// SHA-256 (FIPS 180-4).
#define POG_ROTR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

POG_HD uint32_t pog_bswap(uint32_t x) {
    return (x >> 24) | ((x >> 8) & 0xFF00u) | ((x << 8) & 0xFF0000u) | (x << 24);
}

POG_HD void pog_sha256_init(uint32_t h[8]) {
    h[0] = 0x6a09e667u; h[1] = 0xbb67ae85u; h[2] = 0x3c6ef372u; h[3] = 0xa54ff53au;
    h[4] = 0x510e527fu; h[5] = 0x9b05688cu; h[6] = 0x1f83d9abu; h[7] = 0x5be0cd19u;
}

// Round constants: in constant memory on the device (every thread of a
// warp reads the same one), a plain array on the host.
#ifdef __CUDA_ARCH__
__constant__
#else
static
#endif
const uint32_t POG_K[64] = {
        0x428a2f98u, 0x71374491u, 0xb5c0fbcfu, 0xe9b5dba5u, 0x3956c25bu, 0x59f111f1u, 0x923f82a4u, 0xab1c5ed5u,
        0xd807aa98u, 0x12835b01u, 0x243185beu, 0x550c7dc3u, 0x72be5d74u, 0x80deb1feu, 0x9bdc06a7u, 0xc19bf174u,
        0xe49b69c1u, 0xefbe4786u, 0x0fc19dc6u, 0x240ca1ccu, 0x2de92c6fu, 0x4a7484aau, 0x5cb0a9dcu, 0x76f988dau,
        0x983e5152u, 0xa831c66du, 0xb00327c8u, 0xbf597fc7u, 0xc6e00bf3u, 0xd5a79147u, 0x06ca6351u, 0x14292967u,
        0x27b70a85u, 0x2e1b2138u, 0x4d2c6dfcu, 0x53380d13u, 0x650a7354u, 0x766a0abbu, 0x81c2c92eu, 0x92722c85u,
        0xa2bfe8a1u, 0xa81a664bu, 0xc24b8b70u, 0xc76c51a3u, 0xd192e819u, 0xd6990624u, 0xf40e3585u, 0x106aa070u,
        0x19a4c116u, 0x1e376c08u, 0x2748774cu, 0x34b0bcb5u, 0x391c0cb3u, 0x4ed8aa4au, 0x5b9cca4fu, 0x682e6ff3u,
        0x748f82eeu, 0x78a5636fu, 0x84c87814u, 0x8cc70208u, 0x90befffau, 0xa4506cebu, 0xbef9a3f7u, 0xc67178f2u};

POG_HD void pog_sha256_block(uint32_t h[8], uint32_t w[16]) {
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
#pragma unroll
    for (int t = 0; t < 64; t++) {
        uint32_t wt;
        if (t < 16) {
            wt = w[t];
        } else {
            uint32_t w15 = w[(t + 1) & 15], w2 = w[(t + 14) & 15];
            uint32_t s0 = POG_ROTR(w15, 7) ^ POG_ROTR(w15, 18) ^ (w15 >> 3);
            uint32_t s1 = POG_ROTR(w2, 17) ^ POG_ROTR(w2, 19) ^ (w2 >> 10);
            wt = w[t & 15] + s0 + w[(t + 9) & 15] + s1;
            w[t & 15] = wt;
        }
        uint32_t S1 = POG_ROTR(e, 6) ^ POG_ROTR(e, 11) ^ POG_ROTR(e, 25);
        uint32_t ch = (e & f) ^ (~e & g);
        uint32_t t1 = hh + S1 + ch + POG_K[t] + wt;
        uint32_t S0 = POG_ROTR(a, 2) ^ POG_ROTR(a, 13) ^ POG_ROTR(a, 22);
        uint32_t maj = (a & b) ^ (a & c) ^ (b & c);
        uint32_t t2 = S0 + maj;
        hh = g; g = f; f = e; e = d + t1;
        d = c; c = b; b = a; a = t1 + t2;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d;
    h[4] += e; h[5] += f; h[6] += g; h[7] += hh;
}

// Domain tags as big-endian message words: "npg\0" and "npg\1".
#define POG_LEAF_TAG 0x6e706700u
#define POG_NODE_TAG 0x6e706701u

// pog_store_digest writes h so that memory holds the digest bytes in order.
POG_HD void pog_store_digest(uint32_t *out, const uint32_t h[8]) {
    for (int i = 0; i < 8; i++) out[i] = pog_bswap(h[i]);
}

// pog_leaf_thread hashes one chunk: SHA-256("npg\0" ‖ 1024 bytes), the
// bytes being 256 little-endian fp32 words at chunk.
POG_HD void pog_leaf_thread(const uint32_t *chunk, uint32_t *out) {
    uint32_t h[8], w[16];
    pog_sha256_init(h);
    // Message words: m[0] = tag, m[i] = bswap(chunk[i-1]) for i in 1..256,
    // then padding; 1028 bytes = 8224 bits, 17 blocks.
    for (int blk = 0; blk < 16; blk++) {
#pragma unroll
        for (int t = 0; t < 16; t++) {
            int i = 16 * blk + t;
            w[t] = i == 0 ? POG_LEAF_TAG : pog_bswap(chunk[i - 1]);
        }
        pog_sha256_block(h, w);
    }
    w[0] = pog_bswap(chunk[255]);
    w[1] = 0x80000000u;
    for (int t = 2; t < 15; t++) w[t] = 0;
    w[15] = 1028u * 8u;
    pog_sha256_block(h, w);
    pog_store_digest(out, h);
}

// pog_node_thread writes parent p of a level of count hashes: SHA-256
// ("npg\1" ‖ left ‖ right), or the last hash unchanged when count is odd.
POG_HD void pog_node_thread(const uint32_t *in, uint32_t *out, uint64_t p, uint64_t count) {
    const uint32_t *l = in + 16 * p;
    uint32_t *o = out + 8 * p;
    if (2 * p + 1 >= count) {
        for (int i = 0; i < 8; i++) o[i] = l[i];
        return;
    }
    const uint32_t *r = l + 8;
    uint32_t h[8], w[16];
    pog_sha256_init(h);
    w[0] = POG_NODE_TAG;
    for (int i = 0; i < 8; i++) w[1 + i] = pog_bswap(l[i]);
    for (int i = 0; i < 7; i++) w[9 + i] = pog_bswap(r[i]);
    pog_sha256_block(h, w);
    w[0] = pog_bswap(r[7]);
    w[1] = 0x80000000u;
    for (int t = 2; t < 15; t++) w[t] = 0;
    w[15] = 68u * 8u;
    pog_sha256_block(h, w);
    pog_store_digest(o, h);
}

#ifdef __CUDACC__
// Grid-stride kernels, 64-bit indices (n² reaches 2^36).

extern "C" __global__ void pog_generate(uint16_t *out, uint32_t n, uint32_t k0, uint32_t k1, uint32_t c2, uint32_t c3) {
    uint32_t per_row = n / 8u;
    uint64_t total = (uint64_t)n * per_row;
    uint64_t stride = (uint64_t)gridDim.x * blockDim.x;
    for (uint64_t t = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; t < total; t += stride) {
        uint32_t row = (uint32_t)(t / per_row), b = (uint32_t)(t % per_row);
        pog_generate_thread(out + (uint64_t)row * n, b, row, k0, k1, c2, c3);
    }
}

extern "C" __global__ void pog_hash_leaves(const uint32_t *c, uint32_t *leaves, uint64_t count) {
    uint64_t stride = (uint64_t)gridDim.x * blockDim.x;
    for (uint64_t t = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; t < count; t += stride) {
        pog_leaf_thread(c + 256 * t, leaves + 8 * t);
    }
}

extern "C" __global__ void pog_merkle_level(const uint32_t *in, uint32_t *out, uint64_t count) {
    uint64_t parents = (count + 1) / 2;
    uint64_t stride = (uint64_t)gridDim.x * blockDim.x;
    for (uint64_t p = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; p < parents; p += stride) {
        pog_node_thread(in, out, p, count);
    }
}
#endif
