#pragma once
// Fine-tuning a ternary checkpoint: the training the published accounts of collapsed BitNet runs use
// to cure them (resume from a healthy checkpoint, replace weight decay by a potential that repels
// weights from zero). BitLinear latents train through straight-through estimators exactly as the
// inference forward quantizes. No LibTorch in this header: the engine is src/trainer.cpp.
#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "bitfsck/analysis/selection.hpp"
#include "bitfsck/io/progress.hpp"
#include "bitfsck/model/model.hpp"
#include "bitfsck/model/tokens.hpp"

namespace bitfsck::model {

// ---- optimizers and schedule ----------------------------------------------------------------

enum class OptimizerKind : std::uint8_t { AdamW, Sgd, Muon };
std::string_view optimizer_name(OptimizerKind k);
OptimizerKind parse_optimizer(std::string_view s);  // throws ModelError

// Two groups: the ternary matrices (BitLinear weights) and everything else (embeddings, norms,
// biases). Muon updates the matrices; AdamW the rest, as the Distillix trainer does.
struct OptimizerOptions {
    OptimizerKind kind = OptimizerKind::AdamW;
    double lr = 1e-3;        // matrices
    double lr_other = 1e-3;  // everything else
    double beta1 = 0.9, beta2 = 0.95, eps = 1e-8;
    double weight_decay_other = 0.0;  // AdamW's decoupled decay on the other group; matrices take --reg decay
    double momentum = 0.9;            // SGD (dampening 0, no Nesterov)
    double muon_momentum = 0.95;      // Nesterov momentum before Newton–Schulz
    int muon_ns_steps = 5;
};

enum class ScheduleKind : std::uint8_t { Cosine, Linear, Constant };
ScheduleKind parse_schedule(std::string_view s);
std::string_view schedule_name(ScheduleKind k);
struct ScheduleOptions {
    ScheduleKind kind = ScheduleKind::Cosine;
    std::int64_t warmup = 0;   // linear from lr/warmup to lr over the first `warmup` steps
    double min_lr_frac = 0.1;  // where cosine and linear decay end, as a fraction of lr
};
// The multiplier of the peak learning rates at 0-based `step` of `total`.
double lr_factor(const ScheduleOptions& s, std::int64_t step, std::int64_t total);

// ---- regularizers ---------------------------------------------------------------------------

enum class RegularizerKind : std::uint8_t { Decay, DoubleWell, ThreePeaks, Polarize, Wasserstein };
std::string_view regularizer_name(RegularizerKind k);

// Where a regularizer's lattice scale S comes from.
enum class LatticeScale : std::uint8_t {
    Fixed,      // target=0.01
    Reference,  // target=like: the absmean of the same role in --like's checkpoint (per layer-role)
    Own,        // target=own: the tensor's own quantizer scale γ = mean|W| at each step (no gradient through it)
};

struct Regularizer {
    RegularizerKind kind = RegularizerKind::DoubleWell;
    double lambda = 0;        // penalty weight; decay: the L2 coefficient
    bool decoupled = false;   // decay: w ← w − lr·λ·w before the step instead of grad += λ·w after clipping
    double strength = 1e-3;   // polarize: how far a dead-zone weight moves per step
    LatticeScale scale_source = LatticeScale::Own;
    double scale = 0.01;      // S when Fixed
    double width = 0.1;       // wasserstein: σ/S of each target peak
    std::optional<double> zero_mass;  // wasserstein: target zero mass; unset: a healthy Gaussian's (erf(1/(2√π)) ≈ 31.0%)
    analysis::TensorSelection selection;  // empty: every trained ternary matrix
    std::string spec;         // as the user wrote it

