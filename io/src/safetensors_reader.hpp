#pragma once
#include <string>

#include "bitfsck/io/mapped_file.hpp"

namespace bitfsck::io {

struct CheckpointBuilder;

// An 8-byte little-endian header length followed by a JSON object.
bool looks_like_safetensors(const MappedFile& file);
// Why a file that claims to be safetensors (by its name) is not one: its header length or its
// first header byte. For the message when no format recognised the content.
std::string describe_broken_safetensors(const MappedFile& file);
// Reads the header (bounded), checks every tensor's offsets against its dtype and shape.
void read_safetensors(CheckpointBuilder& builder);

}  // namespace bitfsck::io
