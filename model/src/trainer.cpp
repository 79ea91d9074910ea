// The fine-tuning engine: straight-through training of BitLinear latents with the regularizers of
// finetune.hpp, AdamW / SGD / Muon written out in tensor ops (so that their state is ours to save
// and the formulas are the ones the tests check against torch.optim), and data-parallel averaging.
#include "trainable.h"

#include <ATen/autocast_mode.h>

#include <algorithm>
#include <cmath>
#include <map>

#include "bitfsck/analysis/layers.hpp"
#include "bitfsck/model/finetune.hpp"
#include "distributed.h"

namespace bitfsck::model {
namespace {

struct Param {
    std::string name;
    at::Tensor w;  // the leaf
    analysis::TensorPlace place;
    bool matrix = false;   // a ternary (BitLinear) matrix: Muon's group, the metrics' subject
    bool trained = false;
    at::Tensor m, v, buf;  // AdamW moments; SGD / Muon momentum
};

struct ActiveRegularizer {
    Regularizer spec;
    std::vector<std::size_t> params;
    std::map<std::size_t, at::Tensor> unit_quantiles;  // wasserstein: sorted target at S = 1
};

std::string group_of(const analysis::TensorPlace& p) {
    using analysis::Role;
    if (analysis::role_is_mlp(p.role)) return "mlp";
    if (analysis::role_is_attention(p.role)) return "attn";
    if (p.role == Role::Embedding || p.role == Role::Position || p.role == Role::Head) return "embed";
    return "norm";  // norms and anything unrecognised: small vectors
}

// Autocast to bfloat16 on CUDA for the forward pass only; the latents, the optimizer and the
// penalties stay fp32.
class Autocast {
public:
    explicit Autocast(bool on) : on_(on) {
        if (!on_) return;
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
        at::autocast::set_autocast_enabled(at::kCUDA, true);
        at::autocast::set_autocast_dtype(at::kCUDA, at::kBFloat16);
#else
        at::autocast::set_enabled(true);
        at::autocast::set_autocast_gpu_dtype(at::kBFloat16);
#endif
    }
    ~Autocast() {
        if (!on_) return;
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
        at::autocast::set_autocast_enabled(at::kCUDA, false);
#else
        at::autocast::set_enabled(false);
#endif
        at::autocast::clear_cache();
    }
    Autocast(const Autocast&) = delete;
    Autocast& operator=(const Autocast&) = delete;

private:
    bool on_;
};

// X ← aX + (bA + cA²)X with A = XXᵀ, after normalising by the Frobenius norm; the wide side is
// kept as columns so that A is the small Gram matrix.
at::Tensor newton_schulz(const at::Tensor& g, int steps) {
    constexpr double a = 3.4445, b = -4.7750, c = 2.0315;
    at::Tensor x = g / (g.norm() + 1e-7);
    const bool tall = g.size(0) > g.size(1);
    if (tall) x = x.t();
    for (int i = 0; i < steps; ++i) {
        at::Tensor A = at::matmul(x, x.t());
        at::Tensor B = b * A + c * at::matmul(A, A);
        x = a * x + at::matmul(B, x);
    }
    return tall ? x.t() : x;
}

std::vector<std::int64_t> shape_of(const at::Tensor& t) { return std::vector<std::int64_t>(t.sizes().begin(), t.sizes().end()); }

NamedTensor to_named(const std::string& name, const at::Tensor& t) {
    NamedTensor n;
    n.name = name;
    n.shape = shape_of(t);
    at::Tensor host = t.detach().to(at::kCPU).to(at::kFloat).contiguous();
    n.values.assign(host.data_ptr<float>(), host.data_ptr<float>() + host.numel());
    return n;
}

at::Tensor from_named(const NamedTensor& n, const at::Tensor& like, const std::string& what) {
    if (n.shape != shape_of(like))
        throw ModelError(what + ": '" + n.name + "' has another shape than the model's tensor");
    at::Tensor t = at::empty(n.shape, at::TensorOptions().dtype(at::kFloat));
    std::copy(n.values.begin(), n.values.end(), t.data_ptr<float>());
    return t.to(like.device());
}

}  // namespace

struct Trainer::Impl {
    TrainableModel model;
    std::optional<TrainableModel> teacher;
    FinetuneOptions opts;
    std::vector<Param> params;
    std::vector<ActiveRegularizer> regs;
    std::unique_ptr<GradientReducer> reducer;
    std::int64_t optimizer_steps = 0;
    bool autocast = false;

