// A test's own event loop: runs handlers one at a time until a condition
// holds (no sleeps), and spawns coroutines whose results the test reads.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>

namespace wb::pool {

class TestLoop {
 public:
  boost::asio::io_context io;

  // Runs handlers until pred() holds. The limit is a safety net against a
  // hung test (false when reached), not a wait for something to happen.
  [[nodiscard]] bool RunUntil(const std::function<bool()>& pred,
                              std::chrono::milliseconds limit = std::chrono::seconds(5)) {
    auto work = boost::asio::make_work_guard(io);
    const auto deadline = std::chrono::steady_clock::now() + limit;
    io.restart();
    while (!pred()) {
      if (std::chrono::steady_clock::now() >= deadline) return false;
      io.run_one_until(deadline);
    }
    return true;
  }

  // Runs every handler that is ready now.
  void Poll() {
    io.restart();
    io.poll();
  }

  // Starts a coroutine on the loop; its result appears in the optional.
  template <typename T>
  std::shared_ptr<std::optional<T>> Spawn(boost::asio::awaitable<T> a) {
    auto out = std::make_shared<std::optional<T>>();
    boost::asio::co_spawn(
        io,
        [out, a = std::move(a)]() mutable -> boost::asio::awaitable<void> {
          out->emplace(co_await std::move(a));
        },
        boost::asio::detached);
    return out;
  }
};

// A fresh directory under /tmp, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/wb-unit-XXXXXX";
    const char* p = ::mkdtemp(tmpl);
    if (p) path_ = p;
  }
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace wb::pool
