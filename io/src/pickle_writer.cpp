// Writing pickles for torch.load: the protocol-2 opcodes CPython's pickler uses for the same
// values (so the output looks like what torch.save writes), and a re-emitter that copies an op
// tree parsed from an existing pickle into a fresh one. The re-emitter keeps every global, call
// and BUILD exactly as written instead of going through the interpreted Value tree, because that
// tree folds OrderedDict into dict, numpy scalars into numbers and torch.device into strings.
#include "bitfsck/io/pickle_writer.hpp"
#include "pickle_opcodes.hpp"

#include <bit>
#include <cstring>
#include <deque>
#include <unordered_map>

#include "bitfsck/io/error.hpp"

namespace bitfsck::io {

namespace {

using namespace pickle_op;

// CPython batches APPENDS/SETITEMS by this many items; doing the same keeps the unpickler's
// stack small for huge containers.
constexpr std::size_t kBatch = 1000;

void put_le(std::string& out, std::uint64_t v, int bytes) {
    for (int i = 0; i < bytes; ++i) out += static_cast<char>((v >> (8 * i)) & 0xFF);
}

// Latin-1 bytes as UTF-8 text: how protocol 2 carries bytes (as a str that _codecs.encode
// turns back into the same bytes).
std::string latin1_to_utf8(std::string_view raw) {
    std::string out;
    out.reserve(raw.size() * 2);
    for (char c : raw) {
        const auto b = static_cast<unsigned char>(c);
        if (b < 0x80) {
            out += c;
        } else {
            out += static_cast<char>(0xC0 | (b >> 6));
            out += static_cast<char>(0x80 | (b & 0x3F));
        }
    }
    return out;
}

}  // namespace

bool pt_writable_dtype(DType t) {
    switch (t) {
        case DType::F64: case DType::F32: case DType::F16: case DType::BF16:
        case DType::I64: case DType::I32: case DType::I16: case DType::I8: case DType::U8: case DType::Bool:
        case DType::C64: case DType::C128:
            return true;
        default:
            return false;
    }
}

PickleWriter::PickleWriter(int protocol) {
    out_ += static_cast<char>(PROTO);
    out_ += static_cast<char>(protocol);
}

void PickleWriter::none() { out_ += static_cast<char>(NONE); }
void PickleWriter::boolean(bool b) { out_ += static_cast<char>(b ? NEWTRUE : NEWFALSE); }

void PickleWriter::integer(std::int64_t i) {
    if (i >= 0 && i < 256) {
        out_ += static_cast<char>(BININT1);
        put_le(out_, static_cast<std::uint64_t>(i), 1);
    } else if (i >= 0 && i < 65536) {
        out_ += static_cast<char>(BININT2);
        put_le(out_, static_cast<std::uint64_t>(i), 2);
    } else if (i >= INT32_MIN && i <= INT32_MAX) {
        out_ += static_cast<char>(BININT);
        put_le(out_, static_cast<std::uint32_t>(static_cast<std::int32_t>(i)), 4);
    } else {
        // LONG1: the shortest little-endian two's complement that keeps the sign.
        std::string bytes;
        put_le(bytes, static_cast<std::uint64_t>(i), 8);
        while (bytes.size() > 1) {
            const auto last = static_cast<unsigned char>(bytes.back());
            const auto prev = static_cast<unsigned char>(bytes[bytes.size() - 2]);
            if ((last == 0x00 && !(prev & 0x80)) || (last == 0xFF && (prev & 0x80))) bytes.pop_back();
            else break;
        }
        out_ += static_cast<char>(LONG1);
        out_ += static_cast<char>(bytes.size());
        out_ += bytes;
    }
}

void PickleWriter::real(double d) {
    out_ += static_cast<char>(BINFLOAT);
    const auto bits = std::bit_cast<std::uint64_t>(d);
    for (int i = 7; i >= 0; --i) out_ += static_cast<char>((bits >> (8 * i)) & 0xFF);  // big-endian
}

void PickleWriter::str(std::string_view utf8) {
    out_ += static_cast<char>(BINUNICODE);
    put_le(out_, utf8.size(), 4);
    out_ += utf8;
}

void PickleWriter::bytes(std::string_view raw) {
    // What CPython's protocol-2 pickler writes for bytes, and what torch's weights_only
    // unpickler accepts.
    global("_codecs", "encode");
    str(latin1_to_utf8(raw));
    str("latin1");
    tuple(2);
    reduce();
}

void PickleWriter::global(std::string_view module, std::string_view name) {
    std::string key = std::string(module) + "\n" + std::string(name);
    if (auto it = global_memo_.find(key); it != global_memo_.end()) {
        get(it->second);
        return;
    }
    out_ += static_cast<char>(GLOBAL);
    out_ += key;
    out_ += '\n';
    global_memo_.emplace(std::move(key), put());
}

void PickleWriter::mark() { out_ += static_cast<char>(MARK); }
void PickleWriter::tuple_from_mark() { out_ += static_cast<char>(TUPLE); }

void PickleWriter::tuple(std::size_t n) {
    static constexpr std::uint8_t ops[] = {EMPTY_TUPLE, TUPLE1, TUPLE2, TUPLE3};
    if (n > 3) throw Error("PickleWriter::tuple: use mark() and tuple_from_mark() for more than 3 items");
    out_ += static_cast<char>(ops[n]);
}

void PickleWriter::empty_list() { out_ += static_cast<char>(EMPTY_LIST); }
void PickleWriter::appends_from_mark() { out_ += static_cast<char>(APPENDS); }
void PickleWriter::empty_dict() { out_ += static_cast<char>(EMPTY_DICT); }
void PickleWriter::setitems_from_mark() { out_ += static_cast<char>(SETITEMS); }
void PickleWriter::reduce() { out_ += static_cast<char>(REDUCE); }
void PickleWriter::newobj() { out_ += static_cast<char>(NEWOBJ); }
void PickleWriter::build() { out_ += static_cast<char>(BUILD); }
void PickleWriter::binpersid() { out_ += static_cast<char>(BINPERSID); }
void PickleWriter::pop() { out_ += static_cast<char>(POP); }

std::uint32_t PickleWriter::put() {
    const std::uint32_t index = next_memo_++;
    if (index < 256) {
        out_ += static_cast<char>(BINPUT);
        put_le(out_, index, 1);
    } else {
        out_ += static_cast<char>(LONG_BINPUT);
        put_le(out_, index, 4);
    }
    return index;
}

void PickleWriter::get(std::uint32_t index) {
    if (index < 256) {
        out_ += static_cast<char>(BINGET);
        put_le(out_, index, 1);
    } else {
        out_ += static_cast<char>(LONG_BINGET);
        put_le(out_, index, 4);
    }
}

void PickleWriter::raw(std::string_view op_bytes) { out_ += op_bytes; }

void PickleWriter::value(const PyValue& v) {
    using K = PyValue::Kind;
    auto dict_items = [&](const std::vector<std::pair<PyValue, PyValue>>& entries) {
        for (std::size_t i = 0; i < entries.size(); i += kBatch) {
            mark();
            for (std::size_t j = i; j < std::min(entries.size(), i + kBatch); ++j) {
                value(entries[j].first);
                value(entries[j].second);
            }
            setitems_from_mark();
        }
    };
    switch (v.kind) {
        case K::None: none(); break;
        case K::Bool: boolean(v.boolean); break;
        case K::Int: integer(v.integer); break;
        case K::Float: real(v.real); break;
        case K::Str: str(v.text); break;
        case K::Bytes: bytes(v.text); break;
        case K::Tuple:
            if (v.items.size() <= 3) {
                for (const auto& item : v.items) value(item);
                tuple(v.items.size());
            } else {
                mark();
                for (const auto& item : v.items) value(item);
                tuple_from_mark();
            }
            break;
        case K::List:
            empty_list();
            put();
            for (std::size_t i = 0; i < v.items.size(); i += kBatch) {
                mark();
                for (std::size_t j = i; j < std::min(v.items.size(), i + kBatch); ++j) value(v.items[j]);
                appends_from_mark();
            }
            break;
        case K::Dict:
            empty_dict();
            put();
            dict_items(v.entries);
            break;
        case K::OrderedDict:
            global("collections", "OrderedDict");
            tuple(0);
            reduce();
            put();
            dict_items(v.entries);
            break;
    }
}

void PickleWriter::tensor(const PickledTensor& t) {
    if (!pt_writable_dtype(t.dtype))
        throw Error("cannot pickle a " + std::string(dtype_name(t.dtype)) + " tensor: torch.save has no typed storage class for it");
    if (t.shape.size() != t.stride.size()) throw Error("PickleWriter::tensor: shape and stride differ in length");
    auto int_tuple = [&](const std::vector<std::int64_t>& xs) {
        if (xs.size() <= 3) {
            for (auto x : xs) integer(x);
            tuple(xs.size());
        } else {
            mark();
            for (auto x : xs) integer(x);
            tuple_from_mark();
        }
    };
    auto empty_ordered_dict = [&] {
        global("collections", "OrderedDict");
        tuple(0);
        reduce();
    };
    if (t.parameter) global("torch._utils", "_rebuild_parameter");
    global("torch._utils", "_rebuild_tensor_v2");
    mark();
    // The persistent id torch.save writes: ('storage', torch.<X>Storage, key, location, numel).
    mark();
    str("storage");
    global("torch", dtype_storage_class(t.dtype));
    str(t.storage_key);
    str("cpu");
    integer(t.storage_numel);
    tuple_from_mark();
    binpersid();
    integer(t.storage_offset);
    int_tuple(t.shape);
    int_tuple(t.stride);
    boolean(false);
    empty_ordered_dict();  // backward hooks
    tuple_from_mark();
    reduce();
    if (t.parameter) {
        boolean(t.requires_grad);
        empty_ordered_dict();
        tuple(3);
        reduce();
    }
}

std::string PickleWriter::finish() {
    out_ += static_cast<char>(STOP);
    return std::move(out_);
}

std::string pickle_state_dict(const PickledStateDict& sd) {
    PickleWriter w;
    const bool wrapped = !sd.state_dict_key.empty();
    if (!wrapped && !sd.extra.empty()) throw Error("extra top-level entries need a state_dict_key to put the state dict under");
    if (wrapped) {
        w.empty_dict();
        w.put();
        w.mark();
        w.str(sd.state_dict_key);
    }
    w.global("collections", "OrderedDict");
    w.tuple(0);
    w.reduce();
    w.put();
    for (std::size_t i = 0; i < sd.tensors.size(); i += kBatch) {
        w.mark();
        for (std::size_t j = i; j < std::min(sd.tensors.size(), i + kBatch); ++j) {
            w.str(sd.tensors[j].first);
            w.tensor(sd.tensors[j].second);
        }
        w.setitems_from_mark();
    }
    if (wrapped) {
        for (const auto& [key, value] : sd.extra) {
            if (key == sd.state_dict_key) throw Error("extra entry '" + key + "' has the same key as the state dict");
            w.str(key);
            w.value(value);
        }
        w.setitems_from_mark();
    }
    return w.finish();
}

// ---------------------------------------------------------------------------------------------
// Re-emitting: parse into an op tree (nothing imported or called), then write it out again.

namespace {

struct Node {
    enum class Kind : std::uint8_t { Atom, Global, Tuple, FrozenSet, List, Dict, Set, Call, PersId };
    Kind kind = Kind::Atom;
    std::string atom;        // Atom: the exact opcode and argument bytes; PersId from PERSID: its op bytes
    bool has_text = false;   // Atom: a str whose text is known
    bool is_none = false;
    std::string text;
    std::string module, name;     // Global
    std::vector<Node*> items;     // Tuple, FrozenSet
    std::uint8_t call_op = 0;     // Call: REDUCE, NEWOBJ or NEWOBJ_EX
    Node* callee = nullptr;
    Node* args = nullptr;
    Node* kwargs = nullptr;
    Node* pid = nullptr;          // PersId from BINPERSID
    struct Mutation {
        std::uint8_t op;  // APPEND, SETITEM, ADDITEMS (one item each) or BUILD
        Node* a;
        Node* b;
    };
    std::vector<Mutation> mutations;  // in the order the pickle applied them
};

class TreeParser {
public:
    TreeParser(std::span<const std::byte> data, const std::string& source) : data_(data), source_(source) {}

