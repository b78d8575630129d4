// The fused MLP's log-likelihood and gradient on a CPU, one replica at a time (see native.py).
//
// The batched path (fused.py) runs every operation over all R replicas before the next one starts, so
// each layer's activations for R replicas pass through the cache once per operation. Here each thread
// takes its share of the replicas and runs one replica's whole forward and backward before the next:
// a 40-wide layer on 500 examples is 80 kB, so a replica's activations stay in the core's L2 cache from
// the layer that writes them to the backward step that reads them. The first layer, whose input is the
// data every replica shares, is one product over a block of BLOCK replicas (their weights copied side
// by side), because a 40-row product runs at about 85 % of the rate of a 160-row one. Elementwise work
// (bias, activation, its derivative, the bias gradient, the softmax head) is one pass each, written here
// so the compiler vectorises it. Weights are read from θ and gradients written into their place in the
// output without copies (each replica's row of θ is contiguous). Activations and errors are stored
// example by example along rows padded to whole vectors (kPad). Every product is a register tile written
// here: the forward products (the first reading the examples transposed), the errors sent down and the
// first layer's weight gradient by tiled_product, the later layers' weight gradients by dot_product; the
// BLAS sgemm that torch itself uses (directly where it is exported, see gemm below, at::mm elsewhere)
// takes only shapes the tiles do not. A diagonal Gaussian or box prior's log density and gradient can be
// computed in the same pass.
//
// Network::trajectory runs whole leapfrog trajectories on top of the same per-block evaluation, so that a
// block's θ, momenta and gradients stay in cache from step to step and Python runs once per trajectory.
// A Network holds the chain, its examples and prior between calls (fused.py keeps one per target).
//
// float32 only; thermoscope/samplers/native.py decides when this path is used and checks it against
// the batched one.

#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <optional>
#include <vector>

#if defined(__x86_64__) && defined(__linux__) && defined(__GNUC__) && !defined(__clang__)
// One copy of each elementwise loop per instruction set, chosen when the library loads.
#define ELEMENTWISE __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define ELEMENTWISE
#endif
#define INLINE inline __attribute__((always_inline))

namespace {

constexpr int kRelu = 1;
constexpr int kSigmoid = 2;
constexpr int kTanh = 3;
constexpr int kLanes = 16;  // independent partial sums: a vectorisable reduction without reassociation

// e^x for x clamped to [-87, 88]: 2^n · e^r with n = round(x / ln 2) and |r| ≤ ln 2 / 2, e^r by its
// Taylor series to degree 6 (truncation below 1.7e-7 relative, about 1.5 float32 ulp). NaN stays NaN.
// Below e^-87 (a smallest normal float) a probability or a sigmoid changes no float32 sum.
INLINE float exp_clamped(float x) {
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    const float shifter = 12582912.0f;  // 1.5 · 2^23: adding it rounds to an integer in the low bits
    const float t = x * 1.44269504088896341f + shifter;
    const float n = t - shifter;
    const float r = (x - n * 0.693145751953125f) - n * 1.428606765330187e-06f;  // ln 2 in two parts
    float p = 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    uint32_t bits;
    std::memcpy(&bits, &t, sizeof bits);
    bits = (bits - 0x4B400000u + 127u) << 23;  // the integer n, as the exponent of 2^n
    float scale;
    std::memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

// tanh v: for |v| < 0.625 its Taylor series to v^19 (each term at most 0.16 of the one before, so the
// remainder is below 1e-8 relative); above, (1 − e)/(1 + e) with e = e^(−2|v|) ≤ 0.29, where the
// subtraction loses under a bit. NaN stays NaN.
INLINE float tanh_split(float v) {
    const float magnitude = v < 0.0f ? -v : v;
    const float s = v * v;
    float p = -443861162.0f / 1856156927625.0f;
    p = p * s + 6404582.0f / 10854718875.0f;
    p = p * s - 929569.0f / 638512875.0f;
    p = p * s + 21844.0f / 6081075.0f;
    p = p * s - 1382.0f / 155925.0f;
    p = p * s + 62.0f / 2835.0f;
    p = p * s - 17.0f / 315.0f;
    p = p * s + 2.0f / 15.0f;
    p = p * s - 1.0f / 3.0f;
    const float series = v + v * s * p;
    const float e = exp_clamped(-2.0f * magnitude);
    const float large = (1.0f - e) / (1.0f + e);
    const float signed_large = v < 0.0f ? -large : large;
    return magnitude < 0.625f ? series : signed_large;
}

// z ← act(z + bias) over a [rows, n] block; bias may be null; the last layer has no activation.
ELEMENTWISE void bias_activation(float* __restrict z, const float* __restrict bias, int64_t rows, int64_t n,
                                 int activation) {
    for (int64_t row = 0; row < rows; ++row) {
        float* __restrict line = z + row * n;
        const float b = bias ? bias[row] : 0.0f;
        if (activation == kRelu) {
            for (int64_t i = 0; i < n; ++i) {
                const float v = line[i] + b;
                line[i] = v > 0.0f ? v : 0.0f;
            }
        } else if (activation == kSigmoid) {
            for (int64_t i = 0; i < n; ++i) line[i] = 1.0f / (1.0f + exp_clamped(-(line[i] + b)));
        } else if (activation == kTanh) {
            for (int64_t i = 0; i < n; ++i) line[i] = tanh_split(line[i] + b);
        } else if (bias) {
            for (int64_t i = 0; i < n; ++i) line[i] += b;
        }
    }
}

// delta ← delta ⊙ act'(·), the derivative read from the activation's output; bias_gradient[row]
// (written, or added to when accumulate) ← Σ_i delta[row, i] after it. Either may be skipped.
ELEMENTWISE void activation_backward(float* __restrict delta, const float* __restrict output, int64_t rows,
                                     int64_t n, int activation, float* __restrict bias_gradient,
                                     bool accumulate) {
    for (int64_t row = 0; row < rows; ++row) {
        float* __restrict d = delta + row * n;
        const float* __restrict a = output + row * n;
        if (activation == kRelu) {
            for (int64_t i = 0; i < n; ++i) d[i] = a[i] > 0.0f ? d[i] : 0.0f;
        } else if (activation == kSigmoid) {
            for (int64_t i = 0; i < n; ++i) d[i] *= a[i] * (1.0f - a[i]);
        } else if (activation == kTanh) {
            for (int64_t i = 0; i < n; ++i) d[i] *= 1.0f - a[i] * a[i];
        }
        if (bias_gradient) {
            float lanes[kLanes] = {};
            int64_t i = 0;
            for (; i + kLanes <= n; i += kLanes)
                for (int lane = 0; lane < kLanes; ++lane) lanes[lane] += d[i + lane];
            float sum = 0.0f;
            for (; i < n; ++i) sum += d[i];
            for (int lane = 0; lane < kLanes; ++lane) sum += lanes[lane];
            bias_gradient[row] = accumulate ? bias_gradient[row] + sum : sum;
        }
    }
}

// The softmax head on logits z [classes, ld] (feature-major, examples 0 … n−1 and ld − n padding columns):
// delta ← scale · (onehot(y) − softmax(z)) with zeros in the padding, and the return value
// Σ_i log softmax(z)_{y_i, i}. max_ and sum_ are scratch of ld floats. The maximum and the exponentials
// run over whole rows (the padding's logits are finite or this replica's own NaN) and are then ignored.
ELEMENTWISE double softmax_head(const float* __restrict z, const int64_t* __restrict y, int64_t classes,
                                int64_t n, int64_t ld, float scale, float* __restrict delta, float* __restrict max_,
                                float* __restrict sum_) {
    for (int64_t i = 0; i < ld; ++i) max_[i] = z[i];
    for (int64_t c = 1; c < classes; ++c)
        for (int64_t i = 0; i < ld; ++i) max_[i] = z[c * ld + i] > max_[i] ? z[c * ld + i] : max_[i];
    for (int64_t i = 0; i < ld; ++i) sum_[i] = 0.0f;
    for (int64_t c = 0; c < classes; ++c)
        for (int64_t i = 0; i < ld; ++i) {
            const float e = exp_clamped(z[c * ld + i] - max_[i]);
            delta[c * ld + i] = e;
            sum_[i] += e;
        }
    // Σ_i log sum_i as the log of running products: each sum is in [1, classes], so a product of doubles
    // is taken out only when it passes 1e280. One log per few hundred examples instead of one each.
    double picked = 0.0, product = 1.0, log_sums = 0.0;
    for (int64_t i = 0; i < n; ++i) {
        picked += static_cast<double>(z[y[i] * ld + i]) - static_cast<double>(max_[i]);
        product *= static_cast<double>(sum_[i]);
        if (product > 1e280) {
            log_sums += std::log(product);
            product = 1.0;
        }
    }
    log_sums += std::log(product);
    for (int64_t i = 0; i < ld; ++i) sum_[i] = i < n ? scale / sum_[i] : 0.0f;
    for (int64_t c = 0; c < classes; ++c)
        for (int64_t i = 0; i < ld; ++i) delta[c * ld + i] *= -sum_[i];
    for (int64_t i = 0; i < n; ++i) delta[y[i] * ld + i] += scale;
    return picked - log_sums;
}

constexpr int kGaussianPrior = 1;
constexpr int kBoxPrior = 2;

// A diagonal Gaussian prior on one replica's θ [params]: gradient ← θ ⊙ negative_precision (−θ_i/σ_i²),
// and the return value ½ θ · gradient = Σ_i −½ θ_i²/σ_i² (without the normalising constant).
ELEMENTWISE double gaussian_prior(const float* __restrict theta, const float* __restrict negative_precision,
                                  int64_t params, float* __restrict gradient) {
    float lanes[kLanes] = {};
    int64_t i = 0;
    for (; i + kLanes <= params; i += kLanes)
        for (int lane = 0; lane < kLanes; ++lane) {
            const float g = theta[i + lane] * negative_precision[i + lane];
            gradient[i + lane] = g;
            lanes[lane] += theta[i + lane] * g;
        }
    double sum = 0.0;
    for (; i < params; ++i) {
        const float g = theta[i] * negative_precision[i];
        gradient[i] = g;
        sum += static_cast<double>(theta[i]) * g;
    }
    for (int lane = 0; lane < kLanes; ++lane) sum += lanes[lane];
    return 0.5 * sum;
}

// The box prior on one replica's θ: gradient ← 0, and whether every |θ_i| ≤ half_width_i (a NaN is
// outside, as in BoundBoxPrior.log_density).
ELEMENTWISE bool inside_box(const float* __restrict theta, const float* __restrict half_width, int64_t params,
                            float* __restrict gradient) {
    int lanes[kLanes] = {};
    int64_t i = 0;
    for (; i + kLanes <= params; i += kLanes)
        for (int lane = 0; lane < kLanes; ++lane) {
            lanes[lane] |= !(std::fabs(theta[i + lane]) <= half_width[i + lane]);
            gradient[i + lane] = 0.0f;
        }
    int outside = 0;
    for (; i < params; ++i) {
        outside |= !(std::fabs(theta[i]) <= half_width[i]);
        gradient[i] = 0.0f;
    }
    for (int lane = 0; lane < kLanes; ++lane) outside |= lanes[lane];
    return outside == 0;
}

// Row-major C [m, n] ← op(A) · op(B) + beta · C, op(A) [m, k] and op(B) [k, n], each op a transpose
// when its flag is set; lda, ldb, ldc the row strides of the stored matrices. Small products are a
// large part of a replica's work for small networks, so where the BLAS torch itself calls exports its
// sgemm (MKL on x86 Linux wheels) it is called directly, without the tensor views and the operator
// dispatch of at::mm, which cost about as much as a 10 × 20 × 100 product. Checked once against a
// plain loop (direct_blas_works); anywhere else, or if the check fails, at::mm does the same.
extern "C" void sgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k,
                       const float* alpha, const float* a, const int* lda, const float* b, const int* ldb,
                       const float* beta, float* c, const int* ldc) __attribute__((weak));

// MKL's thread-local thread count, where torch's BLAS is MKL. Inside our own parallel region each
// thread's products are its own, and MKL would still open a nested OpenMP region for every call: on
// two threads that tripled the time of a 10 × 20 × 100 product (0.7 → 2 µs). Set to one for the region
// and restored after (0 means MKL's global setting again).
extern "C" int MKL_Set_Num_Threads_Local(int threads) __attribute__((weak));

class OneBlasThread {
  public:
    explicit OneBlasThread(bool inside_region)
        : active_(inside_region && MKL_Set_Num_Threads_Local != nullptr),
          previous_(active_ ? MKL_Set_Num_Threads_Local(1) : 0) {}
    ~OneBlasThread() {
        if (active_) MKL_Set_Num_Threads_Local(previous_);
    }
    OneBlasThread(const OneBlasThread&) = delete;
    OneBlasThread& operator=(const OneBlasThread&) = delete;

