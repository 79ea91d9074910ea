// The fine-tuning run around the engine: data, the window sampler, the schedule, evaluation,
// metrics, saving in the input's own layout, and resuming. No LibTorch here (see trainer.cpp).
#include "bitfsck/model/finetune.hpp"

#include <algorithm>
#include <bit>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <numbers>
#include <set>

#include "bitfsck/analysis/layers.hpp"
#include "bitfsck/analysis/quantizer.hpp"
#include "bitfsck/analysis/timeline.hpp"
#include "bitfsck/io/atomic_write.hpp"
#include "bitfsck/io/checkpoint_files.hpp"
#include "bitfsck/io/pt_writer.hpp"
#include "bitfsck/io/safetensors_writer.hpp"
#include "bitfsck/io/tensor.hpp"
#include "bitfsck/io/json_document.hpp"

namespace bitfsck::model {
namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

// ---- names and parsing ----------------------------------------------------------------------

std::string_view optimizer_name(OptimizerKind k) {
    switch (k) {
        case OptimizerKind::AdamW: return "adamw";
        case OptimizerKind::Sgd: return "sgd";
        case OptimizerKind::Muon: return "muon";
    }
    return "?";
}

OptimizerKind parse_optimizer(std::string_view s) {
    if (s == "adamw") return OptimizerKind::AdamW;
    if (s == "sgd") return OptimizerKind::Sgd;
    if (s == "muon") return OptimizerKind::Muon;
    throw ModelUsageError("--optimizer " + std::string(s) + ": expected adamw, sgd or muon");
}

ScheduleKind parse_schedule(std::string_view s) {
    if (s == "cosine") return ScheduleKind::Cosine;
    if (s == "linear") return ScheduleKind::Linear;
    if (s == "constant") return ScheduleKind::Constant;
    throw ModelUsageError("--schedule " + std::string(s) + ": expected cosine, linear or constant");
}

std::string_view schedule_name(ScheduleKind k) {
    switch (k) {
        case ScheduleKind::Cosine: return "cosine";
        case ScheduleKind::Linear: return "linear";
        case ScheduleKind::Constant: return "constant";
    }
    return "?";
}

double lr_factor(const ScheduleOptions& s, std::int64_t step, std::int64_t total) {
    if (s.warmup > 0 && step < s.warmup) return static_cast<double>(step + 1) / static_cast<double>(s.warmup);
    if (s.kind == ScheduleKind::Constant) return 1.0;
    const std::int64_t span = std::max<std::int64_t>(1, total - s.warmup - 1);
    const double progress = std::clamp(static_cast<double>(step - s.warmup) / static_cast<double>(span), 0.0, 1.0);
    const double shape = s.kind == ScheduleKind::Cosine ? 0.5 * (1 + std::cos(std::numbers::pi * progress)) : 1 - progress;
    return s.min_lr_frac + (1 - s.min_lr_frac) * shape;
}

std::string_view regularizer_name(RegularizerKind k) {
    switch (k) {
        case RegularizerKind::Decay: return "decay";
        case RegularizerKind::DoubleWell: return "double-well";
        case RegularizerKind::ThreePeaks: return "three-peaks";
        case RegularizerKind::Polarize: return "polarize";
        case RegularizerKind::Wasserstein: return "wasserstein";
    }
    return "?";
}

namespace {

std::vector<std::string> split(std::string_view s, char sep) {
    std::vector<std::string> out;
    std::size_t start = 0;
    while (start <= s.size()) {
        const auto end = s.find(sep, start);
        out.emplace_back(s.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start));
        if (end == std::string_view::npos) break;
        start = end + 1;
    }
    return out;
}

double parse_number(const std::string& value, const std::string& key, std::string_view spec) {
    char* end = nullptr;
    const double v = std::strtod(value.c_str(), &end);
    if (value.empty() || *end != '\0' || !std::isfinite(v))
        throw ModelUsageError("--reg " + std::string(spec) + ": " + key + "=" + value + " is not a number");
    return v;
}

}  // namespace

