#pragma once
// Every error bitfsck throws derives from bitfsck::Error, whose message is fit to show
// the user as one line: it names the file (where there is one) and what is wrong.
#include <stdexcept>
#include <string>

namespace bitfsck {

class Error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

namespace io {

// The input is not what it claims to be: truncated, corrupted, hostile or of another format.
class FormatError : public Error {
public:
    FormatError(const std::string& file, const std::string& what)
        : Error(file.empty() ? what : file + ": " + what) {}
};

// The operating system refused (missing file, permissions, disk full).
class FileError : public Error {
public:
    using Error::Error;
};

}  // namespace io
}  // namespace bitfsck