    Node* run() {
        while (true) {
            const std::size_t start = pos_;
            const std::uint8_t op = u8();
            switch (op) {
                case PROTO: protocol_ = u8(); break;
                case FRAME: skip(8); break;
                case STOP: {
                    if (stack_.empty() || (!marks_.empty() && marks_.back() == stack_.size())) fail("STOP with an empty stack", start);
                    return stack_.back();
                }
                case MARK: marks_.push_back(stack_.size()); break;
                case POP:
                    if (!marks_.empty() && marks_.back() == stack_.size()) marks_.pop_back();  // POP of a MARK
                    else pop(start);
                    break;
                case POP_MARK: pop_mark(start); break;
                case DUP: push(top(start)); break;

                case NONE: atom(start)->is_none = true; break;
                case NEWTRUE: case NEWFALSE: atom(start); break;
                case BININT1: skip(1); atom(start); break;
                case BININT2: skip(2); atom(start); break;
                case BININT: skip(4); atom(start); break;
                case BINFLOAT: skip(8); atom(start); break;
                case INT: case LONG: case FLOAT: line(); atom(start); break;
                case LONG1: skip(u8()); atom(start); break;
                case LONG4: skip(le(4)); atom(start); break;
                case STRING: case UNICODE: line(); atom(start); break;
                case SHORT_BINSTRING: case SHORT_BINUNICODE: text_atom(start, u8()); break;
                case BINSTRING: case BINUNICODE: text_atom(start, le(4)); break;
                case BINUNICODE8: text_atom(start, le(8)); break;
                case SHORT_BINBYTES: skip(u8()); atom(start); break;
                case BINBYTES: skip(le(4)); atom(start); break;
                case BINBYTES8: case BYTEARRAY8: skip(le(8)); atom(start); break;

                case EMPTY_TUPLE: push(make(Node::Kind::Tuple)); break;
                case TUPLE1: case TUPLE2: case TUPLE3: {
                    const std::size_t n = op - TUPLE1 + 1;
                    if (available() < n) fail("TUPLE" + std::to_string(n) + " with too few items", start);
                    Node* t = make(Node::Kind::Tuple);
                    t->items.assign(stack_.end() - static_cast<std::ptrdiff_t>(n), stack_.end());
                    stack_.resize(stack_.size() - n);
                    push(t);
                    break;
                }
                case TUPLE: {
                    Node* t = make(Node::Kind::Tuple);
                    t->items = pop_mark(start);
                    push(t);
                    break;
                }
                case FROZENSET: {
                    Node* t = make(Node::Kind::FrozenSet);
                    t->items = pop_mark(start);
                    push(t);
                    break;
                }
                case EMPTY_LIST: push(make(Node::Kind::List)); break;
                case EMPTY_DICT: push(make(Node::Kind::Dict)); break;
                case EMPTY_SET: push(make(Node::Kind::Set)); break;
                case LIST: {
                    auto items = pop_mark(start);
                    Node* l = make(Node::Kind::List);
                    for (Node* item : items) l->mutations.push_back({APPEND, item, nullptr});
                    push(l);
                    break;
                }
                case DICT: {
                    auto items = pop_mark(start);
                    if (items.size() % 2) fail("DICT with an odd number of items", start);
                    Node* d = make(Node::Kind::Dict);
                    for (std::size_t i = 0; i < items.size(); i += 2) d->mutations.push_back({SETITEM, items[i], items[i + 1]});
                    push(d);
                    break;
                }
                case APPEND: {
                    Node* item = pop(start);
                    top(start)->mutations.push_back({APPEND, item, nullptr});
                    break;
                }
                case APPENDS: {
                    auto items = pop_mark(start);
                    Node* target = top(start);
                    for (Node* item : items) target->mutations.push_back({APPEND, item, nullptr});
                    break;
                }
                case SETITEM: {
                    Node* value = pop(start);
                    Node* key = pop(start);
                    top(start)->mutations.push_back({SETITEM, key, value});
                    break;
                }
                case SETITEMS: {
                    auto items = pop_mark(start);
                    if (items.size() % 2) fail("SETITEMS with an odd number of items", start);
                    Node* target = top(start);
                    for (std::size_t i = 0; i < items.size(); i += 2) target->mutations.push_back({SETITEM, items[i], items[i + 1]});
                    break;
                }
                case ADDITEMS: {
                    auto items = pop_mark(start);
                    Node* target = top(start);
                    for (Node* item : items) target->mutations.push_back({ADDITEMS, item, nullptr});
                    break;
                }
                case BUILD: {
                    Node* state = pop(start);
                    top(start)->mutations.push_back({BUILD, state, nullptr});
                    break;
                }

                case GLOBAL: {
                    Node* g = make(Node::Kind::Global);
                    g->module = line();
                    g->name = line();
                    push(g);
                    break;
                }
                case STACK_GLOBAL: {
                    Node* name = pop(start);
                    Node* module = pop(start);
                    if (!name->has_text || !module->has_text) fail("STACK_GLOBAL needs two str", start);
                    Node* g = make(Node::Kind::Global);
                    g->module = module->text;
                    g->name = name->text;
                    push(g);
                    break;
                }
                case REDUCE: case NEWOBJ: {
                    Node* args = pop(start);
                    Node* callee = pop(start);
                    push(call(op, callee, args));
                    break;
                }
                case NEWOBJ_EX: {
                    Node* kwargs = pop(start);
                    Node* args = pop(start);
                    Node* cls = pop(start);
                    Node* c = call(op, cls, args);
                    c->kwargs = kwargs;
                    push(c);
                    break;
                }
                case INST: {
                    // INST module\nname\n: module.name(*items since MARK), the same call as REDUCE.
                    Node* g = make(Node::Kind::Global);
                    g->module = line();
                    g->name = line();
                    Node* args = make(Node::Kind::Tuple);
                    args->items = pop_mark(start);
                    push(call(REDUCE, g, args));
                    break;
                }
                case OBJ: {
                    auto items = pop_mark(start);
                    if (items.empty()) fail("OBJ without a class", start);
                    Node* args = make(Node::Kind::Tuple);
                    args->items.assign(items.begin() + 1, items.end());
                    push(call(REDUCE, items[0], args));
                    break;
                }
                case PERSID: {
                    line();
                    Node* p = make(Node::Kind::PersId);
                    p->atom = bytes_from(start);
                    push(p);
                    break;
                }
                case BINPERSID: {
                    Node* p = make(Node::Kind::PersId);
                    p->pid = pop(start);
                    push(p);
                    break;
                }

                case PUT: memo_put(std::stoull(digits(line(), start)), start); break;
                case BINPUT: memo_put(u8(), start); break;
                case LONG_BINPUT: memo_put(le(4), start); break;
                case MEMOIZE: memo_put(memo_.size(), start); break;
                case GET: memo_get(std::stoull(digits(line(), start)), start); break;
                case BINGET: memo_get(u8(), start); break;
                case LONG_BINGET: memo_get(le(4), start); break;

                case EXT1: case EXT2: case EXT4:
                    fail("uses the copyreg extension registry (EXT opcodes), which cannot be carried over", start);
                case NEXT_BUFFER: case READONLY_BUFFER:
                    fail("uses out-of-band buffers (protocol 5), which cannot be carried over", start);
                default: fail("unknown opcode 0x" + hex(op), start);
            }
        }
    }