    at::Tensor windows_tensor(std::span<const std::int64_t> windows, std::int64_t rows) const {
        const std::int64_t width = opts.seq_len + 1;
        if (rows < 0 || static_cast<std::int64_t>(windows.size()) != rows * width)
            throw ModelError("fine-tuning: " + std::to_string(windows.size()) + " ids do not make " + std::to_string(rows) +
                             " windows of " + std::to_string(width) + " tokens");
        at::Tensor t = at::empty({rows, width}, at::TensorOptions().dtype(at::kLong));
        std::copy(windows.begin(), windows.end(), t.data_ptr<std::int64_t>());
        return t;
    }

    // Mean cross entropy of one micro-batch (and the distillation term), recorded for autograd.
    std::pair<at::Tensor, at::Tensor> data_loss(const at::Tensor& win) const {
        const std::int64_t T = opts.seq_len;
        at::Tensor ids = win.slice(1, 0, T);
        at::Tensor targets = win.slice(1, 1, T + 1).to(model.device());
        at::Tensor logits;
        {
            Autocast ac(autocast);
            logits = model.logits(ids).to(at::kFloat);
        }
        at::Tensor logp = at::log_softmax(logits, -1);
        at::Tensor ce = -logp.gather(-1, targets.unsqueeze(-1)).mean();
        at::Tensor kd;
        if (teacher) {
            at::Tensor t_logits;
            {
                at::NoGradGuard ng;
                Autocast ac(autocast);
                t_logits = teacher->logits(ids).to(at::kFloat);
            }
            const double temp = opts.kd_temp;
            at::Tensor t_logp = at::log_softmax(t_logits / temp, -1);
            at::Tensor s_logp = at::log_softmax(logits / temp, -1);
            kd = (t_logp.exp() * (t_logp - s_logp)).sum(-1).mean() * (temp * temp);
        }
        return {ce, kd};
    }

    at::Tensor scale_of(const ActiveRegularizer& r, const Param& p) const {
        switch (r.spec.scale_source) {
            case LatticeScale::Fixed: return at::scalar_tensor(r.spec.scale, p.w.options().requires_grad(false));
            case LatticeScale::Reference: {
                auto it = r.spec.reference_scale.find(p.name);
                if (it == r.spec.reference_scale.end())
                    throw ModelError("--reg " + r.spec.spec + ": no reference scale for '" + p.name + "'");
                return at::scalar_tensor(it->second, p.w.options().requires_grad(false));
            }
            case LatticeScale::Own: return p.w.detach().abs().mean() + 1e-8;
        }
        return {};
    }

    // The differentiable penalties, summed; backward() adds their gradients.
    at::Tensor penalty() {
        at::Tensor total;
        for (auto& r : regs) {
            const auto kind = r.spec.kind;
            if (kind == RegularizerKind::Decay || kind == RegularizerKind::Polarize) continue;
            for (std::size_t i : r.params) {
                const Param& p = params[i];
                at::Tensor S = scale_of(r, p);
                at::Tensor term;
                if (kind == RegularizerKind::DoubleWell) {
                    term = (p.w.abs() - S).pow(2).sum();
                } else if (kind == RegularizerKind::ThreePeaks) {
                    at::Tensor nearest = (at::clamp(at::round(p.w.detach() / S), -1, 1) * S).detach();
                    term = (p.w - nearest).pow(2).sum();
                } else {
                    auto it = r.unit_quantiles.find(i);
                    if (it == r.unit_quantiles.end()) {
                        if (!r.spec.unit_quantile)
                            throw ModelError("--reg " + r.spec.spec + ": no target quantile function was resolved");
                        const std::int64_t n = p.w.numel();
                        at::Tensor q = at::empty({n}, at::TensorOptions().dtype(at::kDouble));
                        double* qd = q.data_ptr<double>();
                        for (std::int64_t k = 0; k < n; ++k) qd[k] = r.spec.unit_quantile((static_cast<double>(k) + 0.5) / static_cast<double>(n));
                        it = r.unit_quantiles.emplace(i, q.to(at::kFloat).to(p.w.device())).first;
                    }
                    at::Tensor sorted = std::get<0>(at::sort(p.w.reshape({-1})));
                    term = (sorted - S * it->second).pow(2).sum();
                }
                term = r.spec.lambda * term;
                total = total.defined() ? total + term : term;
            }
        }
        return total;
    }