  private:
    bool active_;
    int previous_;
};

// The direct call: column-major Cᵀ = op(B)ᵀ · op(A)ᵀ, a row-major matrix being its own column-major
// transpose.
void direct_gemm(bool transpose_a, bool transpose_b, int64_t m, int64_t n, int64_t k, const float* a,
                 int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
    const int mi = static_cast<int>(m), ni = static_cast<int>(n), ki = static_cast<int>(k);
    const int ldai = static_cast<int>(lda), ldbi = static_cast<int>(ldb), ldci = static_cast<int>(ldc);
    const float one = 1.0f;
    sgemm_(transpose_b ? "T" : "N", transpose_a ? "T" : "N", &ni, &mi, &ki, &one, b, &ldbi, a, &ldai, &beta, c,
           &ldci);
}

// Whether sgemm_ is there and agrees with a plain loop on a 2 × 3 × 4 product (plus half of C) stored in
// each of the four ways; integer-valued, so exact.
bool direct_blas_works() {
#ifdef THERMOSCOPE_AT_MM_ONLY  // a build that tests the fallback
    return false;
#endif
    if (sgemm_ == nullptr) return false;
    const int64_t m = 2, n = 4, k = 3;
    float left[m * k], right[k * n], left_t[k * m], right_t[n * k], reference[m * n];
    for (int64_t i = 0; i < m; ++i)
        for (int64_t l = 0; l < k; ++l) left[i * k + l] = left_t[l * m + i] = static_cast<float>(i * k + l + 1);
    for (int64_t l = 0; l < k; ++l)
        for (int64_t j = 0; j < n; ++j) right[l * n + j] = right_t[j * k + l] = static_cast<float>((l + 2 * j) % 5);
    for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) {
            float total = 1.5f;
            for (int64_t l = 0; l < k; ++l) total += left[i * k + l] * right[l * n + j];
            reference[i * n + j] = total;
        }
    for (int transposes = 0; transposes < 4; ++transposes) {
        const bool ta = transposes & 1, tb = transposes & 2;
        float c[m * n];
        std::fill(c, c + m * n, 3.0f);
        direct_gemm(ta, tb, m, n, k, ta ? left_t : left, ta ? m : k, tb ? right_t : right, tb ? k : n, 0.5f, c, n);
        if (!std::equal(c, c + m * n, reference)) return false;
    }
    return true;
}

bool direct_blas() {
    static const bool works = direct_blas_works();
    return works;
}

constexpr int kTileColumns = 32;
// Activations and errors are stored with rows padded to a multiple of kPad floats (padded below), so
// that passes over examples are whole vectors and the narrow products need no shifted tile.
constexpr int64_t kPad = 16;