    int protocol() const { return protocol_; }

private:
    [[noreturn]] void fail(const std::string& what, std::size_t at) const {
        throw FormatError(source_, "pickle " + what + " at offset " + std::to_string(at));
    }
    static std::string hex(std::uint8_t b) {
        static const char* d = "0123456789abcdef";
        return {d[b >> 4], d[b & 15]};
    }
    void need(std::uint64_t n) const {
        if (n > data_.size() - pos_) fail("is truncated", pos_);
    }
    std::uint8_t u8() {
        need(1);
        return static_cast<std::uint8_t>(data_[pos_++]);
    }
    std::uint64_t le(int bytes) {
        need(static_cast<std::uint64_t>(bytes));
        std::uint64_t v = 0;
        for (int i = 0; i < bytes; ++i) v |= static_cast<std::uint64_t>(data_[pos_ + static_cast<std::size_t>(i)]) << (8 * i);
        pos_ += static_cast<std::size_t>(bytes);
        return v;
    }
    void skip(std::uint64_t n) {
        need(n);
        pos_ += static_cast<std::size_t>(n);
    }
    std::string line() {
        const auto* begin = reinterpret_cast<const char*>(data_.data()) + pos_;
        const void* nl = std::memchr(begin, '\n', data_.size() - pos_);
        if (!nl) fail("has a text argument without its newline", pos_);
        std::string s(begin, static_cast<const char*>(nl));
        pos_ += s.size() + 1;
        return s;
    }
    std::string digits(const std::string& s, std::size_t at) const {
        if (s.empty() || s.size() > 18 || s.find_first_not_of("0123456789") != std::string::npos) fail("has a bad memo index", at);
        return s;
    }
    std::string bytes_from(std::size_t start) const {
        return std::string(reinterpret_cast<const char*>(data_.data()) + start, pos_ - start);
    }
    Node* make(Node::Kind k) {
        Node& n = arena_.emplace_back();
        n.kind = k;
        return &n;
    }
    Node* atom(std::size_t start) {
        Node* n = make(Node::Kind::Atom);
        n->atom = bytes_from(start);
        push(n);
        return n;
    }
    void text_atom(std::size_t start, std::uint64_t length) {
        need(length);
        const std::size_t text_start = pos_;
        pos_ += static_cast<std::size_t>(length);
        Node* n = atom(start);
        n->has_text = true;
        n->text.assign(reinterpret_cast<const char*>(data_.data()) + text_start, static_cast<std::size_t>(length));
    }
    Node* call(std::uint8_t op, Node* callee, Node* args) {
        Node* c = make(Node::Kind::Call);
        c->call_op = op;
        c->callee = callee;
        c->args = args;
        return c;
    }
    std::size_t available() const { return stack_.size() - (marks_.empty() ? 0 : marks_.back()); }
    void push(Node* n) { stack_.push_back(n); }
    Node* pop(std::size_t at) {
        if (available() == 0) fail("pops an empty stack", at);
        Node* n = stack_.back();
        stack_.pop_back();
        return n;
    }
    Node* top(std::size_t at) {
        if (available() == 0) fail("reads an empty stack", at);
        return stack_.back();
    }
    std::vector<Node*> pop_mark(std::size_t at) {
        if (marks_.empty()) fail("has no MARK to pop to", at);
        std::vector<Node*> items(stack_.begin() + static_cast<std::ptrdiff_t>(marks_.back()), stack_.end());
        stack_.resize(marks_.back());
        marks_.pop_back();
        return items;
    }
    void memo_put(std::uint64_t index, std::size_t at) { memo_[index] = top(at); }
    void memo_get(std::uint64_t index, std::size_t at) {
        auto it = memo_.find(index);
        if (it == memo_.end()) fail("reads memo entry " + std::to_string(index) + " that was never stored", at);
        push(it->second);
    }