Regularizer parse_regularizer(std::string_view spec) {
    Regularizer r;
    r.spec = std::string(spec);
    const auto colon = spec.find(':');
    const std::string name(spec.substr(0, colon));
    bool lambda_given = false;
    if (name == "decay") r.kind = RegularizerKind::Decay;
    else if (name == "double-well") r.kind = RegularizerKind::DoubleWell;
    else if (name == "three-peaks") r.kind = RegularizerKind::ThreePeaks;
    else if (name == "polarize") r.kind = RegularizerKind::Polarize;
    else if (name == "wasserstein") r.kind = RegularizerKind::Wasserstein;
    else throw ModelUsageError("--reg " + std::string(spec) + ": unknown regularizer '" + name +
                          "' (known: decay, double-well, three-peaks, polarize, wasserstein)");
    if (colon != std::string_view::npos) {
        for (const auto& item : split(spec.substr(colon + 1), ',')) {
            if (item.empty()) continue;
            const auto eq = item.find('=');
            const std::string key = item.substr(0, eq), value = eq == std::string::npos ? "" : item.substr(eq + 1);
            if (key == "lambda") r.lambda = parse_number(value, key, spec), lambda_given = true;
            else if (key == "coupled" && eq == std::string::npos) r.decoupled = false;
            else if (key == "decoupled" && eq == std::string::npos) r.decoupled = true;
            else if (key == "strength") r.strength = parse_number(value, key, spec);
            else if (key == "width") r.width = parse_number(value, key, spec);
            else if (key == "zeros") r.zero_mass = parse_number(value, key, spec);
            else if (key == "target") {
                if (value == "like") r.scale_source = LatticeScale::Reference;
                else if (value == "own") r.scale_source = LatticeScale::Own;
                else r.scale_source = LatticeScale::Fixed, r.scale = parse_number(value, key, spec);
            } else if (key == "layers") {
                std::string joined = value;
                std::replace(joined.begin(), joined.end(), '|', ',');
                try {
                    r.selection.layers = analysis::parse_layer_ranges(joined);
                } catch (const Error& e) {
                    throw ModelUsageError("--reg " + std::string(spec) + ": " + e.what());
                }
            } else if (key == "roles") {
                r.selection.roles = split(value, '|');
                try {
                    analysis::check_role_names(r.selection.roles);
                } catch (const Error& e) {
                    throw ModelUsageError("--reg " + std::string(spec) + ": " + e.what());
                }
            } else if (key == "match") {
                r.selection.match = split(value, '|');
            } else {
                throw ModelUsageError("--reg " + std::string(spec) + ": unknown key '" + key +
                                 "' (lambda, coupled, decoupled, strength, target, width, zeros, layers, roles, match)");
            }
        }
    }
    if (r.kind != RegularizerKind::Polarize && !lambda_given)
        throw ModelUsageError("--reg " + std::string(spec) + ": needs lambda=<weight>");
    if (r.lambda < 0 || r.strength < 0 || (r.scale_source == LatticeScale::Fixed && r.scale <= 0))
        throw ModelUsageError("--reg " + std::string(spec) + ": lambda and strength must be ≥ 0 and a fixed target > 0");
    if (r.zero_mass && (*r.zero_mass <= 0 || *r.zero_mass >= 1))
        throw ModelUsageError("--reg " + std::string(spec) + ": zeros must be in (0, 1)");
    return r;
}

ojson to_json(const Regularizer& r) {
    ojson j;
    j["spec"] = r.spec;
    j["kind"] = regularizer_name(r.kind);
    if (r.kind != RegularizerKind::Polarize) j["lambda"] = r.lambda;
    if (r.kind == RegularizerKind::Decay) j["decoupled"] = r.decoupled;
    if (r.kind == RegularizerKind::Polarize) j["strength"] = r.strength;
    if (r.kind != RegularizerKind::Decay) {
        j["target"] = r.scale_source == LatticeScale::Fixed ? ojson(r.scale) : ojson(r.scale_source == LatticeScale::Reference ? "like" : "own");
    }
    if (r.kind == RegularizerKind::Wasserstein) {
        j["width"] = r.width;
        if (r.zero_mass) j["zeros"] = *r.zero_mass;
    }
    j["tensors"] = r.tensors;
    if (!r.reference_scale.empty()) j["reference_scale"] = r.reference_scale;
    return j;
}

