#pragma once
#include "bitfsck/io/mapped_file.hpp"

namespace bitfsck::io {

struct CheckpointBuilder;
struct OpenOptions;

// Reads a GGUF v2/v3 file's header, metadata, tensor infos and locates (and checks) every tensor.
void read_gguf(CheckpointBuilder& builder, const OpenOptions& options);

}  // namespace bitfsck::io
