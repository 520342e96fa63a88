// A count of operations in flight (runs, or sandbox creations and teardowns)
// whose return to zero is an event: a drain waits for it instead of polling
// the count.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/post.hpp>
#include <cstddef>
#include <functional>
#include <utility>
#include <vector>

namespace wb::pool {

// Lives on the daemon's event loop (not thread-safe), and outlives the loop's run.
class InFlight {
 public:
  explicit InFlight(boost::asio::any_io_executor ex) : ex_(std::move(ex)) {}
  InFlight(const InFlight&) = delete;
  InFlight& operator=(const InFlight&) = delete;

  void Add() { ++n_; }
  void Done() {
    if (--n_ == 0 && !waiters_.empty()) Post();
  }
  size_t count() const { return n_; }

  // Calls fn on the loop, once, as soon as the count is zero: posted at once
  // if it is zero now, else when the last operation ends. Posted, not called
  // from Done, so that fn never runs inside the operation that ended.
  void WhenIdle(std::function<void()> fn) {
    waiters_.push_back(std::move(fn));
    if (n_ == 0) Post();
  }

 private:
  void Post() {
    boost::asio::post(ex_, [this] {
      // Another operation may have started since the post: then the next
      // return to zero posts again.
      if (n_ != 0) return;
      auto ready = std::exchange(waiters_, {});
      for (auto& fn : ready) fn();
    });
  }

  boost::asio::any_io_executor ex_;
  size_t n_ = 0;
  std::vector<std::function<void()>> waiters_;
};

}  // namespace wb::pool
