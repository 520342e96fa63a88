#include "base/error.h"

#include <cstring>

namespace wb {

std::string Error::ToString() const {
  std::string s = call;
  if (!arg.empty()) s += "(" + arg + ")";
  if (err != 0) {
    s += ": ";
    s += std::strerror(err);
  }
  if (!detail.empty()) {
    s += ": ";
    s += detail;
  }
  return s;
}

Error Error::Wrap(const std::string& context) const {
  Error e = *this;
  e.call = context + ": " + call;
  return e;
}

Error Errno(std::string call, std::string arg) {
  int saved = errno;
  return Error{std::move(call), std::move(arg), saved, {}};
}

Error ErrnoValue(int err, std::string call, std::string arg) {
  return Error{std::move(call), std::move(arg), err, {}};
}

Error Fail(std::string call, std::string arg, std::string detail) {
  return Error{std::move(call), std::move(arg), 0, std::move(detail)};
}

}  // namespace wb