    std::span<const std::byte> data_;
    const std::string& source_;
    std::size_t pos_ = 0;
    int protocol_ = 0;
    std::deque<Node> arena_;
    std::vector<Node*> stack_;
    std::vector<std::size_t> marks_;
    std::unordered_map<std::uint64_t, Node*> memo_;
};

class TreeEmitter {
public:
    TreeEmitter(int protocol, const RepickleOptions& options, RepickleResult& result)
        : w_(protocol), options_(options), result_(result) {}

    // Counts references so only values used more than once get a memo slot (cycles count too:
    // the back reference is the second use). Iterative: the tree may be deep.
    void count(Node* root, const std::vector<bool>& skip_root) {
        std::vector<Node*> todo{root};
        refs_[root] = 1;
        while (!todo.empty()) {
            Node* n = todo.back();
            todo.pop_back();
            auto visit = [&](Node* c) {
                if (c && ++refs_[c] == 1) todo.push_back(c);
            };
            for (Node* c : n->items) visit(c);
            visit(n->callee);
            visit(n->args);
            visit(n->kwargs);
            visit(n->pid);
            for (std::size_t i = 0; i < n->mutations.size(); ++i) {
                if (n == root && skip_root[i]) continue;
                visit(n->mutations[i].a);
                visit(n->mutations[i].b);
            }
        }
    }

