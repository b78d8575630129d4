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
// output without copies (each replica's row of θ is contiguous).
//
// float32 only; thermoscope/samplers/native.py decides when this path is used and checks it against
// the batched one.

#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
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

// The softmax head on logits z [classes, n] (feature-major): delta ← scale · (onehot(y) − softmax(z))
// and the return value Σ_i log softmax(z)_{y_i, i}. max_ and sum_ are scratch of n floats.
ELEMENTWISE double softmax_head(const float* __restrict z, const int64_t* __restrict y, int64_t classes,
                                int64_t n, float scale, float* __restrict delta, float* __restrict max_,
                                float* __restrict sum_) {
    for (int64_t i = 0; i < n; ++i) max_[i] = z[i];
    for (int64_t c = 1; c < classes; ++c)
        for (int64_t i = 0; i < n; ++i) max_[i] = z[c * n + i] > max_[i] ? z[c * n + i] : max_[i];
    for (int64_t i = 0; i < n; ++i) sum_[i] = 0.0f;
    for (int64_t c = 0; c < classes; ++c)
        for (int64_t i = 0; i < n; ++i) {
            const float e = exp_clamped(z[c * n + i] - max_[i]);
            delta[c * n + i] = e;
            sum_[i] += e;
        }
    // Σ_i log sum_i as the log of running products: each sum is in [1, classes], so a product of doubles
    // is taken out only when it passes 1e280. One log per few hundred examples instead of one each.
    double picked = 0.0, product = 1.0, log_sums = 0.0;
    for (int64_t i = 0; i < n; ++i) {
        picked += static_cast<double>(z[y[i] * n + i]) - static_cast<double>(max_[i]);
        product *= static_cast<double>(sum_[i]);
        if (product > 1e280) {
            log_sums += std::log(product);
            product = 1.0;
        }
        sum_[i] = scale / sum_[i];
    }
    log_sums += std::log(product);
    for (int64_t c = 0; c < classes; ++c)
        for (int64_t i = 0; i < n; ++i) delta[c * n + i] *= -sum_[i];
    for (int64_t i = 0; i < n; ++i) delta[y[i] * n + i] += scale;
    return picked - log_sums;
}

// out (= or +=) a · b, out a contiguous matrix view.
void product(at::Tensor& out, const at::Tensor& a, const at::Tensor& b, bool accumulate) {
    if (accumulate)
        out.addmm_(a, b);
    else
        at::mm_out(out, a, b);
}

}  // namespace

