/* Multiply-add rate of one core: AVX512-BF16 `vdpbf16ps` against fp32 FMA (`vfmadd`), both on
 * zmm registers, 12 independent accumulators, no memory traffic. The ratio says how much a
 * bf16 kernel can gain over an fp32 one on this CPU at best (docs/performance.md, "bf16"; the
 * reason `--precision auto` stays fp32 on AVX512-BF16 without AMX).
 *
 *   gcc -O2 -mavx512f -mavx512bf16 tools/bf16_rate.c -o /tmp/bf16_rate && /tmp/bf16_rate
 *   (/tmp/bf16_rate & /tmp/bf16_rate; wait)   # one copy per core: the same rate if the cores are real
 */
#include <immintrin.h>
#include <stdio.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

#define N 200000000L
/* Twelve named accumulators (an array would live in memory and time the stores instead). */
#define ZERO12 a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = a8 = a9 = a10 = a11 = _mm512_setzero_ps()
#define STEP12(op, x, y) \
    a0 = op(a0, x, y); a1 = op(a1, x, y); a2 = op(a2, x, y); a3 = op(a3, x, y); \
    a4 = op(a4, x, y); a5 = op(a5, x, y); a6 = op(a6, x, y); a7 = op(a7, x, y); \
    a8 = op(a8, x, y); a9 = op(a9, x, y); a10 = op(a10, x, y); a11 = op(a11, x, y)
#define SUM12 _mm512_reduce_add_ps(_mm512_add_ps( \
    _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)), \
                  _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7))), \
    _mm512_add_ps(_mm512_add_ps(a8, a9), _mm512_add_ps(a10, a11))))

static inline __m512 fma_op(__m512 acc, __m512 a, __m512 b) { return _mm512_fmadd_ps(a, b, acc); }

int main(void) {
    __m512 a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11;
    ZERO12;
    __m512bh x = (__m512bh)_mm512_set1_epi32(0x3f803f80); /* bf16 pairs (1, 1) */
    double t = now();
    for (long i = 0; i < N; i++) {
        STEP12(_mm512_dpbf16_ps, x, x);
        __asm__ volatile("" : "+v"(x)); /* keep the loop from being folded */
    }
    double bf16 = N * 12.0 * 32 / (now() - t) / 1e9; /* 32 multiply-adds per vdpbf16ps */
    float check = SUM12;
    ZERO12;
    __m512 u = _mm512_set1_ps(1.0f);
    t = now();
    for (long i = 0; i < N; i++) {
        STEP12(fma_op, u, u);
        __asm__ volatile("" : "+v"(u));
    }
    double fp32 = N * 12.0 * 16 / (now() - t) / 1e9; /* 16 per vfmadd */
    check += SUM12;
    printf("vdpbf16ps %.1f GMAC/s, fp32 FMA %.1f GMAC/s, ratio %.2f (check %.0f)\n", bf16, fp32,
           bf16 / fp32, check);
    return 0;
}