    void emit(Node* n, const std::vector<bool>* skip, int depth) {
        if (depth > kMaxDepth) throw FormatError(options_.source_name, "pickle nests deeper than " + std::to_string(kMaxDepth) + " levels");
        if (auto it = memo_.find(n); it != memo_.end()) {
            w_.get(it->second);
            return;
        }
        switch (n->kind) {
            case Node::Kind::Atom: w_.raw(n->atom); break;
            case Node::Kind::Global: w_.global(n->module, n->name); break;
            case Node::Kind::Tuple:
            case Node::Kind::FrozenSet: {
                const bool with_mark = n->kind == Node::Kind::FrozenSet || n->items.size() > 3;
                if (with_mark) w_.mark();
                for (Node* c : n->items) emit(c, nullptr, depth + 1);
                if (auto it = memo_.find(n); it != memo_.end()) {
                    // A recursive tuple: emitting its items emitted the tuple itself (through a
                    // list or object holding it). Drop these items and use that one, as CPython does.
                    if (with_mark) w_.raw(std::string(1, static_cast<char>(POP_MARK)));
                    else
                        for (std::size_t i = 0; i < n->items.size(); ++i) w_.pop();
                    w_.get(it->second);
                    return;
                }
                if (n->kind == Node::Kind::FrozenSet) w_.raw(std::string(1, static_cast<char>(FROZENSET)));
                else if (with_mark) w_.tuple_from_mark();
                else w_.tuple(n->items.size());
                break;
            }
            case Node::Kind::List: w_.empty_list(); break;
            case Node::Kind::Dict: w_.empty_dict(); break;
            case Node::Kind::Set: w_.raw(std::string(1, static_cast<char>(EMPTY_SET))); break;
            case Node::Kind::Call:
                emit(n->callee, nullptr, depth + 1);
                emit(n->args, nullptr, depth + 1);
                if (n->kwargs) emit(n->kwargs, nullptr, depth + 1);
                w_.raw(std::string(1, static_cast<char>(n->call_op)));
                break;
            case Node::Kind::PersId: emit_persistent_id(n, depth); break;
        }
        // Mutable values (containers, objects) always get a memo slot, as in CPython's pickler:
        // a recursive tuple reached again through them must find them there. Globals are
        // memoized by name inside the writer; the rest only when used more than once.
        const bool mutable_value = n->kind == Node::Kind::List || n->kind == Node::Kind::Dict || n->kind == Node::Kind::Set ||
                                   n->kind == Node::Kind::Call;
        if (n->kind != Node::Kind::Global && (mutable_value || refs_[n] > 1)) memo_[n] = w_.put();
        emit_mutations(n, skip, depth);
    }