    // Resolved by the caller (resolve_regularizers): the tensors it applies to, S per tensor for
    // Reference, and the target's quantile function at S = 1 for Wasserstein.
    std::vector<std::string> tensors;
    std::map<std::string, double> reference_scale;
    std::function<double(double)> unit_quantile;
};

// "double-well:lambda=1e-3,target=like,roles=mlp", "decay:lambda=30,coupled",
// "polarize:strength=1e-3,target=0.01", "wasserstein:lambda=10,layers=0-3|5". Lists inside a
// spec use '|'. Throws ModelError naming the spec and the bad key.
Regularizer parse_regularizer(std::string_view spec);
nlohmann::ordered_json to_json(const Regularizer& r);

// ---- the run --------------------------------------------------------------------------------

// Data-parallel placement, from torchrun's or Slurm's environment variables.
struct DistributedEnv {
    int rank = 0, world_size = 1, local_rank = 0;
    std::string master_addr = "127.0.0.1";
    int master_port = 29500;
    std::string source;  // "torchrun", "slurm", or "" (one process)
    bool active() const { return world_size > 1; }
};
// Reads RANK/WORLD_SIZE/LOCAL_RANK/MASTER_ADDR/MASTER_PORT, else SLURM_PROCID/SLURM_NTASKS/
// SLURM_LOCALID/SLURM_STEP_NODELIST (first host). Throws ModelError for inconsistent values.
DistributedEnv distributed_env_from_environment();

struct FinetuneOptions {
    std::filesystem::path input, output;
    LoadOptions load;
    std::vector<std::string> trusted_globals;

    std::filesystem::path tokens, val_tokens;  // val_tokens empty: hold out val_frac of the end of tokens
    TokenDType token_dtype = TokenDType::U16;
    double val_frac = 0.05;
    std::int64_t val_windows = 0;  // 0: every non-overlapping window of the validation tokens

    std::int64_t steps = 100, batch = 8, seq_len = 256, grad_accum = 1;
    std::uint64_t seed = 1337;
    std::vector<std::string> train_groups = {"mlp", "attn", "norm", "embed"};  // what may change

    OptimizerOptions optimizer;
    ScheduleOptions schedule;
    double clip = 1.0;  // global gradient-norm clip; 0: none
    std::vector<Regularizer> regularizers;

    std::filesystem::path teacher;  // distillation: KL to the teacher's softened distribution
    double kd_weight = 0.5, kd_temp = 2.0;

    std::string precision = "fp32";  // "bf16": autocast on CUDA
    std::int64_t save_every = 0;     // 0: only at the end
    std::int64_t eval_every = 0;     // 0: at the start, at each save and at the end
    bool drop_optimizer_state = true;  // the input's optimizer state describes another run
    std::filesystem::path like;        // the healthy reference the regularizers' scales came from (recorded)
    bool resume = false;               // continue from OUT's latest save
    // After training, measure the result and every checkpoint in the input's folder (the run it came
    // from) on the same validation windows, through the same forward: a cure that scans healthy but
    // predicts worse than the run's own checkpoints is then plain to see.
    bool compare_run = false;

