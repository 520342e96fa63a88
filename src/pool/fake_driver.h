// A Driver for tests of the pool and the daemon without root: its sandboxes
// are in-process fake agents that speak proto/agent_proto.h on a Unix socket,
// served on the test's io_context. A test decides what each creation does
// (succeed, fail, a dead or a hung agent) and can hold creations until it
// releases them; every sandbox created and destroyed is counted.
//
// Creations and teardowns run on the pool's threads (as real ones do): the
// counters and the script are locked. The agents live on the loop thread.
//
// The fake agent's commands: ["echo", args...] writes the args and exits 0;
// ["exit", "N"] exits N; ["block"] waits until FinishBlockedExecs (exit 0)
// or until the host hangs up (counted in killed()).
#pragma once

#include <boost/asio/io_context.hpp>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>

#include "sandbox/driver.h"

namespace wb::pool {

enum class FakeCreation {
  kHealthy,  // its agent answers
  kFail,     // Create fails (kUnavailable)
  kDead,     // its agent is gone: connecting is refused
  kHung,     // its agent accepts connections but never answers
};

class FakeDriver : public Driver {
 public:
  // dir: where the agents' sockets go (a fresh temporary directory).
  FakeDriver(boost::asio::io_context& io, std::string dir);
  ~FakeDriver() override;

  // The outcome of the next creation (queued in order); kHealthy when none is queued.
  void Push(FakeCreation c);
  void PushN(FakeCreation c, size_t n) {
    for (size_t i = 0; i < n; ++i) Push(c);
  }
  // While held, creations wait on their thread until ReleaseCreations.
  void HoldCreations();
  void ReleaseCreations();
  // Blocks the calling thread until n creations are waiting in a hold (false
  // after 5 s: a safety net). Creations start on the loop: run it first.
  [[nodiscard]] bool WaitHeld(size_t n);

  size_t create_calls() const;  // Create called (held ones included)
  size_t created() const;       // sandboxes handed out
  size_t failed() const;        // scripted failures
  size_t destroyed() const;     // sandboxes destroyed (Destroy, or the destructor)
  size_t live() const { return created() - destroyed(); }

  // On the loop thread: execs of "block" waiting, finishing them, and
  // execs whose connection the host closed before they finished.
  size_t blocked_execs() const;
  void FinishBlockedExecs();
  size_t killed() const;
  size_t execs() const;  // exec requests received

  // Stands in for the ns driver (pools name their driver "ns").
  DriverKind kind() const override { return DriverKind::kNs; }
  [[nodiscard]] Result<std::unique_ptr<Sandbox>> Create(const SandboxSpec& spec) override;

  struct Agent;  // public for the sandbox and agent code in fake_driver.cc
  struct LoopState;
  void Destroyed();

 private:
  boost::asio::io_context& io_;
  std::string dir_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<FakeCreation> script_;
  bool hold_ = false;
  size_t held_ = 0;
  size_t create_calls_ = 0, created_ = 0, failed_ = 0, destroyed_ = 0;
  size_t next_id_ = 0;               // ids in the order creations take their outcome
  std::shared_ptr<LoopState> loop_;  // touched on the loop thread only
};

}  // namespace wb::pool