void resolve_regularizers(std::vector<Regularizer>& regs, const io::Checkpoint& input, const io::Checkpoint* like,
                          const std::function<double(double, double, double)>& unit_quantile) {
    // Reference scales: absmean per layer-role of the healthy checkpoint's ternary matrices.
    std::map<std::string, double> like_absmean;
    if (like) {
        for (const io::TensorEntry* t : like->state_dict_tensors()) {
            const auto place = analysis::place_of(t->name);
            if (!analysis::role_is_ternary_matrix(place.role) || !place.is_weight || !io::dtype_is_floating(t->dtype) || t->numel() == 0) continue;
            std::vector<double> v(static_cast<std::size_t>(t->numel()));
            like->data(*t).read(0, t->numel(), v.data());
            double s = 0;
            for (double x : v) s += std::abs(x);
            like_absmean[analysis::layer_role_label(place.layer, place.role)] = s / static_cast<double>(v.size());
        }
    }
    for (auto& r : regs) {
        r.tensors.clear();
        r.reference_scale.clear();
        for (const io::TensorEntry* t : input.state_dict_tensors()) {
            const auto place = analysis::place_of(t->name);
            const bool matrix = analysis::role_is_ternary_matrix(place.role) && place.is_weight && t->shape.size() == 2;
            const bool chosen = r.selection.is_default() ? matrix : analysis::explicit_selection_matches(r.selection, t->name).has_value();
            if (!chosen || t->shared_with) continue;
            r.tensors.push_back(t->name);
            if (r.scale_source == LatticeScale::Reference) {
                if (!like) throw ModelUsageError("--reg " + r.spec + ": target=like needs --like CKPT");
                const std::string label = analysis::layer_role_label(place.layer, place.role);
                auto it = like_absmean.find(label);
                if (it == like_absmean.end())
                    throw ModelError("--reg " + r.spec + ": " + like->path().string() + " has no " + label + " to take the scale from");
                r.reference_scale[t->name] = it->second;
            }
        }
        if (r.tensors.empty()) throw ModelUsageError("--reg " + r.spec + ": the selection matches no tensor of " + input.path().string());
        if (r.kind == RegularizerKind::Wasserstein) {
            const double p0 = r.zero_mass.value_or(analysis::healthy_gaussian_zero_fraction());
            const double width = r.width;
            r.unit_quantile = [unit_quantile, p0, width](double u) { return unit_quantile(p0, width, u); };
        }
    }
}

// ---- environment ----------------------------------------------------------------------------

namespace {

std::optional<int> env_int(const char* name) {
    const char* v = std::getenv(name);
    if (!v || !*v) return std::nullopt;
    char* end = nullptr;
    const long x = std::strtol(v, &end, 10);
    if (*end != '\0' || x < 0 || x > 1'000'000) throw ModelUsageError(std::string("environment variable ") + name + "=" + v + " is not a count");
    return static_cast<int>(x);
}

// "node[01-04],other" → "node01"; "a,b" → "a".
std::string first_slurm_host(std::string list) {
    const auto comma = list.find(',');
    const auto bracket = list.find('[');
    if (bracket != std::string::npos && (comma == std::string::npos || bracket < comma)) {
        const std::string base = list.substr(0, bracket);
        std::string inside = list.substr(bracket + 1, list.find(']', bracket) - bracket - 1);
        inside = inside.substr(0, inside.find_first_of(",-"));
        return base + inside;
    }
    return list.substr(0, comma);
}

}  // namespace

DistributedEnv distributed_env_from_environment() {
    DistributedEnv e;
    if (auto world = env_int("WORLD_SIZE")) {
        e.source = "torchrun";
        e.world_size = *world;
        e.rank = env_int("RANK").value_or(0);
        e.local_rank = env_int("LOCAL_RANK").value_or(e.rank);
        if (const char* a = std::getenv("MASTER_ADDR"); a && *a) e.master_addr = a;
        e.master_port = env_int("MASTER_PORT").value_or(29500);
    } else if (auto ntasks = env_int("SLURM_NTASKS")) {
        e.source = "slurm";
        e.world_size = *ntasks;
        e.rank = env_int("SLURM_PROCID").value_or(0);
        e.local_rank = env_int("SLURM_LOCALID").value_or(0);
        if (const char* a = std::getenv("MASTER_ADDR"); a && *a) e.master_addr = a;
        else if (const char* nodes = std::getenv("SLURM_STEP_NODELIST"); nodes && *nodes) e.master_addr = first_slurm_host(nodes);
        else if (const char* nodes2 = std::getenv("SLURM_JOB_NODELIST"); nodes2 && *nodes2) e.master_addr = first_slurm_host(nodes2);
        // A port derived from the job id, so that two jobs on one node do not collide.
        e.master_port = env_int("MASTER_PORT").value_or(20000 + env_int("SLURM_JOB_ID").value_or(0) % 20000);
    }
    if (e.world_size < 1 || e.rank >= e.world_size)
        throw ModelUsageError("distributed environment: rank " + std::to_string(e.rank) + " of world size " + std::to_string(e.world_size) +
                         " (from " + e.source + " variables)");
    if (e.master_port <= 0 || e.master_port > 65535) throw ModelUsageError("MASTER_PORT " + std::to_string(e.master_port) + " is not a port");
    return e;
}

// ---- the run --------------------------------------------------------------------------------

