// Error and Result<T>: every fallible call returns a Result that names the
// failing call, its argument and errno, so the place that handles it can log
// one precise line.
#pragma once

#include <cerrno>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace wb {

// What kind of failure an error is: set where the error is born (Errno
// derives it from errno, Fail takes it) and kept by Wrap. Front ends map
// codes to their status codes and wire kinds, never message text
// (docs/errors.md). The wire names are ErrorCodeName's.
enum class ErrorCode {
  kInternal,            // "internal": a bug or an unexpected host failure (the default)
  kInvalidArgument,     // "bad_request": the caller's input is wrong
  kNotFound,            // "not_found": what was named does not exist
  kAlreadyExists,       // "already_exists"
  kPermissionDenied,    // "permission_denied"
  kBusy,                // "busy": a run slot, queue or sandbox limit is taken; retry later
  kResourceExhausted,   // "resource_exhausted": the host ran out (disk, memory, fds)
  kDraining,            // "draining": the daemon is shutting down (unavailable)
  kDeadlineExceeded,    // "timeout"
  kCancelled,           // "cancelled": the caller went away or asked to stop
  kFailedPrecondition,  // "failed_precondition": the target is in the wrong state
  kUnavailable,         // "unavailable": a dependency (agent, registry) cannot be reached
};
const char* ErrorCodeName(ErrorCode c);
// The code of a wire name (ErrorCodeName's inverse); an unknown name is kInternal.
ErrorCode ErrorCodeFromName(std::string_view name);
// The code of an errno value: ENOENT is not found, EACCES/EPERM permission
// denied, ENOSPC/EDQUOT/EMFILE/ENFILE/ENOMEM resource exhausted, ETIMEDOUT a
// deadline, ECONNREFUSED/ECONNRESET/EPIPE unavailable, anything else internal.
ErrorCode CodeForErrno(int err);

struct Error {
  std::string call;    // the syscall or operation, e.g. "mount"
  std::string arg;     // what it was applied to, e.g. "/var/lib/warmbox/x"
  int err = 0;         // errno, 0 when not a syscall failure
  std::string detail;  // free text, e.g. "expected a size like 512m"
  ErrorCode code = ErrorCode::kInternal;

  // "mount(/x): Permission denied" or "parse size(abc): expected ...".
  std::string ToString() const;
  // Prefixes context: Error{...}.Wrap("create sandbox") -> "create sandbox: mount(...)".
  // The code is kept.
  Error Wrap(const std::string& context) const;
  // The same error with another code (a boundary that knows better, e.g. a
  // missing file that means "no such image").
  Error WithCode(ErrorCode c) const;
};

// An error from the current errno (its code from CodeForErrno).
Error Errno(std::string call, std::string arg);
// An error with an explicit errno value (for calls that return it).
Error ErrnoValue(int err, std::string call, std::string arg);
// A logical error without errno: internal unless a code is given.
Error Fail(std::string call, std::string arg, std::string detail);
Error Fail(ErrorCode code, std::string call, std::string arg, std::string detail);

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}      // NOLINT: implicit by design
  Result(Error error) : v_(std::move(error)) {}  // NOLINT

  bool ok() const { return v_.index() == 0; }
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  const Error& error() const& { return std::get<1>(v_); }
  Error&& error() && { return std::get<1>(std::move(v_)); }
  T* operator->() { return &value(); }
  T& operator*() { return value(); }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : err_(std::move(error)), ok_(false) {}  // NOLINT

  bool ok() const { return ok_; }
  const Error& error() const& { return err_; }
  Error&& error() && { return std::move(err_); }

 private:
  Error err_;
  bool ok_ = true;
};

inline Result<void> Ok() { return Result<void>(); }

}  // namespace wb

// Evaluates a Result<T> expression; returns its error from the enclosing
// function, or yields the value.
#define WB_TRY(expr)                                          \
  ({                                                          \
    auto wb_try_r_ = (expr);                                  \
    if (!wb_try_r_.ok()) return std::move(wb_try_r_).error(); \
    std::move(wb_try_r_).value();                             \
  })

// Same for Result<void>: returns its error from the enclosing function.
// (Not CHECK: in the Google lineage a CHECK aborts; this returns.)
#define WB_RETURN_IF_ERROR(expr)                                  \
  do {                                                            \
    auto wb_check_r_ = (expr);                                    \
    if (!wb_check_r_.ok()) return std::move(wb_check_r_).error(); \
  } while (0)
