#pragma once
// Layers and roles of tensors, from their names. The table lives in io/ (tensor_names.hpp) so
// that the readers, writers and converters below analysis/ use the same rules; analysis/ names
// it here for the code that groups and judges by layer and role.
#include "bitfsck/io/tensor_names.hpp"

namespace bitfsck::analysis {

using io::NameLayout;
using io::Role;
using io::TensorPlace;
using io::name_layout_name;
using io::place_of;
using io::role_is_attention;
using io::role_is_mlp;
using io::role_is_ternary_matrix;
using io::role_name;

}  // namespace bitfsck::analysis
