#pragma once
// Every error bitfsck throws derives from bitfsck::Error, whose message is fit to show the user as
// one line: it names the file (where there is one) and what is wrong. Errors carry their kind and
// their subject (file, tensor) as fields, as safetensors' errors do, so that a front maps them to
// an exit code and a UI places them without searching message text.
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

namespace bitfsck {

enum class ErrorKind : std::uint8_t {
    Other,       // a request the data does not allow (a graft between different shapes, ...)
    Usage,       // the request itself is wrong: a bad value, a refused conversion
    Unreadable,  // an input is not what it claims to be: truncated, corrupted, hostile, another format
    File,        // the operating system refused an input: missing, permissions
    Output,      // an output could not be written: unwritable folder, disk full, the output is an input
    Cancelled,   // the progress callback asked to stop (Ctrl-C, the app's Cancel)
    Model,       // a checkpoint that cannot be made into a model (a missing tensor, a contradicting config)
};
std::string_view error_kind_name(ErrorKind k);  // "usage", "unreadable", "file", "output", "cancelled", ...

class Error : public std::runtime_error {
public:
    explicit Error(const std::string& message, ErrorKind kind = ErrorKind::Other, std::string file = {}, std::string tensor = {})
        : std::runtime_error(message), kind_(kind), file_(std::move(file)), tensor_(std::move(tensor)) {}

    ErrorKind kind() const { return kind_; }
    const std::string& file() const { return file_; }      // the file the error is about, "" when none
    const std::string& tensor() const { return tensor_; }  // the tensor, "" when none

private:
    ErrorKind kind_;
    std::string file_, tensor_;
};

// Long work stopped because its progress callback returned false (progress.hpp).
class Cancelled : public Error {
public:
    Cancelled() : Error("cancelled", ErrorKind::Cancelled) {}
};

namespace io {

// The input is not what it claims to be: truncated, corrupted, hostile or of another format.
class FormatError : public Error {
public:
    FormatError(const std::string& file, const std::string& what)
        : Error(file.empty() ? what : file + ": " + what, ErrorKind::Unreadable, file) {}
    FormatError(const std::string& file, const std::string& tensor, const std::string& what)
        : Error((file.empty() ? "" : file + ": ") + "tensor '" + tensor + "' " + what, ErrorKind::Unreadable, file, tensor) {}
};

// The operating system refused to read an input (missing file, permissions).
class FileError : public Error {
public:
    explicit FileError(const std::string& message, std::string file = {}) : Error(message, ErrorKind::File, std::move(file)) {}
};

// An output could not be written: the folder is not writable, the disk is full, or the output
// would replace an input. Nothing is left under the output's name.
class OutputError : public Error {
public:
    OutputError(const std::string& file, const std::string& what) : Error(file + ": " + what, ErrorKind::Output, file) {}
};

}  // namespace io
}  // namespace bitfsck
