#pragma once
// Outputs are written to a temporary name beside the target and renamed when complete, so a
// crash or Ctrl-C never leaves a half-written file under the final name, and an input is never
// overwritten in place.
#include <filesystem>
#include <functional>
#include <string_view>
#include <vector>

namespace bitfsck::io {

// A sibling temporary path "<target>.tmp-<pid>-<n>" for writers that need a file name (HDF5).
std::filesystem::path temporary_sibling(const std::filesystem::path& target);

// Writes `bytes` to `target` atomically (temporary file, fsync, rename). Throws FileError.
void write_file_atomically(const std::filesystem::path& target, std::string_view bytes);

// Calls write(tmp_path) and renames tmp_path onto target when it returns; removes the
// temporary file when it throws.
void replace_atomically(const std::filesystem::path& target, const std::function<void(const std::filesystem::path&)>& write);

// The same for a folder of outputs (a sharded checkpoint): write(tmp_dir) fills a fresh sibling
// folder, which then takes `target`'s name. `target` must not exist or be an empty folder
// (FileError before anything is written otherwise); the temporary folder is removed on failure.
void replace_folder_atomically(const std::filesystem::path& target, const std::function<void(const std::filesystem::path&)>& write);

// Refuses (OutputError) when `output` is the same file as any of `inputs`.
void ensure_not_an_input(const std::filesystem::path& output, const std::vector<std::filesystem::path>& inputs);

// Checked before long work starts, so that an hour of training never ends in "cannot write":
// `output` must not be a folder, and its folder must exist and be writable (a probe file is made
// there and removed). Throws OutputError naming `output`.
void ensure_writable_output(const std::filesystem::path& output);

}  // namespace bitfsck::io