namespace {

std::uint64_t splitmix64(std::uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

// The window of global row g at step t is a pure function of (seed, t, g): resuming needs no RNG
// state, and R ranks drawing rows [r·b, (r+1)·b) see exactly what one process with batch R·b sees.
std::int64_t window_offset(std::uint64_t seed, std::int64_t step, std::int64_t row, std::int64_t n_offsets) {
    const std::uint64_t h = splitmix64(seed ^ splitmix64(static_cast<std::uint64_t>(step) * 0x100000001B3ull + static_cast<std::uint64_t>(row)));
    return static_cast<std::int64_t>(h % static_cast<std::uint64_t>(n_offsets));
}

struct Data {
    std::vector<std::int64_t> train, val;
    std::string val_source;
};

Data load_data(const FinetuneOptions& o, std::int64_t vocab) {
    Data d;
    d.train = read_token_file(o.tokens, o.token_dtype);
    if (!o.val_tokens.empty()) {
        d.val = read_token_file(o.val_tokens, o.token_dtype);
        d.val_source = o.val_tokens.string();
    } else {
        if (!(o.val_frac > 0 && o.val_frac < 1)) throw ModelUsageError("--val-frac must be in (0, 1)");
        const auto n_val = static_cast<std::size_t>(static_cast<double>(d.train.size()) * o.val_frac);
        d.val.assign(d.train.end() - static_cast<std::ptrdiff_t>(n_val), d.train.end());
        d.train.resize(d.train.size() - n_val);  // never trained on
        d.val_source = "the last " + std::to_string(n_val) + " tokens of " + o.tokens.string();
    }
    const auto need = static_cast<std::size_t>(o.seq_len + 1);
    if (d.train.size() < need)
        throw ModelUsageError(o.tokens.string() + ": " + std::to_string(d.train.size()) + " training tokens, fewer than one window of " +
                         std::to_string(need));
    if (d.val.size() < need) throw ModelUsageError(d.val_source + ": fewer validation tokens than one window of " + std::to_string(need));
    for (const auto* v : {&d.train, &d.val})
        for (auto id : *v)
            if (id < 0 || id >= vocab)
                throw ModelError((v == &d.train ? o.tokens.string() : d.val_source) + ": token id " + std::to_string(id) +
                                 " is outside the model's vocabulary of " + std::to_string(vocab));
    return d;
}

std::vector<std::int64_t> val_windows(const std::vector<std::int64_t>& val, std::int64_t seq_len, std::int64_t max_windows) {
    std::vector<std::int64_t> out;
    const auto n = static_cast<std::int64_t>(val.size());
    std::int64_t count = 0;
    for (std::int64_t o = 0; o + seq_len + 1 <= n; o += seq_len) {
        if (max_windows > 0 && count == max_windows) break;
        out.insert(out.end(), val.begin() + o, val.begin() + o + seq_len + 1);
        ++count;
    }
    return out;
}

fs::path sibling(const fs::path& output, const std::string& suffix) { return fs::path(output.string() + suffix); }

std::vector<NamedTensor> read_named(const io::Checkpoint& ck) {
    std::vector<NamedTensor> out;
    for (const io::TensorEntry* t : ck.state_dict_tensors()) {
        NamedTensor n;
        n.name = t->name;
        n.shape = t->shape;
        n.values.resize(static_cast<std::size_t>(t->numel()));
        if (t->numel()) ck.data(*t).read(0, t->numel(), n.values.data());
        out.push_back(std::move(n));
    }
    return out;
}

// fp32 values as the bytes they already are in memory: a view, not a copy. A save holds the
// parameters and the optimizer slots once each; encoded copies beside them doubled what a save of
// a 100M-parameter run kept resident. `n` must outlive the write.
static_assert(std::endian::native == std::endian::little, "checkpoints are little-endian; fp32 values are written as they lie in memory");
std::span<const std::byte> f32_bytes(const NamedTensor& n) { return std::as_bytes(std::span<const float>(n.values)); }

io::OutputTensor output_f32(const NamedTensor& n, bool parameter, const std::string& name = {}) {
    io::OutputTensor o;
    o.name = name.empty() ? n.name : name;
    o.dtype = io::DType::F32;
    o.shape = n.shape;
    o.view = f32_bytes(n);
    o.parameter = parameter;
    return o;
}

// OUT in the input's own layout and dtypes; only a packed input (no float latents to replace)
// becomes a plain fp32 state dict. Returns a note when the layout changed.
std::optional<std::string> write_model(const io::Checkpoint& input, const fs::path& output, const std::vector<NamedTensor>& params,
                                       bool drop_optimizer_state) {
    std::map<std::string, const NamedTensor*> by_name;
    for (const auto& p : params) by_name[p.name] = &p;
    bool packed = false;
    for (const io::TensorEntry* t : input.state_dict_tensors())
        if (by_name.count(t->name) && t->encoding != io::TensorEncoding::Plain) packed = true;
    const std::vector<fs::path> inputs = {input.path()};
    const bool torch = input.format() == io::Format::TorchZip || input.format() == io::Format::TorchLegacy;
    if (!packed && (torch || input.format() == io::Format::Safetensors)) {
        std::map<std::string, io::ReplacementTensor> replacements;
        for (const io::TensorEntry* t : input.state_dict_tensors()) {
            auto it = by_name.find(t->name);
            if (it == by_name.end() || t->shared_with) continue;
            io::ReplacementTensor rt;
            rt.dtype = t->dtype;
            rt.shape = t->shape;
            if (t->dtype == io::DType::F32) rt.view = f32_bytes(*it->second);
            else rt.data = io::encode_float_values(std::span<const float>(it->second->values), t->dtype, input.path().string() + ": " + t->name);
            replacements.emplace(t->name, std::move(rt));
        }
        io::ensure_not_an_input(output, inputs);
        if (torch) {
            io::RewriteOptions ro;
            ro.drop_optimizer_state = drop_optimizer_state;
            io::rewrite_checkpoint_pt(input, output, replacements, ro);
        } else {
            io::rewrite_safetensors(input, output, replacements, inputs);
        }
        return std::nullopt;
    }
    std::vector<io::OutputTensor> tensors;
    for (const auto& p : params) tensors.push_back(output_f32(p, true));
    io::PtWriteOptions wo;
    wo.inputs = inputs;
    io::write_state_dict_pt(output, tensors, wo);
    return packed ? std::optional<std::string>("the input stores packed ternary tensors; OUT is a plain fp32 state dict of the trained latents")
                  : std::optional<std::string>("the input's format (" + std::string(io::format_name(input.format())) +
                                               ") cannot be rewritten in place; OUT is a plain fp32 state dict");
}

std::string format_json_line(const ojson& j) { return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace); }

}  // namespace

