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

Error Error::WithCode(ErrorCode c) const {
  Error e = *this;
  e.code = c;
  return e;
}

const char* ErrorCodeName(ErrorCode c) {
  switch (c) {
    case ErrorCode::kInternal:
      return "internal";
    case ErrorCode::kInvalidArgument:
      return "bad_request";
    case ErrorCode::kNotFound:
      return "not_found";
    case ErrorCode::kAlreadyExists:
      return "already_exists";
    case ErrorCode::kPermissionDenied:
      return "permission_denied";
    case ErrorCode::kBusy:
      return "busy";
    case ErrorCode::kResourceExhausted:
      return "resource_exhausted";
    case ErrorCode::kDraining:
      return "draining";
    case ErrorCode::kDeadlineExceeded:
      return "timeout";
    case ErrorCode::kCancelled:
      return "cancelled";
    case ErrorCode::kFailedPrecondition:
      return "failed_precondition";
    case ErrorCode::kUnavailable:
      return "unavailable";
  }
  return "internal";
}

ErrorCode ErrorCodeFromName(std::string_view name) {
  for (int c = 0; c <= static_cast<int>(ErrorCode::kUnavailable); ++c) {
    if (name == ErrorCodeName(static_cast<ErrorCode>(c))) return static_cast<ErrorCode>(c);
  }
  return ErrorCode::kInternal;
}

ErrorCode CodeForErrno(int err) {
  switch (err) {
    case ENOENT:
    case ESRCH:
      return ErrorCode::kNotFound;
    case EEXIST:
      return ErrorCode::kAlreadyExists;
    case EACCES:
    case EPERM:
      return ErrorCode::kPermissionDenied;
    case ENOSPC:
    case EDQUOT:
    case EMFILE:
    case ENFILE:
    case ENOMEM:
      return ErrorCode::kResourceExhausted;
    case ETIMEDOUT:
      return ErrorCode::kDeadlineExceeded;
    case ECANCELED:
      return ErrorCode::kCancelled;
    case ECONNREFUSED:
    case ECONNRESET:
    case EPIPE:
      return ErrorCode::kUnavailable;
    default:
      return ErrorCode::kInternal;
  }
}

Error Errno(std::string call, std::string arg) {
  int saved = errno;
  return Error{std::move(call), std::move(arg), saved, {}, CodeForErrno(saved)};
}

Error ErrnoValue(int err, std::string call, std::string arg) {
  return Error{std::move(call), std::move(arg), err, {}, CodeForErrno(err)};
}

Error Fail(std::string call, std::string arg, std::string detail) {
  return Error{std::move(call), std::move(arg), 0, std::move(detail), ErrorCode::kInternal};
}

Error Fail(ErrorCode code, std::string call, std::string arg, std::string detail) {
  return Error{std::move(call), std::move(arg), 0, std::move(detail), code};
}

}  // namespace wb