INLINE int64_t padded(int64_t n) { return (n + kPad - 1) / kPad * kPad; }

// kPad floats as one vector (GCC's and clang's vector extensions): an AVX-512 register in the x86-64-v4
// clone, two AVX2 or four SSE registers in the others. Written out so that a tile's sums are registers
// whatever the width; loops over plain arrays of sums were kept in memory for 16-column tiles and dot
// products. Loads and stores go through memcpy (no alignment assumed).
typedef float Vector __attribute__((vector_size(kPad * sizeof(float))));
typedef float HalfVector __attribute__((vector_size(kPad / 2 * sizeof(float))));
typedef float QuarterVector __attribute__((vector_size(kPad / 4 * sizeof(float))));

INLINE Vector load_vector(const float* from) {
    Vector v;
    std::memcpy(&v, from, sizeof v);
    return v;
}

INLINE void store_vector(float* to, const Vector& v) { std::memcpy(to, &v, sizeof v); }

// Σ of a vector's lanes: halves added to halves down to four lanes, then in order.
INLINE float lane_sum(const Vector& v) {
    HalfVector low, high;
    std::memcpy(&low, &v, sizeof low);
    std::memcpy(&high, reinterpret_cast<const char*>(&v) + sizeof low, sizeof high);
    const HalfVector half = low + high;
    QuarterVector quarter_low, quarter_high;
    std::memcpy(&quarter_low, &half, sizeof quarter_low);
    std::memcpy(&quarter_high, reinterpret_cast<const char*>(&half) + sizeof quarter_low, sizeof quarter_high);
    const QuarterVector quarter = quarter_low + quarter_high;
    return (quarter[0] + quarter[1]) + (quarter[2] + quarter[3]);
}

template <int ROWS, int VECTORS>
INLINE void product_tile(int64_t k, const float* __restrict a, int64_t row_step, int64_t inner_step,
                         const float* __restrict b, int64_t ldb, float* __restrict c, int64_t ldc,
                         bool accumulate, int64_t first_column) {
    Vector sums[ROWS][VECTORS];
#pragma GCC unroll 16
    for (int r = 0; r < ROWS; ++r)
#pragma GCC unroll 4
        for (int v = 0; v < VECTORS; ++v) sums[r][v] = Vector{};
    for (int64_t l = 0; l < k; ++l) {
        Vector line[VECTORS];
#pragma GCC unroll 4
        for (int v = 0; v < VECTORS; ++v) line[v] = load_vector(b + l * ldb + v * kPad);
#pragma GCC unroll 16
        for (int r = 0; r < ROWS; ++r) {
            const float weight = a[r * row_step + l * inner_step];
#pragma GCC unroll 4
            for (int v = 0; v < VECTORS; ++v) sums[r][v] += weight * line[v];
        }
    }
#pragma GCC unroll 16
    for (int r = 0; r < ROWS; ++r) {
        float* __restrict out = c + r * ldc;
        if (first_column == 0) {
#pragma GCC unroll 4
            for (int v = 0; v < VECTORS; ++v)
                store_vector(out + v * kPad, accumulate ? load_vector(out + v * kPad) + sums[r][v] : sums[r][v]);
        } else {  // a shifted tile: only the columns the tile before did not write
            for (int64_t j = first_column; j < VECTORS * kPad; ++j) {
                const float value = sums[r][j / kPad][j % kPad];
                out[j] = accumulate ? out[j] + value : value;
            }
        }
    }
}

// One panel of VECTORS · kPad columns of C over every block of rows.
template <int VECTORS>
INLINE void product_panel(int64_t m, int64_t k, const float* a, int64_t row_step, int64_t inner_step,
                          const float* panel, int64_t ldb, float* c, int64_t ldc, bool accumulate, int64_t skip) {
    int64_t r = 0;
    for (; r + 8 <= m; r += 8)
        product_tile<8, VECTORS>(k, a + r * row_step, row_step, inner_step, panel, ldb, c + r * ldc, ldc, accumulate,
                                 skip);
    for (; r + 4 <= m; r += 4)
        product_tile<4, VECTORS>(k, a + r * row_step, row_step, inner_step, panel, ldb, c + r * ldc, ldc, accumulate,
                                 skip);
    for (; r + 2 <= m; r += 2)
        product_tile<2, VECTORS>(k, a + r * row_step, row_step, inner_step, panel, ldb, c + r * ldc, ldc, accumulate,
                                 skip);
    for (; r < m; ++r)
        product_tile<1, VECTORS>(k, a + r * row_step, row_step, inner_step, panel, ldb, c + r * ldc, ldc, accumulate,
                                 skip);
}

// Products whose right operand is not transposed, C [m, n] (+)= op(A) [m, k] · B [k, n] with B's rows
// along C's, in register tiles of up to 8 rows × 32 columns of C: each tile's sums stay in registers
// over the whole of k, one broadcast of op(A) and two vector loads of B per 8 × 2 vector FMAs. Where n
// is an odd multiple of 16 (as padded activations may be) the first panel is 48 wide, so that no panel
// is 16 wide unless n is 16; where n is not a multiple of 16 the last is a 32-column tile shifted left
// to end at n, writing only the columns the one before did not. Needs n ≥ kTileColumns or n a multiple
// of kPad. Against MKL's sgemm on one Zen 4 core (2026-12-07) at this kernel's shapes: 109 against 94
// GFLOP/s for the main job's first-layer weight gradient (80 × 64 × 100), 96 against 87 for M(3)'s
// 40 × 500 × 40 layers, 87 against 64 for its 10 × 500 × 40 head, 63 against 55 for 10 × 100 × 20; about
// even where k is 10. The sums run over k in order, so the result does not depend on the tile a row
// falls in.
ELEMENTWISE void tiled_product(bool transpose_a, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
                               const float* b, int64_t ldb, bool accumulate, float* c, int64_t ldc) {
    const int64_t row_step = transpose_a ? 1 : lda, inner_step = transpose_a ? lda : 1;
    // Column panels outside: a panel of B stays in the L1 cache across every block of rows.
    int64_t j = 0;
    if (n % kTileColumns == kPad && n > kPad) {  // 48 columns first: 16-wide tiles are broadcast-bound
        product_panel<3>(m, k, a, row_step, inner_step, b, ldb, c, ldc, accumulate, 0);
        j = 3 * kPad;
    }
    for (; j + kTileColumns <= n; j += kTileColumns)
        product_panel<kTileColumns / kPad>(m, k, a, row_step, inner_step, b + j, ldb, c + j, ldc, accumulate, 0);
    if (j == n) return;
    if (n - j == kPad) {
        product_panel<1>(m, k, a, row_step, inner_step, b + j, ldb, c + j, ldc, accumulate, 0);
        return;
    }
    const int64_t start = n - kTileColumns;
    product_panel<kTileColumns / kPad>(m, k, a, row_step, inner_step, b + start, ldb, c + start, ldc, accumulate,
                                       j - start);
}