FinetuneOptions options_for_resume(const fs::path& output) {
    const fs::path state_json = sibling(output, ".state.json");
    std::ifstream in(state_json);
    if (!in) throw io::FileError(state_json.string() + ": cannot open (is " + output.string() + " a fine-tuning output?)");
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(in);
    } catch (const nlohmann::json::exception& e) {
        throw ModelError(state_json.string() + ": not valid JSON (" + e.what() + ")");
    }
    if (!j.contains("options")) throw ModelError(state_json.string() + ": no 'options'");
    FinetuneOptions o;
    try {
        o = finetune_options_from_json(j["options"], state_json.string());
    } catch (const ModelUsageError& e) {
        throw ModelError(e.what());  // a damaged save is unreadable input, not a usage mistake
    }
    o.output = output;
    o.resume = true;
    return o;
}

namespace {

// Mean next-token loss of one checkpoint on the flattened windows, in batches of `batch` rows.
double checkpoint_val_loss(const fs::path& file, const FinetuneOptions& o, const std::vector<std::int64_t>& windows) {
    io::OpenOptions open;
    open.pickle.trusted_globals.insert(o.trusted_globals.begin(), o.trusted_globals.end());
    const Model model = Model::load(io::Checkpoint::open(file, open), o.load);
    const std::int64_t row = o.seq_len + 1, rows = static_cast<std::int64_t>(windows.size()) / row;
    double nll = 0;
    std::int64_t count = 0;
    for (std::int64_t first = 0; first < rows; first += o.batch) {
        const std::int64_t n = std::min(o.batch, rows - first);
        const LossSum l = model.next_token_loss(std::span(windows).subspan(static_cast<std::size_t>(first * row), static_cast<std::size_t>(n * row)), n, row);
        nll += l.nll_sum, count += l.count;
    }
    return nll / static_cast<double>(count);
}

// The run the input came from: the other checkpoints of its folder, never OUT or its own files.
std::vector<fs::path> run_members(const FinetuneOptions& o) {
    std::vector<fs::path> out;
    const fs::path folder = o.input.has_parent_path() ? o.input.parent_path() : fs::path(".");
    const std::string own = fs::absolute(o.output).lexically_normal().string();
    for (const auto& f : io::checkpoint_files_in(folder)) {
        const std::string abs = fs::absolute(f).lexically_normal().string();
        if (abs.rfind(own, 0) != 0) out.push_back(f);  // OUT, OUT.state.pt
    }
    return out;
}

}  // namespace

