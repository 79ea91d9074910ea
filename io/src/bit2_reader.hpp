#pragma once
#include <string>

#include "bitfsck/io/mapped_file.hpp"

namespace bitfsck::io {

struct CheckpointBuilder;

// The .bit2 magic (docs/bit2-format.md).
bool looks_like_bit2(const MappedFile& file);
void read_bit2(CheckpointBuilder& builder);
// One line about a file named .bit2 that is not ours: size, byte entropy, a readable header.
std::string describe_foreign_bit2(const MappedFile& file);

}  // namespace bitfsck::io