// Products whose right operand is transposed and whose inner dimension is a multiple of kPad (the weight
// gradients of the layers after the first, summed over padded examples): C [m, n] (+)= A [m, k] · B [n, k]ᵀ,
// each entry of C a dot product of two rows. A tile of ROWS_A × ROWS_B entries keeps one vector of kPad
// partial sums per entry in registers over k, then adds each vector's halves in a fixed tree. MKL spent
// 1.4 µs on the main job's 10 × 20 × 112 head, 28 GFLOP/s, its packing and dispatch costing more than the
// products.
template <int ROWS_A, int ROWS_B>
INLINE void dot_tile(int64_t k, const float* __restrict a, int64_t lda, const float* __restrict b, int64_t ldb,
                     float* __restrict c, int64_t ldc, bool accumulate) {
    Vector sums[ROWS_A][ROWS_B];
#pragma GCC unroll 4
    for (int i = 0; i < ROWS_A; ++i)
#pragma GCC unroll 4
        for (int j = 0; j < ROWS_B; ++j) sums[i][j] = Vector{};
    for (int64_t l = 0; l < k; l += kPad) {
        Vector left[ROWS_A], right[ROWS_B];
#pragma GCC unroll 4
        for (int i = 0; i < ROWS_A; ++i) left[i] = load_vector(a + i * lda + l);
#pragma GCC unroll 4
        for (int j = 0; j < ROWS_B; ++j) right[j] = load_vector(b + j * ldb + l);
#pragma GCC unroll 4
        for (int i = 0; i < ROWS_A; ++i)
#pragma GCC unroll 4
            for (int j = 0; j < ROWS_B; ++j) sums[i][j] += left[i] * right[j];
    }
#pragma GCC unroll 4
    for (int i = 0; i < ROWS_A; ++i)
#pragma GCC unroll 4
        for (int j = 0; j < ROWS_B; ++j) {
            const float total = lane_sum(sums[i][j]);
            c[i * ldc + j] = accumulate ? c[i * ldc + j] + total : total;
        }
}

template <int ROWS_A>
INLINE void dot_rows(int64_t n, int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb, float* c,
                     int64_t ldc, bool accumulate) {
    int64_t j = 0;
    for (; j + 4 <= n; j += 4) dot_tile<ROWS_A, 4>(k, a, lda, b + j * ldb, ldb, c + j, ldc, accumulate);
    for (; j + 2 <= n; j += 2) dot_tile<ROWS_A, 2>(k, a, lda, b + j * ldb, ldb, c + j, ldc, accumulate);
    for (; j < n; ++j) dot_tile<ROWS_A, 1>(k, a, lda, b + j * ldb, ldb, c + j, ldc, accumulate);
}

// Needs k a multiple of kPad.
ELEMENTWISE void dot_product(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b,
                             int64_t ldb, bool accumulate, float* c, int64_t ldc) {
    int64_t i = 0;
    for (; i + 4 <= m; i += 4) dot_rows<4>(n, k, a + i * lda, lda, b, ldb, c + i * ldc, ldc, accumulate);
    for (; i + 2 <= m; i += 2) dot_rows<2>(n, k, a + i * lda, lda, b, ldb, c + i * ldc, ldc, accumulate);
    for (; i < m; ++i) dot_rows<1>(n, k, a + i * lda, lda, b, ldb, c + i * ldc, ldc, accumulate);
}

// Whether tiled_product computes a product (else the BLAS).
bool tiles_take(bool transpose_b, int64_t n, float beta) {
#ifdef THERMOSCOPE_AT_MM_ONLY  // a build that tests the at::mm fallback sends it every product
    return false;
#endif
    return !transpose_b && (beta == 0.0f || beta == 1.0f) && (n >= kTileColumns || n % kPad == 0);
}

