#include "bitfsck/model/tokenizer.hpp"

#include <sstream>

#include "bitfsck/model/config.hpp"

#ifdef BITFSCK_HAVE_SENTENCEPIECE
#include <sentencepiece_processor.h>
#endif

namespace bitfsck::model {

struct Tokenizer::Impl {
#ifdef BITFSCK_HAVE_SENTENCEPIECE
    sentencepiece::SentencePieceProcessor sp;
#endif
};

Tokenizer::Tokenizer(Kind kind, std::unique_ptr<Impl> impl) : kind_(kind), impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

std::string_view Tokenizer::kind_name() const {
    switch (kind_) {
        case Kind::SentencePiece: return "sentencepiece";
        case Kind::Bytes: return "bytes";
        case Kind::Ids: return "ids";
    }
    return "?";
}

Tokenizer Tokenizer::create(const std::optional<std::filesystem::path>& spm_model, std::int64_t vocab_size) {
    auto impl = std::make_unique<Impl>();
    if (spm_model) {
#ifdef BITFSCK_HAVE_SENTENCEPIECE
        auto status = impl->sp.Load(spm_model->string());
        if (!status.ok()) throw ModelError(spm_model->string() + ": cannot load the SentencePiece model: " + status.ToString());
        if (impl->sp.GetPieceSize() > vocab_size)
            throw ModelError(spm_model->string() + ": the tokenizer has " + std::to_string(impl->sp.GetPieceSize()) +
                             " pieces but the model's vocabulary is " + std::to_string(vocab_size));
        return Tokenizer(Kind::SentencePiece, std::move(impl));
#else
        throw ModelError(spm_model->string() + ": this bitfsck was built without SentencePiece (configure with "
                         "-DBITFSCK_WITH_SENTENCEPIECE=ON; off by default because Debian's libsentencepiece and LibTorch's "
                         "protobuf cannot share a process); pass the prompt as token ids instead");
#endif
    }
    return Tokenizer(vocab_size == 256 ? Kind::Bytes : Kind::Ids, std::move(impl));
}

std::vector<std::int64_t> Tokenizer::encode(const std::string& text) const {
    std::vector<std::int64_t> ids;
    switch (kind_) {
        case Kind::SentencePiece: {
#ifdef BITFSCK_HAVE_SENTENCEPIECE
            std::vector<int> pieces;
            auto status = impl_->sp.Encode(text, &pieces);
            if (!status.ok()) throw ModelError("tokenizer: " + status.ToString());
            ids.assign(pieces.begin(), pieces.end());
#endif
            break;
        }
        case Kind::Bytes:
            for (unsigned char c : text) ids.push_back(c);
            break;
        case Kind::Ids: {
            std::string s = text;
            for (char& c : s)
                if (c == ',') c = ' ';
            std::istringstream in(s);
            std::string word;
            while (in >> word) {
                std::size_t used = 0;
                long long v = -1;
                try {
                    v = std::stoll(word, &used);
                } catch (const std::exception&) {
                    used = 0;
                }
                if (used != word.size() || v < 0)
                    throw ModelError("--prompt: '" + word + "' is not a token id (without --tokenizer, a model whose vocabulary "
                                     "is not 256 bytes takes the prompt as ids, e.g. \"1 2 3\")");
                ids.push_back(v);
            }
            break;
        }
    }
    return ids;
}

std::string Tokenizer::decode(const std::vector<std::int64_t>& ids) const {
    std::string out;
    switch (kind_) {
        case Kind::SentencePiece: {
#ifdef BITFSCK_HAVE_SENTENCEPIECE
            std::vector<int> pieces(ids.begin(), ids.end());
            impl_->sp.Decode(pieces, &out);
#endif
            break;
        }
        case Kind::Bytes:
            for (auto id : ids) out.push_back(static_cast<char>(id & 0xff));
            break;
        case Kind::Ids:
            for (std::size_t i = 0; i < ids.size(); ++i) out += (i ? " " : "") + std::to_string(ids[i]);
            break;
    }
    return out;
}

std::optional<std::int64_t> Tokenizer::bos_id() const {
#ifdef BITFSCK_HAVE_SENTENCEPIECE
    if (kind_ == Kind::SentencePiece && impl_->sp.bos_id() >= 0) return impl_->sp.bos_id();
#endif
    return std::nullopt;
}

std::optional<std::int64_t> Tokenizer::eos_id() const {
#ifdef BITFSCK_HAVE_SENTENCEPIECE
    if (kind_ == Kind::SentencePiece && impl_->sp.eos_id() >= 0) return impl_->sp.eos_id();
#endif
    return std::nullopt;
}

}  // namespace bitfsck::model