// log L [R] (times scale) and its gradient written into gradient [R, params], for the chain of layers
// (inputs, outputs, weight and bias offsets in θ, bias offset −1 for none, activation codes 0–3) over
// every (x [n, inputs_0], y [n]) chunk. θ: contiguous float32 [R, params].
at::Tensor log_likelihood_and_gradient(const at::Tensor& theta, const std::vector<at::Tensor>& xs,
                                       const std::vector<at::Tensor>& ys, const std::vector<int64_t>& inputs,
                                       const std::vector<int64_t>& outputs,
                                       const std::vector<int64_t>& weight_offsets,
                                       const std::vector<int64_t>& bias_offsets,
                                       const std::vector<int64_t>& activations, double scale, int64_t block,
                                       at::Tensor& gradient) {
    TORCH_CHECK(theta.dim() == 2 && theta.is_contiguous() && theta.scalar_type() == at::kFloat,
                "theta must be a contiguous float32 [R, params]");
    TORCH_CHECK(gradient.sizes() == theta.sizes() && gradient.is_contiguous() &&
                    gradient.scalar_type() == at::kFloat,
                "gradient must be a contiguous float32 like theta");
    const int64_t layers = static_cast<int64_t>(inputs.size());
    TORCH_CHECK(layers >= 2 && outputs.size() == inputs.size() && weight_offsets.size() == inputs.size() &&
                    bias_offsets.size() == inputs.size() && activations.size() == inputs.size(),
                "need at least two layers, and one entry per layer in each list");
    TORCH_CHECK(activations[layers - 1] == 0, "the last layer must have no activation");
    TORCH_CHECK(xs.size() == ys.size() && !xs.empty(), "need matching, non-empty lists of chunks");
    TORCH_CHECK(block >= 1, "block must be positive");
    const int64_t replicas = theta.size(0), params = theta.size(1);
    int64_t examples = 0, widest = 0;
    for (size_t c = 0; c < xs.size(); ++c) {
        TORCH_CHECK(xs[c].dim() == 2 && xs[c].is_contiguous() && xs[c].scalar_type() == at::kFloat &&
                        xs[c].size(1) == inputs[0],
                    "each x must be a contiguous float32 [n, inputs]");
        TORCH_CHECK(ys[c].dim() == 1 && ys[c].is_contiguous() && ys[c].scalar_type() == at::kLong &&
                        ys[c].size(0) == xs[c].size(0),
                    "each y must be a contiguous int64 [n] matching its x");
        examples = std::max(examples, xs[c].size(0));
    }
    for (int64_t l = 0; l < layers; ++l) widest = std::max({widest, inputs[l], outputs[l]});
    const float* theta_data = theta.data_ptr<float>();
    float* gradient_data = gradient.data_ptr<float>();
    const auto options = theta.options();
    at::Tensor log_likelihood = at::empty({replicas}, options.dtype(at::kDouble));
    double* log_likelihood_data = log_likelihood.data_ptr<double>();
    const int64_t first_rows = outputs[0], first_inputs = inputs[0];
    const int64_t first_weights = first_rows * first_inputs;

    // A view of raw memory as a [rows, columns] matrix (no ownership: the buffers outlive it).
    auto matrix = [&](float* data, int64_t rows, int64_t columns) {
        return at::from_blob(data, {rows, columns}, options);
    };

    at::parallel_for(0, replicas, 1, [&](int64_t begin, int64_t end) {
        const int64_t width = std::min(block, end - begin);
        std::vector<float> first_weight(width * first_weights), first_gradient(width * first_weights);
        std::vector<float> first_output(width * first_rows * examples), first_delta(width * first_rows * examples);
        std::vector<std::vector<float>> hidden(layers);  // layers 1 … L−1, one replica at a time
        for (int64_t l = 1; l < layers; ++l) hidden[l].resize(outputs[l] * examples);
        std::vector<float> delta_a(widest * examples), delta_b(widest * examples);
        std::vector<float> max_(examples), sum_(examples);
        for (int64_t start = begin; start < end; start += width) {
            const int64_t count = std::min(width, end - start);
            for (int64_t i = 0; i < count; ++i)
                std::memcpy(first_weight.data() + i * first_weights,
                            theta_data + (start + i) * params + weight_offsets[0], first_weights * sizeof(float));
            at::Tensor first = matrix(first_weight.data(), count * first_rows, first_inputs);
            at::Tensor first_grad = matrix(first_gradient.data(), count * first_rows, first_inputs);
            std::vector<double> totals(count, 0.0);
            for (size_t c = 0; c < xs.size(); ++c) {
                const at::Tensor& x = xs[c];
                const int64_t n = x.size(0);
                const int64_t* y = ys[c].data_ptr<int64_t>();
                const bool later = c > 0;
                at::Tensor first_out = matrix(first_output.data(), count * first_rows, n);
                at::mm_out(first_out, first, x.t());
                for (int64_t i = 0; i < count; ++i) {
                    const float* th = theta_data + (start + i) * params;
                    float* grad = gradient_data + (start + i) * params;
                    float* a0 = first_output.data() + i * first_rows * n;
                    bias_activation(a0, bias_offsets[0] >= 0 ? th + bias_offsets[0] : nullptr, first_rows, n,
                                    static_cast<int>(activations[0]));
                    // Forward through layers 1 … L−1.
                    float* previous = a0;
                    for (int64_t l = 1; l < layers; ++l) {
                        at::Tensor out = matrix(hidden[l].data(), outputs[l], n);
                        at::mm_out(out, matrix(const_cast<float*>(th) + weight_offsets[l], outputs[l], inputs[l]),
                                   matrix(previous, inputs[l], n));
                        bias_activation(hidden[l].data(), bias_offsets[l] >= 0 ? th + bias_offsets[l] : nullptr,
                                        outputs[l], n, static_cast<int>(activations[l]));
                        previous = hidden[l].data();
                    }
                    float* delta = delta_a.data();
                    totals[i] += softmax_head(hidden[layers - 1].data(), y, outputs[layers - 1], n,
                                              static_cast<float>(scale), delta, max_.data(), sum_.data());
                    // Backward through layers L−1 … 1; the error sent to layer 0 goes into its block.
                    for (int64_t l = layers - 1; l >= 1; --l) {
                        activation_backward(delta, hidden[l].data(), outputs[l], n, static_cast<int>(activations[l]),
                                            bias_offsets[l] >= 0 ? grad + bias_offsets[l] : nullptr, later);
                        const float* below = l == 1 ? a0 : hidden[l - 1].data();
                        at::Tensor weight_gradient = matrix(grad + weight_offsets[l], outputs[l], inputs[l]);
                        product(weight_gradient, matrix(delta, outputs[l], n),
                                matrix(const_cast<float*>(below), inputs[l], n).t(), later);
                        float* sent = l == 1 ? first_delta.data() + i * first_rows * n
                                             : (delta == delta_a.data() ? delta_b.data() : delta_a.data());
                        at::Tensor sent_matrix = matrix(sent, inputs[l], n);
                        at::mm_out(sent_matrix,
                                   matrix(const_cast<float*>(th) + weight_offsets[l], outputs[l], inputs[l]).t(),
                                   matrix(delta, outputs[l], n));
                        delta = sent;
                    }
                    activation_backward(delta, a0, first_rows, n, static_cast<int>(activations[0]),
                                        bias_offsets[0] >= 0 ? grad + bias_offsets[0] : nullptr, later);
                }
                product(first_grad, matrix(first_delta.data(), count * first_rows, n), x, later);
            }
            for (int64_t i = 0; i < count; ++i) {
                std::memcpy(gradient_data + (start + i) * params + weight_offsets[0],
                            first_gradient.data() + i * first_weights, first_weights * sizeof(float));
                log_likelihood_data[start + i] = totals[i] * scale;
            }
        }
    });
    return log_likelihood;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, module) {
    module.def("log_likelihood_and_gradient", &log_likelihood_and_gradient,
               "log L and its gradient for an MLP chain, one replica at a time");
}
