#pragma once
// A pickle interpreter that builds a tree of values and never imports or calls anything.
// Globals on a small allow-list (what torch.save itself writes, plus the plain containers
// and value types that training checkpoints carry) are given their meaning; every other
// global becomes an opaque object, and is reported as a security finding with its offset.
#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "bitfsck/io/dtype.hpp"

namespace bitfsck::io {

enum class ValueKind : std::uint8_t {
    None, Bool, Int, BigInt, Float, String, Bytes,
    Tuple, List, Dict, Set,
    Global,   // a reference to module.name that was not called (e.g. a class passed as an argument)
    Object,   // an instance of a class bitfsck does not model: module.name, args, state, items
    Storage,  // a persistent-id storage reference: key, dtype, location, element count
    Tensor,   // torch._utils._rebuild_tensor_v2 and friends
};

struct Value {
    ValueKind kind = ValueKind::None;
    std::uint64_t offset = 0;  // byte offset in the pickle of the opcode that made this value

    bool boolean = false;
    std::int64_t integer = 0;   // Int; Storage: element count (-1 when unknown)
    std::int64_t record_numel = -1;  // Storage: elements declared for its record (a legacy view's root)
    double real = 0.0;          // Float
    std::string text;           // String, Bytes (raw), BigInt (decimal), Storage: key

    std::vector<Value*> items;                         // Tuple, List, Set; Object: appended items
    std::vector<std::pair<Value*, Value*>> entries;    // Dict (in order); Object: set items

    // Global, Object: the class or callable. Storage: "torch" + storage class; location in `location`.
    std::string module;
    std::string name;
    Value* args = nullptr;    // Object: constructor arguments (a Tuple), if any
    Value* state = nullptr;   // Object: BUILD state, if any

    // Storage and Tensor
    DType dtype = DType::F32;
    std::string location;                 // Storage: "cpu", "cuda:0", ...
    Value* storage = nullptr;             // Tensor: its Storage value
    std::int64_t storage_offset = 0;      // Tensor: in elements
    std::vector<std::int64_t> shape;      // Tensor
    std::vector<std::int64_t> stride;     // Tensor
    bool requires_grad = false;           // Tensor
    bool is_parameter = false;            // Tensor: came through torch._utils._rebuild_parameter

    std::string_view kind_name() const;
    std::string qualified_name() const { return module.empty() ? name : module + "." + name; }
    // Dict lookup by string key; nullptr when absent or not a Dict.
    const Value* get(std::string_view key) const;
};

enum class Severity : std::uint8_t {
    Critical,  // a callable known to run code or touch the system (os.system, builtins.eval, ...)
    Warning,   // any other import outside the allow-list: torch.load would import and run it
};

struct SecurityFinding {
    std::uint64_t offset = 0;   // byte offset in the pickle
    std::string global;         // "module.name"
    Severity severity = Severity::Warning;
    bool called = false;        // the pickle calls it (REDUCE/NEWOBJ/INST/OBJ), not only references it
    std::string reason;         // one line for the user
};

struct PickleLimits {
    std::size_t max_values = 50'000'000;      // values created
    std::size_t max_stack = 1'000'000;        // VM stack entries
    std::size_t max_depth = 1000;             // nesting of containers
    std::uint64_t max_bytes = 1ull << 31;     // total string/bytes payload
};

struct PickleOptions {
    PickleLimits limits;
    // Extra "module.name" globals the user trusts (e.g. their own config dataclass); these are
    // still kept as opaque objects, but are not reported.
    std::set<std::string> trusted_globals;
    std::string source_name;  // file name for error messages (e.g. "ckpt.pt:archive/data.pkl")
};

// Owns every value of one pickle. Values point into the arena, so a pickle's memo can share
// and even cycle without leaks; traversals must carry a depth limit.
class PickleDocument {
public:
    PickleDocument() = default;
    PickleDocument(PickleDocument&&) = default;
    PickleDocument& operator=(PickleDocument&&) = default;
    PickleDocument(const PickleDocument&) = delete;
    PickleDocument& operator=(const PickleDocument&) = delete;

    Value* root = nullptr;
    int protocol = 0;
    std::vector<SecurityFinding> findings;
    std::uint64_t end_offset = 0;  // offset just past the STOP opcode

    Value* make(ValueKind k, std::uint64_t offset);
    std::size_t size() const { return arena_.size(); }

private:
    std::deque<Value> arena_;
};

// Parses one pickle starting at data[0] and ending at its STOP opcode. Throws FormatError
// (naming options.source_name) for malformed or truncated input or exceeded limits.
PickleDocument parse_pickle(std::span<const std::byte> data, const PickleOptions& options = {});

// The bytes after a pickle's STOP where the format needs none (the rest of a zip's data.pkl record,
// or of a legacy file after its last storage). torch.load stops at STOP, but a loader that reads on
// (pickle.load in a loop, another tool) would run them as further pickles: they are parsed here,
// never run, and every global they name becomes a finding in `doc`. `data` starts where doc's
// pickle starts and `from` is the first unread byte, so offsets stay positions in the same data.
// `what` names the place ("ckpt.pt:archive/data.pkl after its STOP"). Returns one line saying what
// the bytes are (for the checkpoint's notes), or "" when there are none.
std::string check_bytes_after_stop(PickleDocument& doc, std::span<const std::byte> data, std::uint64_t from,
                                   const PickleOptions& options, std::string_view what);

// Adds another pickle's findings to doc, each reason starting with where that pickle is ("the
// legacy format's system-info pickle at file offset 120"): torch.load unpickles all of a legacy
// file's pickles, so a global in any of them is the file's finding.
void adopt_findings(PickleDocument& doc, const PickleDocument& other, std::string_view where);

// Whether module.name is on the allow-list (what PyTorch itself writes in a checkpoint).
bool is_allowed_global(std::string_view module, std::string_view name);

}  // namespace bitfsck::io
