#include "bitfsck/analysis/scan_tensors.hpp"

#include <algorithm>
#include <numeric>

#include "bitfsck/io/parallel.hpp"

namespace bitfsck::analysis {

ScanReport scan_tensors(const std::vector<NamedTensor>& tensors, const ScanOptions& options, const MemoryScanInfo& info) {
    ScanReport report;
    report.file = info.label;
    report.format = std::string(kMemoryFormat);
    report.step = info.step;
    report.quantizer = options.analysis.quantizer;
    report.thresholds = options.thresholds;

    // The same choice of tensors as scan_checkpoint: floating point only, the selection if any.
    std::vector<const NamedTensor*> entries;
    for (const NamedTensor& t : tensors) {
        report.file_size += static_cast<std::uint64_t>(t.data.numel()) * io::dtype_size(t.data.dtype());
        if (!options.selection.is_default() && !explicit_selection_matches(options.selection, t.name)) continue;
        if (io::dtype_is_floating(t.data.dtype())) entries.push_back(&t);
    }
    auto bytes_of = [](const NamedTensor& t) { return static_cast<std::uint64_t>(t.data.numel()) * io::dtype_size(t.data.dtype()); };

    // Biggest first, as scan_checkpoint orders its work, so no core waits on one embedding at the end.
    std::uint64_t total = 0;
    for (const auto* e : entries) total += bytes_of(*e);
    std::vector<std::size_t> order(entries.size());
    std::iota(order.begin(), order.end(), std::size_t{0});
    std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return bytes_of(*entries[a]) > bytes_of(*entries[b]); });

    ProgressTracker progress(options.progress, ProgressUnit::Bytes, total);
    report.tensors.resize(entries.size());
    parallel_for(order.size(), options.threads, [&](std::size_t k) {
        progress.check();
        const NamedTensor& t = *entries[order[k]];
        report.tensors[order[k]] = analyze_tensor(t.name, t.data, options.analysis);
        progress.advance(bytes_of(t), t.name);
    });
    judge(report);
    return report;
}

}  // namespace bitfsck::analysis
