#pragma once
// Scan reports and timelines as one HDF5 file, for notebooks and plotting tools (h5py, HDFView).
// Layout (every name below is a group or dataset under the root):
//   /                      attrs schema_version, tool, tool_version
//   /<checkpoint stem>/    attrs file, file_size, content_hash, format, state_dict_path, step,
//                          quantizer, verdict, thresholds (JSON text) and threshold.<key> each
//       tensors/           parallel 1-D datasets, one row per tensor: name (dimension scale),
//                          dtype, count, mean, std, min, max, absmean, zero_frac, neg, zero, pos,
//                          nan_count, inf_count, dead_rows, rows, verdict
//       layers/            one row per layer-role: label (scale), layer (-1: none), role, count,
//                          std, absmean, zero_frac, neg, zero, pos, dead_rows, rows, verdict
//       findings/          severity, rule, subject, message
//       security/          global, severity, offset, called, reason
//       histograms/        <kind>_counts [tensors x bins] for kind values and log_magnitude, with
//                          dimension scales tensor, <kind>_lo, <kind>_hi (dim 0) and
//                          <kind>_bin_lower (dim 1; attr units says whether the edges are values
//                          shared by every row or fractions of each row's [lo, hi])
//   /timeline/             attrs quantizer, final_verdict, onset_step, onset_file, collapsed_step,
//                          last_healthy_step, last_healthy_file, last_before_collapse_step,
//                          last_before_collapse_file (when known); datasets step
//                          (scale), file, verdict, scan_verdict, label (scale: layer-roles), and
//                          [steps x layer-roles] std, absmean, zero, zero_frac, dead_rows,
//                          verdict_code (0 healthy, 1 degraded, 2 collapsed, -1 absent; NaN for
//                          absent figures); onsets/ label, step, verdict
#include <cstdint>
#include <filesystem>
#include <set>
#include <string>

#include "bitfsck/io/error.hpp"
#include "bitfsck/analysis/report.hpp"

namespace bitfsck::analysis {

struct Timeline;

// The report could not be written (an output error: exit code 2), naming the report's file.
class H5ReportError : public Error {
public:
    explicit H5ReportError(const std::string& message, std::string file = {}) : Error(message, ErrorKind::Output, std::move(file)) {}
};

// The file is built in memory (HDF5's core driver) and written by close() as every output is,
// to a temporary name renamed when complete: a crash, a full disk or an exception never leaves a
// half-written report under the final name, and HDF5 never meets a failing disk itself (its
// error paths there can crash). Destroying an unclosed H5Report writes nothing.
class H5Report {
public:
    explicit H5Report(std::filesystem::path path, std::string tool_version = {});
    ~H5Report();
    H5Report(H5Report&& other) noexcept;
    H5Report& operator=(H5Report&& other) noexcept;
    H5Report(const H5Report&) = delete;
    H5Report& operator=(const H5Report&) = delete;

    // One group per checkpoint, named by the file stem ("step_000400"), with "_2", "_3"...
    // appended when taken. Returns the group name.
    std::string add_scan(const ScanReport& report);
    // Returns the group name ("timeline", made unique the same way).
    std::string add_timeline(const Timeline& timeline);

    // Writes the report to path() (atomically) and closes it. Throws H5ReportError naming the file.
    void close();
    bool is_open() const { return file_ >= 0; }
    const std::filesystem::path& path() const { return path_; }

private:
    std::string unique_name(std::string base);
    void abandon() noexcept;

    std::filesystem::path path_;
    std::int64_t file_ = -1;  // hid_t (int64_t since HDF5 1.10), kept out of this header
    std::set<std::string> names_;
};

}  // namespace bitfsck::analysis