    PickleWriter& writer() { return w_; }

private:
    static constexpr int kMaxDepth = 3000;

    void emit_mutations(Node* n, const std::vector<bool>* skip, int depth) {
        const auto& ms = n->mutations;
        std::size_t i = 0;
        while (i < ms.size()) {
            if (skip && (*skip)[i]) {
                ++i;
                continue;
            }
            const std::uint8_t op = ms[i].op;
            if (op == BUILD) {
                emit(ms[i].a, nullptr, depth + 1);
                w_.build();
                ++i;
                continue;
            }
            // A run of the same item-adding op, in batches.
            w_.mark();
            std::size_t in_batch = 0;
            while (i < ms.size() && ms[i].op == op && in_batch < kBatch) {
                if (!(skip && (*skip)[i])) {
                    emit(ms[i].a, nullptr, depth + 1);
                    if (op == SETITEM) emit(ms[i].b, nullptr, depth + 1);
                    ++in_batch;
                }
                ++i;
            }
            w_.raw(std::string(1, static_cast<char>(op == APPEND ? APPENDS : op == SETITEM ? SETITEMS : ADDITEMS)));
        }
    }

    void emit_persistent_id(Node* n, int depth) {
        if (!n->pid) {  // protocol-0 PERSID: a text id, not torch's tuple; carried as written
            w_.raw(n->atom);
            return;
        }
        Node* pid = n->pid;
        const bool torch_storage = pid->kind == Node::Kind::Tuple && pid->items.size() >= 5 && pid->items[0]->has_text &&
                                   pid->items[0]->text == "storage";
        if (!torch_storage) {
            emit(pid, nullptr, depth + 1);
            w_.binpersid();
            return;
        }
        const Node* cls = pid->items[1];
        const Node* key = pid->items[2];
        if (!key->has_text) throw FormatError(options_.source_name, "a storage's persistent id has a key that is not a str");
        if (cls->kind == Node::Kind::Global) {
            if (auto d = dtype_from_storage_class(cls->name)) result_.storage_dtypes.emplace(key->text, *d);
        }
        if (seen_keys_.insert({key->text, true}).second) result_.storage_keys.push_back(key->text);
        if (options_.legacy_storage_ids && pid->items.size() >= 6) {
            if (pid->items.size() > 6 || !pid->items[5]->is_none)
                throw FormatError(options_.source_name, "storage '" + key->text +
                                                            "' is a view of another storage (pre-1.0 legacy format), which cannot be rewritten");
            w_.mark();
            for (std::size_t i = 0; i < 5; ++i) emit(pid->items[i], nullptr, depth + 1);
            w_.tuple_from_mark();
        } else {
            emit(pid, nullptr, depth + 1);
        }
        w_.binpersid();
    }