    DistributedEnv dist;
    std::function<void(const nlohmann::ordered_json& metrics_line)> on_metrics;
    // Steps done of `steps`, the label "loss 2.3456". A false return (Ctrl-C, the app's Cancel)
    // stops training at the next step boundary; unlike the read-only passes, which throw Cancelled,
    // a run then saves what it reached (a resumable save, OUT.state.json) and returns with
    // stopped_early set: an hour of training is never thrown away. In a distributed run every rank
    // calls its own callback and the ranks agree before stopping.
    ProgressCallback progress;
};

// The options as a JSON document: the "options" of OUT.state.json, and what `finetune --options
// FILE` reads. The reader takes a partial document (every key missing keeps its default, nested
// "optimizer" and "schedule" objects too; "regularizers" entries are spec strings or {"spec": ...});
// an unknown key is a ModelUsageError naming it, so a typo never trains with a default.
nlohmann::ordered_json to_json(const FinetuneOptions& options);
FinetuneOptions finetune_options_from_json(const nlohmann::json& j, const std::string& origin);

struct RunCheckpointLoss {
    std::string file;
    double val_loss = 0;
};

struct FinetuneResult {
    std::filesystem::path output, metrics, state;
    std::int64_t steps_done = 0;
    bool stopped_early = false;
    std::optional<double> val_loss_before, val_loss_after;
    double tokens_per_second = 0;
    std::vector<std::string> unpacked;  // tensors stored packed in the input, trained from their decoded values
    std::vector<std::string> notes;
    // compare_run: the result's loss and the run's checkpoints' (name order), the same windows.
    std::optional<double> result_val_loss;
    std::vector<RunCheckpointLoss> run_checkpoints;
};

// Trains and writes OUT (the input's keys and layout; .pt or .safetensors as the input),
// OUT.metrics.jsonl and OUT.state.pt + OUT.state.json (optimizer state, step, configuration),
// each atomically, at every save; OUT.state.json last, so it always names a complete save.
// Throws bitfsck::Error (ModelError, io errors) for bad input.
FinetuneResult run_finetune(FinetuneOptions options);

// `finetune --json`: schema_version, tool, then the result (what resurrect reads from its child).
nlohmann::ordered_json to_json(const FinetuneResult& result);
// The run checkpoint with the lowest validation loss (null without a comparison). The latest is
// run_checkpoints.back(): the folder's checkpoints in name order are the run's in step order.
const RunCheckpointLoss* best_in_run(const FinetuneResult& result);

// The options a run was started with, read back from OUT.state.json, with `resume` set: run_finetune
// then continues from the latest save (weights, optimizer state, step), bit-identical on the same
// CPU threads to a run that was never stopped. Regularizers come back unresolved.
FinetuneOptions options_for_resume(const std::filesystem::path& output);

// Fills each regularizer's tensors (its selection over the trained ternary matrices),
// reference scales (from `like`, absmean per layer-role) and quantile function. `unit_quantile`
// is the caller's three-peak target quantile at S = 1 given the zero mass and width (repair's).
void resolve_regularizers(std::vector<Regularizer>& regs, const io::Checkpoint& input, const io::Checkpoint* like,
                          const std::function<double(double zero_mass, double width, double u)>& unit_quantile);

// ---- the engine, for tests and for callers that bring their own loop -------------------------

struct NamedTensor {
    std::string name;
    std::vector<std::int64_t> shape;
    std::vector<float> values;
};

struct StepReport {
    double loss = 0;       // next-token cross entropy, mean over the batch (all ranks)
    double kd = 0;         // distillation KL·T², when a teacher is given
    double reg_loss = 0;   // summed regularizer penalties
    double grad_norm = 0;  // before clipping
};

class Trainer {
public:
    // teacher may be null. Throws ModelError for an untrainable checkpoint or bad options.
    Trainer(const io::Checkpoint& input, const FinetuneOptions& options, const io::Checkpoint* teacher = nullptr);
    Trainer(Trainer&&) noexcept;
    Trainer& operator=(Trainer&&) noexcept;
    ~Trainer();

    // One optimizer step on windows [rows, seq_len + 1] (rows = batch·grad_accum, micro-batches
    // in order). In a distributed run each rank passes its own rows; gradients are averaged.
    StepReport step(std::span<const std::int64_t> windows, std::int64_t rows, double lr_factor);
    // The gradients step() would apply before clipping (data loss + penalties; coupled decay
    // included). rows = 0: the penalties alone.
    std::vector<NamedTensor> gradients(std::span<const std::int64_t> windows, std::int64_t rows);
    // Clipping, penalties and the optimizer with given gradients in place of the data loss's.
    void apply_gradients(const std::vector<NamedTensor>& grads, double lr_factor);

    LossSum evaluate(std::span<const std::int64_t> windows, std::int64_t rows) const;

    std::vector<NamedTensor> parameters() const;  // the latent weights, stored shapes
    std::vector<NamedTensor> optimizer_state() const;  // "<slot>/<name>" and "step"
    void load_parameters(const std::vector<NamedTensor>& values);
    void load_optimizer_state(const std::vector<NamedTensor>& state);

    // Per layer-role of the ternary matrices: std, γ (mean|W|) and the −/0/+ code fractions.
    nlohmann::ordered_json role_metrics() const;
    const ModelConfig& config() const;
    std::vector<std::string> unpacked() const;
    std::int64_t optimizer_steps() const;
    // Whether `flag` is set on any rank (one small all-reduce; every rank must call it together).
    // Without a process group: flag.
    bool any_rank(bool flag);

    struct Impl;

private:
    std::unique_ptr<Impl> impl_;
};

}  // namespace bitfsck::model
