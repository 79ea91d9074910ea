#pragma once
// The repair view's logic without a window: the step and parameters the user picks, the options
// they make for bitfsck_repair, which tensor the preview shows by default, and where a repair's
// output goes. The repair itself and every figure are bitfsck_repair's (repair_checkpoint,
// preview_repair); this only sets them up and reads them.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include "bitfsck/io/error.hpp"  // first: analysis headers use bitfsck::Error
#include "bitfsck/analysis/report.hpp"
#include "bitfsck/repair/repair.hpp"

namespace bitfsck::app {

// The steps the view offers (pick works on a run folder, not on one checkpoint).
inline constexpr repair::StepKind kRepairSteps[] = {repair::StepKind::Svd, repair::StepKind::Align, repair::StepKind::Inflate};

// A step as the user sets it up: the main parameters of each step (repair::SvdParams,
// AlignParams, InflateParams); the others keep the library's defaults.
struct RepairParams {
    repair::StepKind step = repair::StepKind::Inflate;
    // svd
    repair::RankRule rule = repair::RankRule::GavishDonoho;
    std::int64_t rank = 8;       // RankRule::Fixed
    double energy = 0.9;         // RankRule::Energy
    // align
    double strength = 1.0;
    double width = 0.1;
    // inflate
    double zeros = 0.3;
    double tau = 0.5;
    // align and inflate: a healthy checkpoint of the same model (empty: none)
    std::string like;
    bool operator==(const RepairParams&) const = default;
};

// "inflate zeros 0.3 tau 0.5": the step and its parameters, for labels and the log.
std::string repair_params_label(const RepairParams& p);
// What a step does and what its parameters mean, from docs/repair.md (tooltips).
std::string explain_repair_step(repair::StepKind k);

// The library's options for these parameters, with the scan's quantizer and thresholds. A
// non-empty `only_tensor` restricts the selection to that tensor (--match NAME); empty keeps the
// library's default selection (the ternary matrices of every degraded or collapsed layer-role).
repair::RepairOptions repair_options(const RepairParams& p, const analysis::ScanReport& scan, const std::string& only_tensor = {});

// The tensor the preview shows first: `selected` when the scan has it as a matrix (two or more
// dimensions), else the first matrix of a collapsed layer-role, else of a degraded one, else the
// first matrix; nullopt when the scan has no matrix.
std::optional<std::string> default_repair_tensor(const analysis::ScanReport& scan, const std::optional<std::string>& selected);

// Whether files can be created in `folder` (it exists, is a folder, and is writable).
bool folder_writable(const std::filesystem::path& folder);
// Where a repair of `input` by `step` is written: "<stem>.<step>.pt" (".safetensors" for a
// safetensors input, whose output keeps the format) in the input's folder when `writable`, else
// in `fallback` (the system temp folder); "<stem>.<step>.2.pt", ... when the name is taken. Never
// the input itself.
std::filesystem::path repair_output_path(const std::filesystem::path& input, repair::StepKind step, bool writable,
                                         const std::filesystem::path& fallback);
// The same, deciding `writable` from the input's folder and taking the system temp folder.
std::filesystem::path repair_output_path(const std::filesystem::path& input, repair::StepKind step);

// "collapsed -> healthy": a repair log's verdict before and after.
std::string verdict_change(const repair::RepairLog& log);

}  // namespace bitfsck::app