    std::vector<at::Tensor> trained_grads() {
        std::vector<at::Tensor> g;
        for (auto& p : params) {
            if (!p.trained) continue;
            if (!p.w.grad().defined()) p.w.mutable_grad() = at::zeros_like(p.w);
            g.push_back(p.w.grad());
        }
        return g;
    }

    void zero_grads() {
        for (auto& p : params) p.w.mutable_grad() = at::Tensor();
    }

    // Data gradients (averaged over ranks) plus the penalties' gradients, accumulated in .grad.
    StepReport accumulate(const at::Tensor& win) {
        StepReport rep;
        zero_grads();
        const std::int64_t rows = win.size(0);
        at::Tensor loss_sum = at::zeros({2}, at::TensorOptions().dtype(at::kDouble));
        if (rows > 0) {
            const std::int64_t micro = opts.batch;
            if (rows % micro != 0)
                throw ModelError("fine-tuning: " + std::to_string(rows) + " windows are not whole micro-batches of " + std::to_string(micro));
            const std::int64_t n_micro = rows / micro;
            for (std::int64_t m = 0; m < n_micro; ++m) {
                auto [ce, kd] = data_loss(win.slice(0, m * micro, (m + 1) * micro));
                at::Tensor loss = kd.defined() ? (1 - opts.kd_weight) * ce + opts.kd_weight * kd : ce;
                (loss / static_cast<double>(n_micro)).backward();
                loss_sum[0] += ce.detach().to(at::kCPU).to(at::kDouble) / static_cast<double>(n_micro);
                if (kd.defined()) loss_sum[1] += kd.detach().to(at::kCPU).to(at::kDouble) / static_cast<double>(n_micro);
            }
            std::vector<at::Tensor> grads = trained_grads();
            if (reducer) {
                at::Tensor l = loss_sum.to(at::kFloat).to(model.device());
                grads.push_back(l);
                reducer->average(grads);
                loss_sum = l.to(at::kCPU).to(at::kDouble);
            }
        }
        rep.loss = loss_sum[0].item<double>();
        rep.kd = loss_sum[1].item<double>();
        if (at::Tensor pen = penalty(); pen.defined()) {
            pen.backward();
            rep.reg_loss = pen.item<double>();
        }
        trained_grads();  // every trained tensor has a gradient (zeros where nothing reached it)
        return rep;
    }

    double clip_and_couple() {
        at::NoGradGuard ng;
        double norm_sq = 0;
        for (auto& p : params)
            if (p.trained) norm_sq += p.w.grad().to(at::kDouble).pow(2).sum().item<double>();
        const double norm = std::sqrt(norm_sq);
        // torch.nn.utils.clip_grad_norm_: scale by max_norm / (norm + 1e-6) when that is below 1.
        if (opts.clip > 0) {
            const double coef = opts.clip / (norm + 1e-6);
            if (coef < 1)
                for (auto& p : params)
                    if (p.trained) p.w.grad().mul_(coef);
        }
        // Coupled decay after clipping, as Adam's weight_decay: the clip cannot hide it.
        add_coupled_decay();
        return norm;
    }

    void add_coupled_decay() {
        at::NoGradGuard ng;
        for (const auto& r : regs)
            if (r.spec.kind == RegularizerKind::Decay && !r.spec.decoupled)
                for (std::size_t i : r.params) params[i].w.grad().add_(params[i].w.detach(), r.spec.lambda);
    }

    double lr_of(const Param& p, double factor) const {
        return (p.matrix ? opts.optimizer.lr : opts.optimizer.lr_other) * factor;
    }

