// bitfsck inspect FILE...: the object tree, the tensor table and the security findings.
#include <cstdio>
#include <iostream>
#include <memory>
#include <sstream>

#include "bitfsck/io/checkpoint.hpp"
#include "bitfsck/io/error.hpp"
#include "bitfsck/io/object_tree.hpp"
#include "bitfsck/io/packed.hpp"
#include "bitfsck/io/text.hpp"
#include "scan_options.hpp"
#include "subcommands.hpp"
#include "table.hpp"
#include "terminal.hpp"

namespace bitfsck::cli {
namespace {

struct InspectFlags {
    std::vector<std::string> files;
    bool json = false;
    std::vector<std::string> trusted;
    int depth = 4;
    std::size_t max_children = 8;
    bool all_tensors = false;
    std::string i2s_layout = "act-parallel";
    SelectionFlags selection;
};

void print_findings(const io::Checkpoint& c) {
    if (c.findings().empty()) return;
    std::cout << red("SECURITY: " + std::to_string(c.findings().size()) +
                     " global(s) outside the allow-list: torch.load would import or run them") << "\n";
    for (const auto& f : c.findings()) {
        std::string sev = io::severity_name(f.severity);
        std::cout << "  " << (f.severity == io::Severity::Critical ? red(sev) : yellow(sev)) << "  " << f.reason << "\n";
    }
    std::cout << "\n";
}

void print_tensors(const io::Checkpoint& c, bool all, const analysis::TensorSelection& selection) {
    Table table({"name", "dtype", "shape", "bytes", "location", "shared with"});
    std::uint64_t params = 0, bytes = 0;
    std::size_t shown = 0, others = 0, unselected = 0;
    for (const auto& t : c.tensors()) {
        if (!selection.is_default() && !analysis::explicit_selection_matches(selection, t.in_state_dict ? t.name : t.path)) {
            ++unselected;
            continue;
        }
        if (t.in_state_dict) {
            params += static_cast<std::uint64_t>(t.numel());
            bytes += t.stored_nbytes();
        } else if (!all) {
            ++others;
            continue;
        }
        const bool packed = t.encoding != io::TensorEncoding::Plain;
        std::uint64_t offset = packed ? t.packed.offset
                                      : t.storage_file_offset + static_cast<std::uint64_t>(t.storage_offset) * io::dtype_size(t.dtype);
        std::string where = (t.record.empty() ? std::string("@") : t.record + " @") + std::to_string(offset);
        if (c.sharded()) where = c.shards()[t.shard].path.filename().string() + " " + where;
        // Packed tensors: the encoding instead of the float view's dtype, and the stored bytes.
        std::string type = packed ? std::string(io::encoding_name(t.encoding)) : std::string(io::dtype_name(t.dtype));
        table.add({t.in_state_dict ? t.name : t.path, type, shape_text(t.shape), human_bytes(t.stored_nbytes()), where,
                   t.shared_with.value_or("")});
        ++shown;
    }
    if (c.state_dict_path())
        std::cout << "state dict: " << (c.state_dict_path()->empty() ? std::string("(the file itself)") : *c.state_dict_path())
                  << ", " << c.state_dict_tensors().size() << " tensors, " << params << " elements, " << human_bytes(bytes) << "\n";
    else
        std::cout << "state dict: none found\n";
    if (shown) std::cout << table.render();
    for (const auto& t : c.tensors())
        if (t.encoding != io::TensorEncoding::Plain && t.packed.parts.size() > 1) {
            std::cout << "  " << t.name << " is packed from:";
            for (const auto& p : t.packed.parts) std::cout << " " << p;
            std::cout << "\n";
        }
    for (const auto& n : c.notes()) std::cout << "note: " << n << "\n";
    if (others) std::cout << "(" << others << " more tensors outside the state dict, e.g. optimizer state: --all-tensors lists them)\n";
    if (unselected) std::cout << "(" << unselected << " tensors not selected by --layers/--roles/--match)\n";
}

void inspect_one(const std::string& path, const InspectFlags& flags, nlohmann::ordered_json* json_out) {
    io::OpenOptions options = open_options(flags.i2s_layout);
    options.pickle.trusted_globals.insert(flags.trusted.begin(), flags.trusted.end());
    io::Checkpoint c = io::Checkpoint::open(path, options);
    io::TreeLimits limits;
    limits.max_depth = flags.depth;
    limits.max_children = flags.max_children;
    if (!c.findings().empty()) set_exit_code(kSecurity);
    if (json_out) {
        json_out->push_back(io::inspect_json(c, limits));
        return;
    }
    std::cout << bold(path) << "  (" << io::format_name(c.format());
    if (c.format() == io::Format::TorchZip || c.format() == io::Format::TorchLegacy)
        std::cout << ", pickle protocol " << c.pickle_protocol();
    if (c.sharded()) std::cout << ", " << c.shards().size() << " shards";
    std::cout << ", " << human_bytes(c.total_size()) << ")\n\n";
    for (const auto& w : c.warnings()) std::cout << yellow("warning") << ": " << w << "\n";
    if (!c.warnings().empty()) std::cout << "\n";
    print_findings(c);
    std::cout << io::render_tree(io::object_tree(c, limits)) << "\n";
    print_tensors(c, flags.all_tensors, make_selection(flags.selection));
}

}  // namespace

void add_inspect_subcommand(CLI::App& app) {
    auto flags = std::make_shared<InspectFlags>();
    auto* sub = app.add_subcommand("inspect", "Show a checkpoint's object tree, tensors and security findings (never runs the pickle)");
    sub->add_option("files", flags->files,
                    "Checkpoint files (.pt, .pth, .bin, .safetensors, .gguf, .bit2), a sharded checkpoint's index.json or its folder")->required();
    sub->add_flag("--json", flags->json, "Print JSON (an array, one object per file) instead of text");
    sub->add_option("--trust", flags->trusted, "A module.Class you trust (e.g. your config dataclass): not reported as a finding");
    sub->add_option("--depth", flags->depth, "Levels of the object tree to show")->capture_default_str();
    sub->add_option("--max-children", flags->max_children, "Entries shown per container")->capture_default_str();
    sub->add_flag("--all-tensors", flags->all_tensors, "Also list tensors outside the state dict (optimizer state, ...)");
    add_i2s_layout_flag(*sub, flags->i2s_layout);
    add_selection_flags(*sub, flags->selection, "List");
    sub->footer(
        "Example:\n  bitfsck inspect run/step_000400.pt\n  bitfsck inspect --json model.safetensors | jq '.[0].tensors[].name'\n"
        "Exit codes: 0 readable and clean, 2 unreadable, 3 security findings (a global outside the allow-list).");
    sub->callback([flags] {
        nlohmann::ordered_json all = nlohmann::ordered_json::array();
        bool first = true;
        for (const auto& f : flags->files) {
            if (!flags->json && !first) std::cout << "\n";
            first = false;
            try {
                inspect_one(f, *flags, flags->json ? &all : nullptr);
            } catch (const Error& e) {
                print_error(e.what());
                set_exit_code(kUnreadable);
            }
        }
        if (flags->json) std::cout << all.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace) << "\n";
    });
}

}  // namespace bitfsck::cli
