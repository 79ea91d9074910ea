#include "bitfsck/io/error.hpp"

namespace bitfsck {

std::string_view error_kind_name(ErrorKind k) {
    switch (k) {
        case ErrorKind::Other: return "other";
        case ErrorKind::Usage: return "usage";
        case ErrorKind::Unreadable: return "unreadable";
        case ErrorKind::File: return "file";
        case ErrorKind::Output: return "output";
        case ErrorKind::Cancelled: return "cancelled";
        case ErrorKind::Model: return "model";
    }
    return "other";
}

}  // namespace bitfsck