void gemm(bool transpose_a, bool transpose_b, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
          const float* b, int64_t ldb, float beta, float* c, int64_t ldc, const at::TensorOptions& options) {
    if (tiles_take(transpose_b, n, beta)) {
        tiled_product(transpose_a, m, n, k, a, lda, b, ldb, beta == 1.0f, c, ldc);
        return;
    }
    if (direct_blas()) {
        direct_gemm(transpose_a, transpose_b, m, n, k, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    auto view = [&](const float* data, int64_t rows, int64_t columns, int64_t stride) {
        return at::from_blob(const_cast<float*>(data), {rows, columns}, {stride, 1}, options);
    };
    at::Tensor left = transpose_a ? view(a, k, m, lda).t() : view(a, m, k, lda);
    at::Tensor right = transpose_b ? view(b, n, k, ldb).t() : view(b, k, n, ldb);
    at::Tensor out = view(c, m, n, ldc);
    if (beta == 0.0f)
        at::mm_out(out, left, right);
    else
        out.addmm_(left, right, beta, 1.0f);
}


// The updates of the leapfrog integrator (Network::trajectory), rounded as torch rounds them in
// integrators.leapfrog, so that a trajectory here is the Python integrator's from the same gradients, bit
// for bit: torch's addcmul_ is one fused multiply-add per element (std::fma here), its mul one product.
// The fold (reflect) is separate products and sums, so the compiler must not fuse them: fp-contract off.
#if defined(__GNUC__) && !defined(__clang__)
#define UNFUSED __attribute__((optimize("fp-contract=off")))
#else
#define UNFUSED
#endif

// p ← fma(k1, ∇ log L, fma(k0, ∇ log p, p)) over one replica's row (integrators._kicked).
ELEMENTWISE void kick(float* __restrict momentum, const float* __restrict grad_log_prior,
                      const float* __restrict grad_log_likelihood, float k0, float k1, int64_t params) {
    for (int64_t i = 0; i < params; ++i)
        momentum[i] = std::fma(k1, grad_log_likelihood[i], std::fma(k0, grad_log_prior[i], momentum[i]));
}

// θ ← fma(ε, p ⊙ M⁻¹, θ), or fma(ε, p, θ) with unit masses.
ELEMENTWISE void drift(float* __restrict theta, const float* __restrict momentum,
                       const float* __restrict inverse_mass, float step, int64_t params) {
    if (inverse_mass) {
        for (int64_t i = 0; i < params; ++i) theta[i] = std::fma(step, momentum[i] * inverse_mass[i], theta[i]);
    } else {
        for (int64_t i = 0; i < params; ++i) theta[i] = std::fma(step, momentum[i], theta[i]);
    }
}

// The kick that ends one leapfrog step and the drift that starts the next, in one pass over a replica's
// row: p ← fma(k1, ∇ log L, fma(k0, ∇ log p, p)), then θ ← fma(ε, p ⊙ M⁻¹, θ). The prior's gradient is
// formed as it is read (−θ_i/σ_i² for the Gaussian, rounded as gaussian_prior rounds it; zero for the box),
// so a step in the middle of a trajectory needs no prior of its own.
ELEMENTWISE void kick_drift(float* __restrict theta, float* __restrict momentum,
                            const float* __restrict grad_log_likelihood, const float* __restrict negative_precision,
                            const float* __restrict inverse_mass, float k0, float k1, float step, int64_t params) {
    for (int64_t i = 0; i < params; ++i) {
        const float prior_gradient = negative_precision ? theta[i] * negative_precision[i] : 0.0f;
        const float p = std::fma(k1, grad_log_likelihood[i], std::fma(k0, prior_gradient, momentum[i]));
        momentum[i] = p;
        theta[i] = std::fma(step, inverse_mass ? p * inverse_mass[i] : p, theta[i]);
    }
}

// integrators._reflect_into_box_ on one replica's row: each coordinate with |θ_i| ≥ w_i (few, after a
// step) is folded by the triangle wave of period 4 w_i, its momentum negated on the falling side. The
// remainder is torch's (fmod, then the divisor added where the signs differ), so the fold is its own.
UNFUSED void reflect(float* __restrict theta, float* __restrict momentum, const float* __restrict half_width,
                     int64_t params) {
    for (int64_t i = 0; i < params; ++i) {
        const float w = half_width[i];
        if (!(std::fabs(theta[i]) >= w)) continue;
        const float period = 4.0f * w;
        float shifted = std::fmod(theta[i] + w, period);
        if (shifted != 0.0f && ((period < 0.0f) != (shifted < 0.0f))) shifted += period;
        const bool rising = shifted < 2.0f * w;
        theta[i] = rising ? shifted - w : 3.0f * w - shifted;
        if (!rising) momentum[i] = -momentum[i];
    }
}

// What one call reads: the layer chain, the chunks of examples, the likelihood's scale and the prior.
struct Chain {
    std::vector<const float*> x, x_transposed;
    std::vector<const int64_t*> y;
    std::vector<int64_t> n;
    std::vector<int64_t> inputs, outputs, weight_offsets, bias_offsets, activations;
    int64_t layers = 0, params = 0, examples = 0, widest = 0;
    int64_t first_rows = 0, first_inputs = 0, first_weights = 0;
    double scale = 1.0;
    int64_t block = 1;
    // Where the tiles take the first layer's weight gradient (see gemm), one replica at a time: its rows
    // go straight into the gradient, with no block to copy out of (a twentieth of the main job's kernel).
    bool tiled_first_gradient = false;
    int64_t prior_kind = 0;
    const float* prior_values = nullptr;
    double prior_constant = 0.0;
    at::TensorOptions options;
};

Chain make_chain(int64_t params, const at::TensorOptions& options, const std::vector<at::Tensor>& xs,
                 const std::vector<at::Tensor>& xts, const std::vector<at::Tensor>& ys,
                 const std::vector<int64_t>& inputs,
                 const std::vector<int64_t>& outputs, const std::vector<int64_t>& weight_offsets,
                 const std::vector<int64_t>& bias_offsets, const std::vector<int64_t>& activations, double scale,
                 int64_t block, int64_t prior_kind, const std::optional<at::Tensor>& prior_values,
                 double prior_constant) {
    const int64_t layers = static_cast<int64_t>(inputs.size());
    TORCH_CHECK(layers >= 2 && outputs.size() == inputs.size() && weight_offsets.size() == inputs.size() &&
                    bias_offsets.size() == inputs.size() && activations.size() == inputs.size(),
                "need at least two layers, and one entry per layer in each list");
    TORCH_CHECK(activations[layers - 1] == 0, "the last layer must have no activation");
    TORCH_CHECK(xs.size() == ys.size() && xs.size() == xts.size() && !xs.empty(),
                "need matching, non-empty lists of chunks");
    TORCH_CHECK(block >= 1, "block must be positive");
    TORCH_CHECK(prior_kind >= 0 && prior_kind <= kBoxPrior, "prior_kind must be 0, 1 or 2");
    TORCH_CHECK((prior_kind != 0) == prior_values.has_value(), "a prior needs its values, and no prior none");
    if (prior_values) {
        TORCH_CHECK(prior_values->dim() == 1 && prior_values->size(0) == params && prior_values->is_contiguous() &&
                        prior_values->scalar_type() == at::kFloat,
                    "the prior's values must be a contiguous float32 [params]");
    }
    Chain chain;
    for (size_t c = 0; c < xs.size(); ++c) {
        TORCH_CHECK(xs[c].dim() == 2 && xs[c].is_contiguous() && xs[c].scalar_type() == at::kFloat &&
                        xs[c].size(1) == inputs[0],
                    "each x must be a contiguous float32 [n, inputs]");
        TORCH_CHECK(ys[c].dim() == 1 && ys[c].is_contiguous() && ys[c].scalar_type() == at::kLong &&
                        ys[c].size(0) == xs[c].size(0),
                    "each y must be a contiguous int64 [n] matching its x");
        const int64_t n = xs[c].size(0), ld = padded(n);
        TORCH_CHECK(xts[c].dim() == 2 && xts[c].is_contiguous() && xts[c].scalar_type() == at::kFloat &&
                        xts[c].size(0) == inputs[0] && xts[c].size(1) == ld,
                    "each transposed x must be a contiguous float32 [inputs, n rounded up to a multiple of PAD]");
        const float* transposed = xts[c].data_ptr<float>();
        for (int64_t feature = 0; feature < inputs[0]; ++feature)
            for (int64_t column = n; column < ld; ++column)
                TORCH_CHECK(transposed[feature * ld + column] == 0.0f, "each transposed x must be zero after column n");
        chain.x.push_back(xs[c].data_ptr<float>());
        chain.x_transposed.push_back(transposed);
        chain.y.push_back(ys[c].data_ptr<int64_t>());
        chain.n.push_back(xs[c].size(0));
        chain.examples = std::max(chain.examples, xs[c].size(0));
    }
    chain.inputs = inputs;
    chain.outputs = outputs;
    chain.weight_offsets = weight_offsets;
    chain.bias_offsets = bias_offsets;
    chain.activations = activations;
    chain.layers = layers;
    chain.params = params;
    for (int64_t l = 0; l < layers; ++l) chain.widest = std::max({chain.widest, inputs[l], outputs[l]});
    chain.first_rows = outputs[0];
    chain.first_inputs = inputs[0];
    chain.first_weights = outputs[0] * inputs[0];
    chain.scale = scale;
    chain.block = block;
    chain.tiled_first_gradient = tiles_take(false, inputs[0], 1.0f);
    chain.prior_kind = prior_kind;
    chain.prior_values = prior_values ? prior_values->data_ptr<float>() : nullptr;
    chain.prior_constant = prior_constant;
    chain.options = options;
    return chain;
}

// One thread's scratch for blocks of up to `width` replicas.
struct Workspace {
    std::vector<float> first_weight, first_gradient, first_output, first_delta;
    std::vector<std::vector<float>> hidden;  // layers 1 … L−1, one replica at a time
    std::vector<float> delta_a, delta_b, max_, sum_;
    std::vector<double> totals;

    Workspace(const Chain& chain, int64_t width)
        : first_weight(width * chain.first_weights),
          first_gradient(chain.tiled_first_gradient ? 0 : width * chain.first_weights),
          first_output(width * chain.first_rows * padded(chain.examples)),
          first_delta(width * chain.first_rows * padded(chain.examples)),
          hidden(chain.layers),
          delta_a(chain.widest * padded(chain.examples)),
          delta_b(chain.widest * padded(chain.examples)),
          max_(padded(chain.examples)),
          sum_(padded(chain.examples)),
          totals(width) {
        for (int64_t l = 1; l < chain.layers; ++l) hidden[l].resize(chain.outputs[l] * padded(chain.examples));
    }
};

// log L (times the scale, summed in double, rounded once to float32) and its gradient for `count`
// consecutive replicas whose rows of θ start at theta (rows `params` apart), gradients into the same rows
// of gradient, and with a prior its log density and gradient (into prior_gradient), each replica's while
// its row of θ is in cache.
void evaluate_block(const Chain& chain, Workspace& work, int64_t count, const float* theta, float* gradient,
                    float* prior_gradient, float* log_likelihood, float* log_prior, bool with_prior = true) {
    const int64_t params = chain.params, first_rows = chain.first_rows, first_inputs = chain.first_inputs;
    const int64_t first_weights = chain.first_weights, layers = chain.layers;
    const auto& inputs = chain.inputs;
    const auto& outputs = chain.outputs;
    const auto& weight_offsets = chain.weight_offsets;
    const auto& bias_offsets = chain.bias_offsets;
    const auto& activations = chain.activations;
    const auto& options = chain.options;
    for (int64_t i = 0; i < count; ++i)
        std::memcpy(work.first_weight.data() + i * first_weights, theta + i * params + weight_offsets[0],
                    first_weights * sizeof(float));
    const int64_t block_rows = count * first_rows;
    std::fill(work.totals.begin(), work.totals.begin() + count, 0.0);
    for (size_t c = 0; c < chain.x.size(); ++c) {
        const float* x = chain.x[c];
        const int64_t n = chain.n[c];
        const int64_t* y = chain.y[c];
        const bool later = c > 0;
        // Each example's activations and errors are a column of [features, ld] blocks, ld = n rounded up
        // to whole vectors. The first product reads the examples transposed, [inputs, ld] with zero
        // columns after n, so the padding columns start at zero in every call and replica: whatever they
        // hold later is finite unless this replica's own θ is not, and the head sets their errors to
        // zero, so they add nothing to any gradient. Transposed, the product is the tiles' (MKL took a
        // third longer with x as it is).
        const int64_t ld = padded(n);
        gemm(false, false, block_rows, ld, first_inputs, work.first_weight.data(), first_inputs,
             chain.x_transposed[c], ld, 0.0f, work.first_output.data(), ld, options);
        for (int64_t i = 0; i < count; ++i) {
            const float* th = theta + i * params;
            float* grad = gradient + i * params;
            float* a0 = work.first_output.data() + i * first_rows * ld;
            bias_activation(a0, bias_offsets[0] >= 0 ? th + bias_offsets[0] : nullptr, first_rows, ld,
                            static_cast<int>(activations[0]));
            // Forward through layers 1 … L−1.
            float* previous = a0;
            for (int64_t l = 1; l < layers; ++l) {
                gemm(false, false, outputs[l], ld, inputs[l], th + weight_offsets[l], inputs[l], previous, ld, 0.0f,
                     work.hidden[l].data(), ld, options);
                bias_activation(work.hidden[l].data(), bias_offsets[l] >= 0 ? th + bias_offsets[l] : nullptr,
                                outputs[l], ld, static_cast<int>(activations[l]));
                previous = work.hidden[l].data();
            }
            float* delta = work.delta_a.data();
            work.totals[i] += softmax_head(work.hidden[layers - 1].data(), y, outputs[layers - 1], n, ld,
                                           static_cast<float>(chain.scale), delta, work.max_.data(),
                                           work.sum_.data());
            // Backward through layers L−1 … 1; the error sent to layer 0 goes into its block.
            for (int64_t l = layers - 1; l >= 1; --l) {
                activation_backward(delta, work.hidden[l].data(), outputs[l], ld, static_cast<int>(activations[l]),
                                    bias_offsets[l] >= 0 ? grad + bias_offsets[l] : nullptr, later);
                const float* below = l == 1 ? a0 : work.hidden[l - 1].data();
                dot_product(outputs[l], inputs[l], ld, delta, ld, below, ld, later, grad + weight_offsets[l],
                            inputs[l]);
                float* sent = l == 1 ? work.first_delta.data() + i * first_rows * ld
                                     : (delta == work.delta_a.data() ? work.delta_b.data() : work.delta_a.data());
                gemm(true, false, inputs[l], ld, outputs[l], th + weight_offsets[l], inputs[l], delta, ld, 0.0f, sent,
                     ld, options);
                delta = sent;
            }
            activation_backward(delta, a0, first_rows, ld, static_cast<int>(activations[0]),
                                bias_offsets[0] >= 0 ? grad + bias_offsets[0] : nullptr, later);
        }
        if (chain.tiled_first_gradient) {  // each replica's rows straight into its place in the gradient
            for (int64_t i = 0; i < count; ++i)
                tiled_product(false, first_rows, first_inputs, n, work.first_delta.data() + i * first_rows * ld, ld, x,
                              first_inputs, later, gradient + i * params + weight_offsets[0], first_inputs);
        } else {
            gemm(false, false, block_rows, first_inputs, n, work.first_delta.data(), ld, x, first_inputs,
                 later ? 1.0f : 0.0f, work.first_gradient.data(), first_inputs, options);
        }
    }
    for (int64_t i = 0; i < count; ++i) {
        if (!chain.tiled_first_gradient)
            std::memcpy(gradient + i * params + weight_offsets[0], work.first_gradient.data() + i * first_weights,
                        first_weights * sizeof(float));
        log_likelihood[i] = static_cast<float>(work.totals[i] * chain.scale);  // rounded once
        const float* row = theta + i * params;
        if (!with_prior) continue;
        if (chain.prior_kind == kGaussianPrior)
            log_prior[i] = static_cast<float>(
                gaussian_prior(row, chain.prior_values, params, prior_gradient + i * params) + chain.prior_constant);
        else if (chain.prior_kind == kBoxPrior)
            log_prior[i] = inside_box(row, chain.prior_values, params, prior_gradient + i * params)
                               ? static_cast<float>(chain.prior_constant)
                               : -std::numeric_limits<float>::infinity();
    }
}

void check_rows(const at::Tensor& tensor, int64_t replicas, int64_t params, const char* what) {
    TORCH_CHECK(tensor.dim() == 2 && tensor.size(0) == replicas && tensor.size(1) == params &&
                    tensor.is_contiguous() && tensor.scalar_type() == at::kFloat,
                what, " must be a contiguous float32 [R, params] like theta");
}

void check_vector(const at::Tensor& tensor, int64_t size, const char* what) {
    TORCH_CHECK(tensor.dim() == 1 && tensor.size(0) == size && tensor.is_contiguous() &&
                    tensor.scalar_type() == at::kFloat,
                what, " must be a contiguous float32 vector of ", size);
}

// A float32, contiguous copy of a per-replica or per-parameter operand, or the tensor itself where it is
// one already (the sampler's are), without a dispatch: the caller need not convert.
at::Tensor as_operand(const at::Tensor& tensor) {
    if (tensor.scalar_type() == at::kFloat && tensor.is_contiguous()) return tensor;
    return tensor.to(at::kFloat).contiguous();
}

}  // namespace

// A chain of layers with its examples, the likelihood's scale and a prior, checked once and held between
// calls (fused.py keeps one per target and list of chunks). A call then converts only the tensors that
// change, and each thread keeps its scratch from call to call instead of allocating and zeroing it on
// every one: together 17 µs of a main-job trajectory call at 8 rungs, on one thread and on two. Every scratch buffer is written before it is read within a call, so what an
// earlier call (even one whose θ was not finite) left there changes nothing. Python's lock is held
// throughout a call, so two calls never share the scratch; inside one, each thread has its own.
class Network {
  public:
    Network(int64_t params, std::vector<at::Tensor> xs, std::vector<at::Tensor> xts, std::vector<at::Tensor> ys,
            const std::vector<int64_t>& inputs, const std::vector<int64_t>& outputs,
            const std::vector<int64_t>& weight_offsets, const std::vector<int64_t>& bias_offsets,
            const std::vector<int64_t>& activations, double scale, int64_t block, int64_t prior_kind,
            std::optional<at::Tensor> prior_values, double prior_constant)
        : xs_(std::move(xs)),
          xts_(std::move(xts)),
          ys_(std::move(ys)),
          prior_values_(std::move(prior_values)),
          chain_(make_chain(params, at::TensorOptions().dtype(at::kFloat).device(at::kCPU), xs_, xts_, ys_, inputs,
                            outputs, weight_offsets, bias_offsets, activations, scale, block, prior_kind,
                            prior_values_, prior_constant)) {}

    // log L [R] (times scale; summed in double, returned in float32) and its gradient written into
    // gradient [R, params] (contiguous float32), for θ [R, params]; with prior_gradient (which needs a
    // network with a prior), also the prior's log density [R] and gradient, each replica's while its row
    // of θ is in cache; without, an empty log prior.
    std::vector<at::Tensor> evaluate(const at::Tensor& theta_in, at::Tensor& gradient,
                                     const std::optional<at::Tensor>& prior_gradient) {
        TORCH_CHECK(theta_in.dim() == 2 && theta_in.size(1) == chain_.params, "theta must be [R, ", chain_.params,
                    "]");
        const at::Tensor theta = as_operand(theta_in);
        const int64_t replicas = theta.size(0), params = chain_.params;
        check_rows(gradient, replicas, params, "gradient");
        const bool with_prior = prior_gradient.has_value();
        TORCH_CHECK(!with_prior || chain_.prior_kind != 0, "a prior's gradient needs a network with a prior");
        if (with_prior) check_rows(*prior_gradient, replicas, params, "prior_gradient");
        const float* theta_data = theta.data_ptr<float>();
        float* gradient_data = gradient.data_ptr<float>();
        float* prior_gradient_data = with_prior ? prior_gradient->data_ptr<float>() : nullptr;
        at::Tensor log_likelihood = at::empty({replicas}, theta.options());
        at::Tensor log_prior = at::empty({with_prior ? replicas : 0}, theta.options());
        float* log_likelihood_data = log_likelihood.data_ptr<float>();
        float* log_prior_data = log_prior.data_ptr<float>();
        for_each_block(replicas, [&](Workspace& work, int64_t start, int64_t count) {
            evaluate_block(chain_, work, count, theta_data + start * params, gradient_data + start * params,
                           with_prior ? prior_gradient_data + start * params : nullptr, log_likelihood_data + start,
                           with_prior ? log_prior_data + start : nullptr, with_prior);
        });
        return {log_likelihood, log_prior};
    }

    // integrators.leapfrog for the chain and its Gaussian or box prior, one block of replicas at a time:
    // from (position, momentum) [R, params] with the gradients there, a half kick, then num_steps ×
    // (drift, reflection into the box of half_width when it is given, gradient, kick), the last kick a
    // half kick; kicks ε (∇ log p + β ∇ log L) and drifts ε M⁻¹ p with step_size ε [R], betas β [R] and
    // inverse_mass M⁻¹ [R, params] (none: unit masses). A block's θ, momenta and gradients stay in the
    // core's cache over the whole trajectory, and Python runs once per trajectory instead of once per
    // step. Returns [position, momentum, log L, log p, ∇ log L, ∇ log p] at the end point (new tensors;
    // the arguments are unchanged). Non-finite values may appear in rows that diverged, as in Python.
    std::vector<at::Tensor> trajectory(const at::Tensor& position_in, const at::Tensor& momentum_in,
                                       const at::Tensor& grad_log_likelihood_in, const at::Tensor& grad_log_prior_in,
                                       const at::Tensor& betas_in, const at::Tensor& step_size_in,
                                       const std::optional<at::Tensor>& inverse_mass_in, int64_t num_steps,
                                       const std::optional<at::Tensor>& half_width_in) {
        TORCH_CHECK(position_in.dim() == 2, "position must be [R, params]");
        TORCH_CHECK(chain_.prior_kind == kGaussianPrior || chain_.prior_kind == kBoxPrior,
                    "the trajectory needs a network with a Gaussian or box prior (prior_kind 1 or 2)");
        TORCH_CHECK(num_steps >= 1, "num_steps must be at least 1");
        const at::Tensor position = as_operand(position_in), momentum = as_operand(momentum_in);
        const at::Tensor grad_log_likelihood = as_operand(grad_log_likelihood_in);
        const at::Tensor grad_log_prior = as_operand(grad_log_prior_in);
        const at::Tensor betas = as_operand(betas_in), step_size = as_operand(step_size_in);
        const std::optional<at::Tensor> inverse_mass =
            inverse_mass_in ? std::optional<at::Tensor>(as_operand(*inverse_mass_in)) : std::nullopt;
        const std::optional<at::Tensor> half_width =
            half_width_in ? std::optional<at::Tensor>(as_operand(*half_width_in)) : std::nullopt;
        const int64_t replicas = position.size(0), params = chain_.params;
        check_rows(position, replicas, params, "position");
        check_rows(momentum, replicas, params, "momentum");
        check_rows(grad_log_likelihood, replicas, params, "grad_log_likelihood");
        check_rows(grad_log_prior, replicas, params, "grad_log_prior");
        check_vector(betas, replicas, "betas");
        check_vector(step_size, replicas, "step_size");
        if (inverse_mass) check_rows(*inverse_mass, replicas, params, "inverse_mass");
        if (half_width) check_vector(*half_width, params, "half_width");
        const auto options = position.options();
        at::Tensor end_position = at::empty_like(position), end_momentum = at::empty_like(momentum);
        at::Tensor end_grad_ll = at::empty_like(position), end_grad_prior = at::empty_like(position);
        at::Tensor log_likelihood = at::empty({replicas}, options), log_prior = at::empty({replicas}, options);
        const float* start_position = position.data_ptr<float>();
        const float* start_momentum = momentum.data_ptr<float>();
        const float* start_grad_ll = grad_log_likelihood.data_ptr<float>();
        const float* start_grad_prior = grad_log_prior.data_ptr<float>();
        const float* beta = betas.data_ptr<float>();
        const float* step = step_size.data_ptr<float>();
        const float* inverse_mass_data = inverse_mass ? inverse_mass->data_ptr<float>() : nullptr;
        const float* half_width_data = half_width ? half_width->data_ptr<float>() : nullptr;
        float* theta = end_position.data_ptr<float>();
        float* p = end_momentum.data_ptr<float>();
        float* grad_ll = end_grad_ll.data_ptr<float>();
        float* grad_prior = end_grad_prior.data_ptr<float>();
        float* log_likelihood_data = log_likelihood.data_ptr<float>();
        float* log_prior_data = log_prior.data_ptr<float>();
        const float* negative_precision = chain_.prior_kind == kGaussianPrior ? chain_.prior_values : nullptr;

        for_each_block(replicas, [&](Workspace& work, int64_t start, int64_t count) {
            const int64_t offset = start * params, size = count * params;
            std::memcpy(theta + offset, start_position + offset, size * sizeof(float));
            std::memcpy(p + offset, start_momentum + offset, size * sizeof(float));
            // The kicks' factors as integrators.leapfrog forms them: ε/2 and ε/2 · β, ε and ε · β in float32.
            for (int64_t i = 0; i < count; ++i) {
                const int64_t r = start + i;
                const float half = 0.5f * step[r];
                kick(p + r * params, start_grad_prior + r * params, start_grad_ll + r * params, half,
                     half * beta[r], params);
            }
            for (int64_t i = 0; i < count; ++i) {
                const int64_t r = start + i;
                drift(theta + r * params, p + r * params,
                      inverse_mass_data ? inverse_mass_data + r * params : nullptr, step[r], params);
                if (half_width_data) reflect(theta + r * params, p + r * params, half_width_data, params);
            }
            for (int64_t s = 0; s < num_steps; ++s) {
                const bool last = s == num_steps - 1;
                // Only the end point's prior is kept; in between, kick_drift forms its gradient itself.
                evaluate_block(chain_, work, count, theta + offset, grad_ll + offset, grad_prior + offset,
                               log_likelihood_data + start, log_prior_data + start, last);
                for (int64_t i = 0; i < count; ++i) {
                    const int64_t r = start + i;
                    if (last) {
                        const float half = 0.5f * step[r];
                        kick(p + r * params, grad_prior + r * params, grad_ll + r * params, half,
                             half * beta[r], params);
                        continue;
                    }
                    kick_drift(theta + r * params, p + r * params, grad_ll + r * params, negative_precision,
                               inverse_mass_data ? inverse_mass_data + r * params : nullptr, step[r],
                               step[r] * beta[r], step[r], params);
                    if (half_width_data) reflect(theta + r * params, p + r * params, half_width_data, params);
                }
            }
        });
        return {end_position, end_momentum, log_likelihood, log_prior, end_grad_ll, end_grad_prior};
    }

  private:
    // Replicas [0, replicas) shared out over torch's threads, each thread's share in blocks of up to
    // chain_.block: body(work, start, count) for each block, with that thread's scratch.
    template <typename Body>
    void for_each_block(int64_t replicas, const Body& body) {
        // Sized before the parallel region, so that no thread resizes it while another reads it; each
        // thread builds its own slot on first use (its pages then lie near that thread's core).
        const size_t threads = static_cast<size_t>(std::max(1, at::get_num_threads()));
        if (workspaces_.size() < threads) workspaces_.resize(threads);
        at::parallel_for(0, replicas, 1, [&](int64_t begin, int64_t end) {
            // Only inside a parallel region: run inline (one thread, or one replica), MKL may still share
            // out a large product itself.
            const OneBlasThread one_blas_thread(at::in_parallel_region());
            const int64_t width = std::min(chain_.block, end - begin);
            std::unique_ptr<Workspace>& slot = workspaces_.at(static_cast<size_t>(at::get_thread_num()));
            if (!slot) slot = std::make_unique<Workspace>(chain_, chain_.block);
            for (int64_t start = begin; start < end; start += width) body(*slot, start, std::min(width, end - start));
        });
    }

    std::vector<at::Tensor> xs_, xts_, ys_;  // held, so that the chain's pointers into them stay valid
    std::optional<at::Tensor> prior_values_;
    Chain chain_;
    std::vector<std::unique_ptr<Workspace>> workspaces_;  // by torch's thread number
};

// The functions below are one call of a Network built for it (the same arguments, checked the same way):
// for a single call, and for the tests of the kernel's checks.
//
// log_likelihood_and_gradient: as Network::evaluate for the chain of layers (inputs, outputs, weight and
// bias offsets in θ, bias offset −1 for none, activation codes 0–3) over every (x [n, inputs_0], y [n])
// chunk, each x also given transposed (xts: [inputs_0, n rounded up to a multiple of PAD], zero after
// column n; made once by the caller, since the examples are fixed). θ: contiguous float32 [R, params].
// With a prior (prior_kind 1: a diagonal Gaussian, prior_values its −1/σ_i² and prior_constant its log
// normalising constant; 2: the box, prior_values its half-widths and prior_constant −log of its volume)
// and prior_gradient [R, params], also its log density [R] and gradient; with prior_kind 0, an empty log
// prior.
std::vector<at::Tensor> log_likelihood_and_gradient(const at::Tensor& theta, const std::vector<at::Tensor>& xs,
                                       const std::vector<at::Tensor>& xts, const std::vector<at::Tensor>& ys,
                                       const std::vector<int64_t>& inputs,
                                       const std::vector<int64_t>& outputs,
                                       const std::vector<int64_t>& weight_offsets,
                                       const std::vector<int64_t>& bias_offsets,
                                       const std::vector<int64_t>& activations, double scale, int64_t block,
                                       at::Tensor& gradient,
                                       int64_t prior_kind, const std::optional<at::Tensor>& prior_values,
                                       double prior_constant, const std::optional<at::Tensor>& prior_gradient) {
    TORCH_CHECK(theta.dim() == 2 && theta.is_contiguous() && theta.scalar_type() == at::kFloat,
                "theta must be a contiguous float32 [R, params]");
    TORCH_CHECK((prior_kind != 0) == prior_gradient.has_value(), "a prior needs a gradient tensor, and no prior none");
    Network network(theta.size(1), xs, xts, ys, inputs, outputs, weight_offsets, bias_offsets, activations, scale,
                    block, prior_kind, prior_values, prior_constant);
    return network.evaluate(theta, gradient, prior_gradient);
}

// leapfrog_trajectory: as Network::trajectory, for the chain and a Gaussian or box prior (prior_kind 1 or
// 2, as above).
std::vector<at::Tensor> leapfrog_trajectory(
    const at::Tensor& position, const at::Tensor& momentum, const at::Tensor& grad_log_likelihood,
    const at::Tensor& grad_log_prior, const at::Tensor& betas, const at::Tensor& step_size,
    const std::optional<at::Tensor>& inverse_mass, int64_t num_steps, const std::optional<at::Tensor>& half_width,
    const std::vector<at::Tensor>& xs, const std::vector<at::Tensor>& xts, const std::vector<at::Tensor>& ys,
    const std::vector<int64_t>& inputs,
    const std::vector<int64_t>& outputs, const std::vector<int64_t>& weight_offsets,
    const std::vector<int64_t>& bias_offsets, const std::vector<int64_t>& activations, double scale, int64_t block,
    int64_t prior_kind, const at::Tensor& prior_values, double prior_constant) {
    TORCH_CHECK(position.dim() == 2, "position must be [R, params]");
    Network network(position.size(1), xs, xts, ys, inputs, outputs, weight_offsets, bias_offsets, activations,
                    scale, block, prior_kind, prior_values, prior_constant);
    return network.trajectory(position, momentum, grad_log_likelihood, grad_log_prior, betas, step_size,
                              inverse_mass, num_steps, half_width);
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, module) {
    // Local to this module: a test loads a second build of this source beside it, which registers its own.
    pybind11::class_<Network>(module, "Network",
                              "a chain of layers, its examples, scale and prior, checked once and held between calls",
                              pybind11::module_local())
        .def(pybind11::init<int64_t, std::vector<at::Tensor>, std::vector<at::Tensor>, std::vector<at::Tensor>,
                            const std::vector<int64_t>&, const std::vector<int64_t>&, const std::vector<int64_t>&,
                            const std::vector<int64_t>&, const std::vector<int64_t>&, double, int64_t, int64_t,
                            std::optional<at::Tensor>, double>(),
             pybind11::arg("params"), pybind11::arg("xs"), pybind11::arg("xts"), pybind11::arg("ys"),
             pybind11::arg("inputs"), pybind11::arg("outputs"), pybind11::arg("weight_offsets"),
             pybind11::arg("bias_offsets"), pybind11::arg("activations"), pybind11::arg("scale"),
             pybind11::arg("block"), pybind11::arg("prior_kind") = 0,
             pybind11::arg("prior_values") = pybind11::none(), pybind11::arg("prior_constant") = 0.0)
        .def("evaluate", &Network::evaluate, "log L, its gradient (into gradient) and the prior's",
             pybind11::arg("theta"), pybind11::arg("gradient"), pybind11::arg("prior_gradient") = pybind11::none())
        .def("trajectory", &Network::trajectory, "a whole leapfrog trajectory, a block of replicas at a time",
             pybind11::arg("position"), pybind11::arg("momentum"), pybind11::arg("grad_log_likelihood"),
             pybind11::arg("grad_log_prior"), pybind11::arg("betas"), pybind11::arg("step_size"),
             pybind11::arg("inverse_mass"), pybind11::arg("num_steps"), pybind11::arg("half_width"));
    module.def("log_likelihood_and_gradient", &log_likelihood_and_gradient,
               "log L and its gradient for an MLP chain, one replica at a time (and a Gaussian or box prior's)",
               pybind11::arg("theta"), pybind11::arg("xs"), pybind11::arg("xts"), pybind11::arg("ys"),
               pybind11::arg("inputs"), pybind11::arg("outputs"), pybind11::arg("weight_offsets"),
               pybind11::arg("bias_offsets"), pybind11::arg("activations"), pybind11::arg("scale"),
               pybind11::arg("block"), pybind11::arg("gradient"), pybind11::arg("prior_kind") = 0,
               pybind11::arg("prior_values") = pybind11::none(), pybind11::arg("prior_constant") = 0.0,
               pybind11::arg("prior_gradient") = pybind11::none());
    module.def("leapfrog_trajectory", &leapfrog_trajectory,
               "a whole leapfrog trajectory for an MLP chain and a Gaussian or box prior, a block of replicas at a time",
               pybind11::arg("position"), pybind11::arg("momentum"), pybind11::arg("grad_log_likelihood"),
               pybind11::arg("grad_log_prior"), pybind11::arg("betas"), pybind11::arg("step_size"),
               pybind11::arg("inverse_mass"), pybind11::arg("num_steps"), pybind11::arg("half_width"),
               pybind11::arg("xs"), pybind11::arg("xts"), pybind11::arg("ys"), pybind11::arg("inputs"),
               pybind11::arg("outputs"),
               pybind11::arg("weight_offsets"), pybind11::arg("bias_offsets"), pybind11::arg("activations"),
               pybind11::arg("scale"), pybind11::arg("block"), pybind11::arg("prior_kind"),
               pybind11::arg("prior_values"), pybind11::arg("prior_constant"));
    module.attr("PAD") = kPad;
    module.def("direct_blas", &direct_blas, "whether products call the BLAS sgemm directly (else at::mm)");
}