FinetuneResult run_finetune(FinetuneOptions o) {
    FinetuneResult result;
    result.output = o.output;
    result.metrics = sibling(o.output, ".metrics.jsonl");
    result.state = sibling(o.output, ".state.pt");
    const fs::path state_json = sibling(o.output, ".state.json");
    const bool rank0 = o.dist.rank == 0;
    require_device(o.load.device);

    io::OpenOptions open;
    open.pickle.trusted_globals.insert(o.trusted_globals.begin(), o.trusted_globals.end());
    io::Checkpoint input = io::Checkpoint::open(o.input, open);
    {
        const std::string ext = o.output.extension().string();
        const bool st = input.format() == io::Format::Safetensors;
        if ((st && ext != ".safetensors") || (!st && ext == ".safetensors"))
            throw ModelUsageError(o.output.string() + ": the output keeps the input's format (" + std::string(io::format_name(input.format())) +
                             "); name it " + (st ? "*.safetensors" : "*.pt"));
    }
    io::ensure_not_an_input(o.output, {o.input, o.tokens, o.val_tokens, o.teacher, o.like});
    if (rank0) io::ensure_writable_output(o.output);
    std::optional<io::Checkpoint> teacher;
    if (!o.teacher.empty()) teacher.emplace(io::Checkpoint::open(o.teacher, open));

    Trainer trainer(input, o, teacher ? &*teacher : nullptr);
    result.unpacked = trainer.unpacked();
    const Data data = load_data(o, trainer.config().vocab_size);
    const std::vector<std::int64_t> val = val_windows(data.val, o.seq_len, o.val_windows);
    const std::int64_t val_rows = static_cast<std::int64_t>(val.size()) / (o.seq_len + 1);
    const std::int64_t n_offsets = static_cast<std::int64_t>(data.train.size()) - o.seq_len;

    std::int64_t start = 0;
    std::vector<std::string> kept_metrics;
    // A save writes OUT.state.pt, then OUT, then OUT.state.json, each atomically. Killed between the
    // first and the last, the state file is one save ahead of the JSON and OUT may be either: the
    // state file holds the master weights too, so it alone is the resume point, and OUT and the
    // JSON are rewritten from it before training goes on.
    bool state_ahead = false;
    std::optional<double> val_at_start;
    if (o.resume) {
        nlohmann::json sj = nlohmann::json::parse(std::ifstream(state_json));
        start = sj.at("step").get<std::int64_t>();
        io::Checkpoint st = io::Checkpoint::open(result.state);
        std::vector<NamedTensor> slots, master;
        for (auto& n : read_named(st)) {
            if (n.name.rfind("master/", 0) == 0) n.name = n.name.substr(7), master.push_back(std::move(n));
            else slots.push_back(std::move(n));
        }
        for (const auto& s : slots) {
            if (s.name != "step") continue;
            const auto saved = static_cast<std::int64_t>(s.values.at(0));
            if (saved == start) continue;
            if (saved < start || master.empty())  // not what an interrupted save leaves: refuse
                throw ModelError(result.state.string() + ": holds step " + std::to_string(saved) + " but " + state_json.string() + " says " +
                                 std::to_string(start) + " (the last save was interrupted)");
            result.notes.push_back("the last save was interrupted after " + result.state.filename().string() + " (step " + std::to_string(saved) +
                                   "): resumed from it, " + o.output.filename().string() + " and " + state_json.filename().string() + " rewritten");
            start = saved;
            state_ahead = true;
        }
        if (master.empty()) {
            io::Checkpoint saved = io::Checkpoint::open(o.output, open);
            std::vector<NamedTensor> saved_params;
            std::set<std::string> names;
            for (const auto& p : trainer.parameters()) names.insert(p.name);
            for (auto& n : read_named(saved))
                if (names.count(n.name)) saved_params.push_back(std::move(n));
            trainer.load_parameters(saved_params);
        } else {
            trainer.load_parameters(master);
        }
        trainer.load_optimizer_state(slots);
        // Keep the metrics up to the save; lines after it describe steps that will be run again.
        std::ifstream mi(result.metrics);
        for (std::string line; std::getline(mi, line);) {
            if (line.empty()) continue;
            auto lj = nlohmann::json::parse(line, nullptr, false);
            if (lj.is_discarded() || !lj.contains("step") || !lj["step"].is_number_integer() || lj["step"].get<std::int64_t>() > start) continue;
            if (lj["step"].get<std::int64_t>() == start && lj.contains("val_loss") && lj["val_loss"].is_number()) val_at_start = lj["val_loss"].get<double>();
            kept_metrics.push_back(line);
        }
        if (sj.contains("val_loss_before") && sj["val_loss_before"].is_number()) result.val_loss_before = sj["val_loss_before"].get<double>();
    }
    if (start >= o.steps && !state_ahead) {
        result.steps_done = start;
        result.notes.push_back("the run had already reached step " + std::to_string(start));
        return result;
    }

    std::ofstream metrics;
    if (rank0) {
        // The metrics file is appended line by line (a live view for `tail -f` and the app); a resume
        // rewrites it up to the save first.
        metrics.open(result.metrics, std::ios::trunc);
        if (!metrics) throw io::OutputError(result.metrics.string(), "cannot write");
        for (const auto& l : kept_metrics) metrics << l << "\n";
        metrics.flush();
    }
    auto emit = [&](const ojson& line) {
        if (!rank0) return;
        metrics << format_json_line(line) << "\n";
        metrics.flush();
        if (o.on_metrics) o.on_metrics(line);
    };
    auto evaluate = [&]() {
        const LossSum l = trainer.evaluate(val, val_rows);
        return l.nll_sum / static_cast<double>(l.count);
    };

    std::optional<double> last_val = val_at_start;
    auto save = [&](std::int64_t step) {
        if (!rank0) return;
        const std::vector<NamedTensor> params = trainer.parameters();
        const std::vector<NamedTensor> slots = trainer.optimizer_state();  // viewed by `state` until written
        std::vector<io::OutputTensor> state;
        for (const auto& s : slots) state.push_back(output_f32(s, false));
        // Always the fp32 master weights: exact where OUT's dtypes would round them, and what makes
        // this file alone a resume point (see state_ahead above).
        for (const auto& p : params) state.push_back(output_f32(p, false, "master/" + p.name));
        io::PtWriteOptions wo;
        wo.inputs = {o.input};
        io::write_state_dict_pt(result.state, state, wo);
        if (auto note = write_model(input, o.output, params, o.drop_optimizer_state))
            if (std::find(result.notes.begin(), result.notes.end(), *note) == result.notes.end()) result.notes.push_back(*note);
        ojson sj = json_document(1);
        sj["command"] = "finetune";
        sj["step"] = step;
        sj["val_loss_before"] = result.val_loss_before ? ojson(*result.val_loss_before) : ojson(nullptr);
        sj["val_loss"] = last_val ? ojson(*last_val) : ojson(nullptr);
        sj["unpacked"] = result.unpacked;
        sj["options"] = to_json(o);
        io::write_file_atomically(state_json, sj.dump(2) + "\n");
    };

    if (rank0 && !o.resume) {
        result.val_loss_before = evaluate();
        last_val = result.val_loss_before;
        ojson line;
        line["step"] = 0;
        line["val_loss"] = *result.val_loss_before;
        line["roles"] = trainer.role_metrics();
        emit(line);
    }
    if (state_ahead && rank0) save(start);  // OUT and the JSON may still be the save before

    const std::int64_t local_rows = o.batch * o.grad_accum;
    const std::int64_t global_rows = local_rows * o.dist.world_size;
    std::vector<std::int64_t> windows(static_cast<std::size_t>(local_rows * (o.seq_len + 1)));
    double busy_seconds = 0;
    std::int64_t trained_tokens = 0;
    std::int64_t step = start;
    // The callback's false return is remembered, not thrown: training stops at a step boundary
    // and saves (see FinetuneOptions::progress).
    bool asked_to_stop = false;
    auto report = [&](std::int64_t done, const std::string& label) {
        if (!o.progress || asked_to_stop) return;
        if (!o.progress(Progress{static_cast<std::uint64_t>(done), static_cast<std::uint64_t>(o.steps), ProgressUnit::Steps, label}))
            asked_to_stop = true;
    };
    report(start, "");
    for (; step < o.steps; ++step) {
        // Under torchrun or srun the signal reaches the ranks at different moments: they agree
        // first, so that no rank is left waiting in an all-reduce the others never join.
        const bool stop_here = asked_to_stop;
        if (o.dist.active() ? trainer.any_rank(stop_here) : stop_here) {
            result.stopped_early = true;
            break;
        }
        for (std::int64_t r = 0; r < local_rows; ++r) {
            // Global rows of this rank: micro-batch m of rank k covers [(m·R + k)·b, (m·R + k + 1)·b), so that
            // the rows of one micro-batch across ranks are those of one larger batch.
            const std::int64_t m = r / o.batch, i = r % o.batch;
            const std::int64_t g = (m * o.dist.world_size + o.dist.rank) * o.batch + i;
            const std::int64_t off = window_offset(o.seed, step, g, n_offsets);
            std::copy(data.train.begin() + off, data.train.begin() + off + o.seq_len + 1, windows.begin() + r * (o.seq_len + 1));
        }
        const double factor = lr_factor(o.schedule, step, o.steps);
        const auto t0 = std::chrono::steady_clock::now();
        const StepReport rep = trainer.step(windows, local_rows, factor);
        const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        busy_seconds += dt;
        trained_tokens += global_rows * o.seq_len;
        const std::int64_t done = step + 1;
        const bool saving = (o.save_every > 0 && done % o.save_every == 0) || done == o.steps;
        ojson line;
        line["step"] = done;
        line["loss"] = rep.loss;
        if (teacher) line["kd"] = rep.kd;
        if (!o.regularizers.empty()) line["reg_loss"] = rep.reg_loss;
        line["lr"] = o.optimizer.lr * factor;
        line["lr_other"] = o.optimizer.lr_other * factor;
        line["grad_norm"] = rep.grad_norm;
        line["tokens_per_s"] = static_cast<double>(global_rows * o.seq_len) / dt;
        if (rank0 && (saving || (o.eval_every > 0 && done % o.eval_every == 0))) {
            last_val = evaluate();
            line["val_loss"] = *last_val;
        }
        line["roles"] = trainer.role_metrics();
        emit(line);
        char loss_label[48];
        std::snprintf(loss_label, sizeof loss_label, "loss %.4f", rep.loss);
        report(done, loss_label);
        if (saving) save(done);
    }
    result.steps_done = step;
    if (result.stopped_early && step > start) {
        last_val = rank0 ? std::optional<double>(evaluate()) : std::nullopt;
        save(step);
    }
    result.val_loss_after = last_val;
    if (o.compare_run && rank0 && step > start) {
        const auto members = run_members(o);
        if (members.size() >= 2) {
            result.result_val_loss = checkpoint_val_loss(o.output, o, val);
            for (std::size_t i = 0; i < members.size(); ++i) {
                // Progress in checkpoints; a stop here leaves the comparison out, the training is saved.
                if (o.progress && !o.progress(Progress{i, members.size(), ProgressUnit::Checkpoints, "the run's checkpoints on the same windows"})) {
                    result.run_checkpoints.clear();
                    result.result_val_loss.reset();
                    break;
                }
                // A broken member of a broken run is normal: it is left out with a note, the
                // training (saved already) and the other members stand.
                try {
                    result.run_checkpoints.push_back({members[i].string(), checkpoint_val_loss(members[i], o, val)});
                } catch (const Cancelled&) {
                    throw;
                } catch (const Error& e) {
                    result.notes.push_back("the run's " + members[i].filename().string() + " was left out of the comparison: " + e.what());
                }
            }
        }
    }
    result.tokens_per_second = busy_seconds > 0 ? static_cast<double>(trained_tokens) / busy_seconds : 0;
    if (!result.unpacked.empty())
        result.notes.push_back(std::to_string(result.unpacked.size()) + " tensors were stored packed; they trained from their decoded ternary values");
    return result;
}

