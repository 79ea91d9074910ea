#pragma once
// Text <-> token ids for `bitfsck generate`: a SentencePiece model when one is given, bytes for a
// 256-entry vocabulary (byte-level models), otherwise the prompt is a list of ids.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace bitfsck::model {

class Tokenizer {
public:
    enum class Kind : std::uint8_t { SentencePiece, Bytes, Ids };

    // spm_model set: SentencePiece (ModelError when this build has none or the file is unreadable).
    // Otherwise Bytes for vocab_size 256, Ids for anything else.
    static Tokenizer create(const std::optional<std::filesystem::path>& spm_model, std::int64_t vocab_size);

    Tokenizer(Tokenizer&&) noexcept;
    Tokenizer& operator=(Tokenizer&&) noexcept;
    ~Tokenizer();

    Kind kind() const { return kind_; }
    std::string_view kind_name() const;
    // Ids mode parses "1 2 3" or "1,2,3"; throws ModelError on anything else.
    std::vector<std::int64_t> encode(const std::string& text) const;
    // Ids mode: space-separated ids. Bytes: the raw bytes (not necessarily valid UTF-8).
    std::string decode(const std::vector<std::int64_t>& ids) const;
    std::optional<std::int64_t> bos_id() const;  // SentencePiece's, when it defines one
    std::optional<std::int64_t> eos_id() const;

    struct Impl;

private:
    Tokenizer(Kind kind, std::unique_ptr<Impl> impl);
    Kind kind_;
    std::unique_ptr<Impl> impl_;
};

}  // namespace bitfsck::model
