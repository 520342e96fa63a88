// UniqueFd: the only owner of a file descriptor. Every fd warmbox opens is
// close-on-exec from birth (O_CLOEXEC, SOCK_CLOEXEC, ...); fds a child must
// inherit are passed explicitly through the spawn path.
#pragma once

#include <string_view>
#include <utility>

#include "base/error.h"

namespace wb {

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& o) noexcept : fd_(o.release()) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept {
    if (this != &o) reset(o.release());
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  explicit operator bool() const { return valid(); }
  int release() { return std::exchange(fd_, -1); }
  void reset(int fd = -1);

 private:
  int fd_ = -1;
};

struct Pipe {
  UniqueFd read;
  UniqueFd write;
};

// pipe2(O_CLOEXEC | extra_flags).
Result<Pipe> MakePipe(int extra_flags = 0);

Result<void> SetNonBlocking(int fd, bool on = true);

// Writes all of data, retrying on EINTR and short writes (blocking fds).
Result<void> WriteAll(int fd, std::string_view data);

// Reads until EOF (blocking fds).
Result<std::string> ReadAll(int fd);

}  // namespace wb