nlohmann::ordered_json to_json(const FinetuneResult& r) {
    using ojson = nlohmann::ordered_json;
    ojson j = json_document(1);
    j["command"] = "finetune";
    j["output"] = r.output.string();
    j["metrics"] = r.metrics.string();
    j["state"] = r.state.string();
    j["steps_done"] = r.steps_done;
    j["stopped_early"] = r.stopped_early;
    j["val_loss_before"] = r.val_loss_before ? ojson(*r.val_loss_before) : ojson(nullptr);
    j["val_loss_after"] = r.val_loss_after ? ojson(*r.val_loss_after) : ojson(nullptr);
    j["tokens_per_second"] = r.tokens_per_second;
    j["unpacked"] = r.unpacked;
    j["notes"] = r.notes;
    if (r.result_val_loss) {
        ojson cmp;
        cmp["result"] = *r.result_val_loss;
        ojson list = ojson::array();
        for (const auto& c : r.run_checkpoints) list.push_back({{"file", c.file}, {"val_loss", c.val_loss}});
        cmp["checkpoints"] = list;
        if (const auto* best = best_in_run(r)) {
            cmp["latest"] = {{"file", r.run_checkpoints.back().file}, {"val_loss", r.run_checkpoints.back().val_loss}};
            cmp["best"] = {{"file", best->file}, {"val_loss", best->val_loss}};
            cmp["beats_best"] = *r.result_val_loss < best->val_loss;
        }
        j["run_comparison"] = cmp;
    }
    return j;
}

const RunCheckpointLoss* best_in_run(const FinetuneResult& r) {
    const RunCheckpointLoss* best = nullptr;
    for (const auto& c : r.run_checkpoints)
        if (!best || c.val_loss < best->val_loss) best = &c;
    return best;
}

}  // namespace bitfsck::model