    PickleWriter w_;
    const RepickleOptions& options_;
    RepickleResult& result_;
    std::unordered_map<const Node*, std::uint32_t> memo_;
    std::unordered_map<const Node*, std::uint32_t> refs_;
    std::unordered_map<std::string, bool> seen_keys_;
};

}  // namespace

RepickleResult repickle(std::span<const std::byte> pickle, const RepickleOptions& options) {
    TreeParser parser(pickle, options.source_name);
    Node* root = parser.run();
    RepickleResult result;

    // Top-level entries to leave out: SETITEM mutations of the root (a dict or an OrderedDict).
    std::vector<bool> skip(root->mutations.size(), false);
    if (options.drop_top_level_key) {
        for (std::size_t i = 0; i < root->mutations.size(); ++i) {
            const auto& m = root->mutations[i];
            if (m.op == SETITEM && m.a->has_text && options.drop_top_level_key(m.a->text)) {
                skip[i] = true;
                result.dropped_keys.push_back(m.a->text);
            }
        }
    }
    // Output protocol: at least 2 (NEWTRUE, TUPLE1..3 are used), and the source's when higher so
    // its opcodes carried verbatim stay valid.
    TreeEmitter emitter(std::max(2, parser.protocol()), options, result);
    emitter.count(root, skip);
    emitter.emit(root, &skip, 0);
    result.pickle = emitter.writer().finish();
    return result;
}

}  // namespace bitfsck::io
