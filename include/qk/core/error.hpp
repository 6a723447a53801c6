#pragma once
// The one exception family of qk. Every error the library reports is a qk::Error;
// the subclasses say what kind of problem it is so a caller (qtool) can choose an exit code.
#include <stdexcept>
#include <string>

#include <fmt/format.h>

namespace qk {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A caller passed an impossible option or argument (bits out of range, group not dividing the row...).
class InvalidArgument : public Error {
 public:
  using Error::Error;
};

// Shapes or dtypes that do not fit together (e.g. X and W of a layer, a tensor and its byte size).
class ShapeError : public Error {
 public:
  using Error::Error;
};

// Non-finite input, a matrix that is not positive definite, a numerical breakdown.
class NumericError : public Error {
 public:
  using Error::Error;
};

// The operating system said no: missing file, permission, short write.
class IoError : public Error {
 public:
  using Error::Error;
};

// A file's bytes do not follow its format (bad magic, truncated header, out-of-bounds tensor...).
class FormatError : public Error {
 public:
  using Error::Error;
};

// The caller asked a long operation to stop (a progress callback returned false); nothing was committed.
class Cancelled : public Error {
 public:
  using Error::Error;
};

// Throws E with a fmt-formatted message.
template <typename E = Error, typename... Args>
[[noreturn]] inline void fail(fmt::format_string<Args...> f, Args&&... args) {
  throw E(fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace qk
