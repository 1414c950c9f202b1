// Host harness for kernels.cu: runs the kernels' per-thread functions on the
// CPU so a Go test can compare their bytes with internal/pog's. Built by
// TestKernelSourceOnHost with nvcc; not part of the worker.
//
//	kernels_host gen N K0 K1 C2 C3   → stdout: N×N fp16 (little-endian)
//	kernels_host leaves N            ← stdin: N×N fp32; → stdout: leaf hashes
//	kernels_host level COUNT         ← stdin: COUNT hashes; → stdout: parents

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vector>

#include "../kernels.cu"

static int read_all(void *buf, size_t n) { return fread(buf, 1, n, stdin) == n ? 0 : -1; }
static int write_all(const void *buf, size_t n) { return fwrite(buf, 1, n, stdout) == n ? 0 : -1; }

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    unsigned long long n = strtoull(argv[2], 0, 10);
    if (!strcmp(argv[1], "gen") && argc == 7) {
        uint32_t k0 = strtoul(argv[3], 0, 10), k1 = strtoul(argv[4], 0, 10);
        uint32_t c2 = strtoul(argv[5], 0, 10), c3 = strtoul(argv[6], 0, 10);
        std::vector<uint16_t> m(n * n);
        for (uint32_t row = 0; row < n; row++)
            for (uint32_t b = 0; b < n / 8; b++)
                pog_generate_thread(&m[(size_t)row * n], b, row, k0, k1, c2, c3);
        return write_all(m.data(), m.size() * 2);
    }
    if (!strcmp(argv[1], "leaves") && argc == 3) {
        std::vector<uint32_t> c(n * n), out(n * n / 256 * 8);
        if (read_all(c.data(), c.size() * 4)) return 3;
        for (size_t t = 0; t < n * n / 256; t++) pog_leaf_thread(&c[256 * t], &out[8 * t]);
        return write_all(out.data(), out.size() * 4);
    }
    if (!strcmp(argv[1], "level") && argc == 3) {
        std::vector<uint32_t> in(n * 8 + 8), out((n + 1) / 2 * 8);
        if (read_all(in.data(), n * 32)) return 3;
        for (uint64_t p = 0; p < (n + 1) / 2; p++) pog_node_thread(in.data(), out.data(), p, n);
        return write_all(out.data(), out.size() * 4);
    }
    return 2;
}
