#pragma once
#include "bitfsck/io/mapped_file.hpp"

namespace bitfsck::io {

struct CheckpointBuilder;

// An 8-byte little-endian header length followed by a JSON object.
bool looks_like_safetensors(const MappedFile& file);
// Reads the header (bounded), checks every tensor's offsets against its dtype and shape.
void read_safetensors(CheckpointBuilder& builder);

}  // namespace bitfsck::io
