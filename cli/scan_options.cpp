#include "scan_options.hpp"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <fstream>

#include <nlohmann/json.hpp>

#include "bitfsck/analysis/quantizer.hpp"
#include "bitfsck/analysis/thresholds.hpp"

namespace bitfsck::cli {

void add_scan_flags(CLI::App& sub, std::shared_ptr<ScanFlags> flags) {
    sub.add_option("--quantizer", flags->quantizer,
                   "Absmean quantizer convention for ternary codes: bitnet (gamma floored at 1e-5) or distillix (gamma + 1e-8)")
        ->check(CLI::IsMember({"bitnet", "distillix"}))
        ->capture_default_str();
    sub.add_option("--thresholds", flags->thresholds_file, "JSON file of threshold overrides, e.g. {\"collapsed_std\": 5e-4}")
        ->check(CLI::ExistingFile);
    sub.add_option("--threshold", flags->threshold_overrides,
                   "Override one threshold, key=value (repeatable; after --thresholds), e.g. --threshold degraded_zero_frac=0.6");
    sub.add_option("-j,--threads", flags->threads, "Worker threads (0: every core)")->capture_default_str();
    add_i2s_layout_flag(sub, flags->i2s_layout);
}

void add_selection_flags(CLI::App& sub, SelectionFlags& flags, const std::string& what) {
    sub.add_option("--layers", flags.layers, what + " only these layers, e.g. 0,2-5");
    sub.add_option("--roles", flags.roles, what + " only these roles: mlp, attn, or names like mlp_up, attn_q (comma-separated)")
        ->delimiter(',');
    sub.add_option("--match", flags.match, what + " only tensors whose name matches this glob (repeatable), e.g. 'layers.*.mlp.*'");
}

analysis::TensorSelection make_selection(const SelectionFlags& flags) {
    analysis::TensorSelection s;
    try {
        if (!flags.layers.empty()) s.layers = analysis::parse_layer_ranges(flags.layers);
        analysis::check_role_names(flags.roles);
    } catch (const Error& e) {
        throw CLI::ValidationError(flags.layers.empty() ? "--roles" : "--layers", e.what());
    }
    s.roles = flags.roles;
    s.match = flags.match;
    return s;
}

void add_i2s_layout_flag(CLI::App& sub, std::string& layout) {
    sub.add_option("--i2s-layout", layout,
                   "Byte layout of bitnet.cpp I2_S tensors, which GGUF files do not record: act-parallel (x86 default, every "
                   "Python writer), interleaved (x86 without ACT_PARALLEL), arm (ARM builds since 2025-11)")
        ->check(CLI::IsMember({"act-parallel", "interleaved", "arm"}))
        ->capture_default_str();
}

io::OpenOptions open_options(const std::string& i2s_layout) {
    io::OpenOptions o;
    o.i2s_layout = io::parse_i2s_layout(i2s_layout).value_or(io::I2sLayout::ActParallel);
    return o;
}

namespace {

// "1e-3" -> 0.001 as a JSON number; integers stay integers so count thresholds accept them.
nlohmann::json parse_value(const std::string& key, const std::string& text) {
    if (text.empty()) throw CLI::ValidationError("--threshold", key + ": missing value");
    errno = 0;
    char* end = nullptr;
    long long as_int = std::strtoll(text.c_str(), &end, 10);
    if (errno == 0 && end && *end == '\0') return as_int;
    errno = 0;
    double as_double = std::strtod(text.c_str(), &end);
    if (errno != 0 || !end || *end != '\0' || !std::isfinite(as_double))
        throw CLI::ValidationError("--threshold", key + "=" + text + ": not a number");
    return as_double;
}

}  // namespace

analysis::ScanOptions make_scan_options(const ScanFlags& flags) {
    analysis::ScanOptions options;
    auto q = analysis::quantizer_from_name(flags.quantizer);
    if (!q) throw CLI::ValidationError("--quantizer", "unknown quantizer '" + flags.quantizer + "' (bitnet or distillix)");
    options.analysis.quantizer = *q;
    options.threads = flags.threads;

    analysis::Thresholds t;
    if (!flags.thresholds_file.empty()) {
        std::ifstream in(flags.thresholds_file);
        if (!in) throw CLI::ValidationError("--thresholds", flags.thresholds_file + ": cannot open");
        try {
            t = analysis::thresholds_from_json(nlohmann::json::parse(in), t);
        } catch (const nlohmann::json::exception& e) {
            throw CLI::ValidationError("--thresholds", flags.thresholds_file + ": not valid JSON (" + e.what() + ")");
        } catch (const Error& e) {
            throw CLI::ValidationError("--thresholds", flags.thresholds_file + ": " + e.what());
        }
    }
    if (!flags.threshold_overrides.empty()) {
        nlohmann::json overrides = nlohmann::json::object();
        for (const auto& kv : flags.threshold_overrides) {
            auto eq = kv.find('=');
            if (eq == std::string::npos || eq == 0)
                throw CLI::ValidationError("--threshold", "'" + kv + "' is not key=value");
            std::string key = kv.substr(0, eq);
            overrides[key] = parse_value(key, kv.substr(eq + 1));
        }
        try {
            t = analysis::thresholds_from_json(overrides, t);
        } catch (const Error& e) {
            throw CLI::ValidationError("--threshold", e.what());
        }
    }
    options.thresholds = t;
    return options;
}

analysis::RunScanOptions make_run_scan_options(const ScanFlags& flags, const SelectionFlags& selection) {
    analysis::RunScanOptions options;
    options.scan = make_scan_options(flags);
    options.scan.selection = make_selection(selection);
    options.open = open_options(flags.i2s_layout);
    return options;
}

}  // namespace bitfsck::cli