    void optimizer_step(double factor) {
        at::NoGradGuard ng;
        ++optimizer_steps;
        const auto& o = opts.optimizer;
        for (const auto& r : regs)
            if (r.spec.kind == RegularizerKind::Decay && r.spec.decoupled)
                for (std::size_t i : r.params) params[i].w.mul_(1 - lr_of(params[i], factor) * r.spec.lambda);
        for (auto& p : params) {
            if (!p.trained) continue;
            const double lr = lr_of(p, factor);
            at::Tensor g = p.w.grad();
            const bool muon = o.kind == OptimizerKind::Muon && p.matrix && p.w.dim() == 2;
            if (muon) {
                if (!p.buf.defined()) p.buf = at::zeros_like(p.w);
                p.buf.mul_(o.muon_momentum).add_(g);
                at::Tensor update = newton_schulz(g.add(p.buf, o.muon_momentum), o.muon_ns_steps);
                const double rows = static_cast<double>(p.w.size(0)), cols = static_cast<double>(p.w.size(1));
                p.w.add_(update, -lr * std::sqrt(std::max(1.0, rows / cols)));
            } else if (o.kind == OptimizerKind::Sgd) {
                if (!p.buf.defined()) p.buf = at::zeros_like(p.w);
                p.buf.mul_(o.momentum).add_(g);
                p.w.add_(p.buf, -lr);
            } else {
                // torch.optim.AdamW (single-tensor path), step by step.
                if (!p.m.defined()) p.m = at::zeros_like(p.w), p.v = at::zeros_like(p.w);
                const double wd = p.matrix ? 0.0 : o.weight_decay_other;
                p.w.mul_(1 - lr * wd);
                p.m.mul_(o.beta1).add_(g, 1 - o.beta1);
                p.v.mul_(o.beta2).addcmul_(g, g, 1 - o.beta2);
                const double step = static_cast<double>(optimizer_steps);
                const double bc1 = 1 - std::pow(o.beta1, step), bc2 = 1 - std::pow(o.beta2, step);
                at::Tensor denom = (p.v.sqrt() / std::sqrt(bc2)).add_(o.eps);
                p.w.addcdiv_(p.m, denom, -lr / bc1);
            }
        }
        // The Distillix notes' polarized_step: dead-zone weights move away from zero by `strength`.
        for (auto& r : regs) {
            if (r.spec.kind != RegularizerKind::Polarize) continue;
            for (std::size_t i : r.params) {
                Param& p = params[i];
                at::Tensor S = scale_of(r, p);
                at::Tensor a = p.w.abs();
                at::Tensor dead = (a > 1e-9).logical_and(a < S / 2);
                p.w.add_(at::sign(p.w) * dead.to(p.w.scalar_type()), r.spec.strength);
            }
        }
    }
};

Trainer::Trainer(const io::Checkpoint& input, const FinetuneOptions& options, const io::Checkpoint* teacher)
    : impl_(std::make_unique<Impl>()) {
    Impl& I = *impl_;
    I.opts = options;
    if (options.batch <= 0 || options.seq_len <= 0 || options.grad_accum <= 0)
        throw ModelError("fine-tuning: --batch, --seq-len and --grad-accum must be positive");
    I.model = load_trainable(input, options.load);
    if (teacher) {
        I.teacher = load_trainable(*teacher, options.load);
        for (auto& p : I.teacher->parameters) p.leaf.requires_grad_(false);
        if (I.teacher->config().vocab_size != I.model.config().vocab_size)
            throw ModelError(teacher->path().string() + ": the teacher's vocabulary (" + std::to_string(I.teacher->config().vocab_size) +
                             ") differs from the student's (" + std::to_string(I.model.config().vocab_size) + ")");
    }
    if (options.precision == "bf16") {
        if (!I.model.device().is_cuda())
            throw ModelError("--precision bf16 autocasts on CUDA; on the CPU train in fp32 (--precision fp32)");
        I.autocast = true;
    } else if (options.precision != "fp32") {
        throw ModelError("--precision " + options.precision + ": expected fp32 or bf16");
    }
    for (const auto& g : options.train_groups)
        if (g != "mlp" && g != "attn" && g != "norm" && g != "embed")
            throw ModelError("--train " + g + ": expected a list of mlp, attn, norm, embed");
    for (auto& tp : I.model.parameters) {
        Param p;
        p.name = tp.name;
        p.w = tp.leaf;
        p.place = analysis::place_of(tp.name);
        p.matrix = analysis::role_is_ternary_matrix(p.place.role) && p.place.is_weight && tp.leaf.dim() == 2;
        const std::string group = group_of(p.place);
        p.trained = std::find(options.train_groups.begin(), options.train_groups.end(), group) != options.train_groups.end();
        p.w.requires_grad_(p.trained);
        I.params.push_back(std::move(p));
    }
    for (const auto& spec : options.regularizers) {
        ActiveRegularizer r;
        r.spec = spec;
        for (const auto& name : spec.tensors) {
            auto it = std::find_if(I.params.begin(), I.params.end(), [&](const Param& p) { return p.name == name; });
            if (it == I.params.end()) throw ModelError("--reg " + spec.spec + ": '" + name + "' is not a tensor of the model");
            if (!it->trained) continue;
            r.params.push_back(static_cast<std::size_t>(it - I.params.begin()));
        }
        if (r.params.empty())
            throw ModelError("--reg " + spec.spec + ": selects no trained tensor (check --train and the selection)");
        I.regs.push_back(std::move(r));
    }
    if (options.dist.active()) I.reducer = std::make_unique<GradientReducer>(options.dist, I.model.device());
}

Trainer::Trainer(Trainer&&) noexcept = default;
Trainer& Trainer::operator=(Trainer&&) noexcept = default;
Trainer::~Trainer() = default;

StepReport Trainer::step(std::span<const std::int64_t> windows, std::int64_t rows, double lr_factor) {
    if (rows != impl_->opts.batch * impl_->opts.grad_accum)
        throw ModelError("fine-tuning: a step takes batch × grad-accum = " + std::to_string(impl_->opts.batch * impl_->opts.grad_accum) +
                         " windows, not " + std::to_string(rows));
    StepReport rep = impl_->accumulate(impl_->windows_tensor(windows, rows));
    rep.grad_norm = impl_->clip_and_couple();
    impl_->optimizer_step(lr_factor);
    return rep;
}

std::vector<NamedTensor> Trainer::gradients(std::span<const std::int64_t> windows, std::int64_t rows) {
    impl_->accumulate(impl_->windows_tensor(windows, rows));
    impl_->add_coupled_decay();
    std::vector<NamedTensor> out;
    for (const auto& p : impl_->params)
        if (p.trained) out.push_back(to_named(p.name, p.w.grad()));
    impl_->zero_grads();
    return out;
}

void Trainer::apply_gradients(const std::vector<NamedTensor>& grads, double lr_factor) {
    Impl& I = *impl_;
    I.zero_grads();
    for (const auto& g : grads) {
        auto it = std::find_if(I.params.begin(), I.params.end(), [&](const Param& p) { return p.name == g.name; });
        if (it == I.params.end()) throw ModelError("apply_gradients: '" + g.name + "' is not a tensor of the model");
        if (it->trained) it->w.mutable_grad() = from_named(g, it->w, "apply_gradients");
    }
    if (at::Tensor pen = I.penalty(); pen.defined()) pen.backward();
    I.trained_grads();
    I.clip_and_couple();
    I.optimizer_step(lr_factor);
}

LossSum Trainer::evaluate(std::span<const std::int64_t> windows, std::int64_t rows) const {
    at::Tensor win = impl_->windows_tensor(windows, rows);
    at::NoGradGuard ng;
    LossSum total;
    const std::int64_t T = impl_->opts.seq_len;
    for (std::int64_t r = 0; r < rows; r += impl_->opts.batch) {
        at::Tensor part = win.slice(0, r, std::min(rows, r + impl_->opts.batch));
        at::Tensor logits;
        {
            Autocast ac(impl_->autocast);
            logits = impl_->model.logits(part.slice(1, 0, T)).to(at::kFloat);
        }
        at::Tensor logp = at::log_softmax(logits, -1);
        at::Tensor picked = logp.gather(-1, part.slice(1, 1, T + 1).to(impl_->model.device()).unsqueeze(-1));
        total.nll_sum -= picked.to(at::kDouble).sum().item<double>();
        total.count += part.size(0) * T;
    }
    return total;
}

std::vector<NamedTensor> Trainer::parameters() const {
    std::vector<NamedTensor> out;
    for (const auto& p : impl_->params) out.push_back(to_named(p.name, p.w));
    return out;
}

std::vector<NamedTensor> Trainer::optimizer_state() const {
    std::vector<NamedTensor> out;
    for (const auto& p : impl_->params) {
        if (p.m.defined()) out.push_back(to_named("exp_avg/" + p.name, p.m));
        if (p.v.defined()) out.push_back(to_named("exp_avg_sq/" + p.name, p.v));
        if (p.buf.defined()) out.push_back(to_named("momentum/" + p.name, p.buf));
    }
    NamedTensor step;
    step.name = "step";
    step.values = {static_cast<float>(impl_->optimizer_steps)};
    out.push_back(step);
    return out;
}

void Trainer::load_parameters(const std::vector<NamedTensor>& values) {
    at::NoGradGuard ng;
    for (const auto& v : values) {
        auto it = std::find_if(impl_->params.begin(), impl_->params.end(), [&](const Param& p) { return p.name == v.name; });
        if (it == impl_->params.end()) throw ModelError("resume: '" + v.name + "' is not a tensor of the model");
        it->w.copy_(from_named(v, it->w, "resume"));
    }
}

void Trainer::load_optimizer_state(const std::vector<NamedTensor>& state) {
    for (const auto& s : state) {
        if (s.name == "step") {
            if (s.values.size() != 1) throw ModelError("resume: the optimizer state's step is not one number");
            impl_->optimizer_steps = static_cast<std::int64_t>(s.values[0]);
            continue;
        }
        const auto slash = s.name.find('/');
        const std::string slot = s.name.substr(0, slash), name = slash == std::string::npos ? "" : s.name.substr(slash + 1);
        auto it = std::find_if(impl_->params.begin(), impl_->params.end(), [&](const Param& p) { return p.name == name; });
        if (it == impl_->params.end()) throw ModelError("resume: optimizer state for '" + name + "', which is not a tensor of the model");
        at::Tensor t = from_named(s, it->w, "resume");
        if (slot == "exp_avg") it->m = t;
        else if (slot == "exp_avg_sq") it->v = t;
        else if (slot == "momentum") it->buf = t;
        else throw ModelError("resume: unknown optimizer slot '" + slot + "'");
    }
}

nlohmann::ordered_json Trainer::role_metrics() const {
    // Every step: the figures of each matrix as device scalars, copied to the host in one transfer
    // (a .item() per figure would synchronise the device dozens of times per step).
    at::NoGradGuard ng;
    std::vector<at::Tensor> figures;
    std::vector<const Param*> matrices;
    for (const auto& p : impl_->params) {
        if (!p.matrix) continue;
        at::Tensor w = p.w.detach();
        at::Tensor a = w.abs();
        at::Tensor gamma = a.mean() + 1e-8;
        at::Tensor codes = at::clamp(at::round(w / gamma), -1, 1);
        figures.push_back(at::stack({w.sum(), w.pow(2).sum(), a.sum(), (codes < 0).sum().to(w.scalar_type()),
                                     (codes == 0).sum().to(w.scalar_type()), (codes > 0).sum().to(w.scalar_type())})
                              .to(at::kDouble));
        matrices.push_back(&p);
    }
    nlohmann::ordered_json out = nlohmann::ordered_json::object();
    if (figures.empty()) return out;
    at::Tensor host = at::stack(figures).to(at::kCPU).contiguous();
    const double* f = host.data_ptr<double>();
    struct Acc {
        double n = 0, sum = 0, sum_sq = 0, abs_sum = 0, neg = 0, zero = 0, pos = 0;
    };
    std::map<std::string, Acc> by_role;
    for (std::size_t i = 0; i < matrices.size(); ++i, f += 6) {
        Acc& acc = by_role[std::string(analysis::role_name(matrices[i]->place.role))];
        acc.n += static_cast<double>(matrices[i]->w.numel());
        acc.sum += f[0], acc.sum_sq += f[1], acc.abs_sum += f[2], acc.neg += f[3], acc.zero += f[4], acc.pos += f[5];
    }
    for (const auto& [role, acc] : by_role) {
        const double mean = acc.sum / acc.n;
        out[role] = {{"std", std::sqrt(std::max(0.0, acc.sum_sq / acc.n - mean * mean))},
                     {"gamma", acc.abs_sum / acc.n},
                     {"neg", acc.neg / acc.n},
                     {"zero", acc.zero / acc.n},
                     {"pos", acc.pos / acc.n}};
    }
    return out;
}

const ModelConfig& Trainer::config() const { return impl_->model.config(); }

std::vector<std::string> Trainer::unpacked() const {
    std::vector<std::string> out;
    for (const auto& p : impl_->model.parameters)
        if (p.unpacked) out.push_back(p.name);
    return out;
}

std::int64_t Trainer::optimizer_steps() const { return impl_->optimizer_steps; }

bool Trainer::any_rank(bool flag) {
    if (!impl_->reducer) return flag;
    at::Tensor t = at::full({1}, flag ? 1.0f : 0.0f, at::TensorOptions().dtype(at::kFloat).device(impl_->model.device()));
    impl_->reducer->average({t});
    return t.to(at::kCPU).item<float>() > 0;
}

}  // namespace bitfsck::model
