// WarmPool and PoolRegistry: the daemon's sandboxes, per image.
//
// Everything here runs on the daemon's single event-loop thread, so pool
// state needs no lock at all; the slow, blocking driver calls (create,
// destroy) run on two small thread pools and resume on the loop. No lock of
// any kind is held while a sandbox is created.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "base/error.h"
#include "base/histogram.h"
#include "image/store.h"
#include "pool/agent_conn.h"
#include "pool/in_flight.h"
#include "pool/settings.h"
#include "proto/pool_proto.h"
#include "sandbox/driver.h"

namespace wb::pool {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

// The drivers a daemon serves, by name ("ns", "vm"), opened on first use.
using DriverSource = std::function<Result<Driver*>(const std::string& name)>;

// Shared services of all pools.
struct PoolRuntime {
  PoolRuntime(asio::io_context& io, DriverSource drivers, ImageStore& store, size_t creation_cap)
      : io(io),
        drivers(std::move(drivers)),
        store(store),
        create(creation_cap),
        destroy(2),
        in_flight(io.get_executor()) {}
  asio::io_context& io;
  DriverSource drivers;  // called on the creation threads: must be thread-safe
  ImageStore& store;
  asio::thread_pool create;  // its size is the global cap on concurrent creations
  asio::thread_pool destroy;
  bool stopping = false;
  InFlight in_flight;  // creations + destructions: shutdown ends when it is idle
  // Called on the loop with every sandbox a pool created (its image), before
  // it goes idle or is handed out: the daemon starts the image's services
  // there and waits until they are ready (daemon/services.h). An error is
  // the creation's (the sandbox is destroyed; a refill backs off). Unset:
  // nothing.
  std::function<asio::awaitable<Result<void>>(Sandbox& sb, const std::string& image)> prepare;
};

class WarmPool;

// A run slot of one image. Returned (and handed to the next waiter) when
// destroyed; the pool's Retire keeps it until the used sandbox is torn down.
class Permit {
 public:
  Permit() = default;
  explicit Permit(WarmPool* p) : pool_(p) {}
  Permit(Permit&& o) noexcept : pool_(std::exchange(o.pool_, nullptr)) {}
  Permit& operator=(Permit&& o) noexcept;
  ~Permit();
  explicit operator bool() const { return pool_ != nullptr; }

 private:
  WarmPool* pool_ = nullptr;
};

// A sandbox handed out for one run, with a connection to its agent. Giving it
// back (Release) destroys the sandbox in the background and returns the
// permit after the teardown.
struct Lease {
  std::unique_ptr<Sandbox> sandbox;
  std::unique_ptr<AgentConn> conn;
  bool hit = false;  // came from the idle pool: health-check it (see AgentConn::Exec)
};

class WarmPool {
 public:
  WarmPool(PoolRuntime& rt, std::string image, std::string driver, size_t target, size_t permits,
           const PoolSettings& s);
  ~WarmPool();

  const std::string& image() const { return image_; }
  const std::string& driver() const { return driver_; }

  // Waits (bounded) for a run slot; a kBusy error at the queue limit or
  // timeout, kDraining when the daemon stops.
  [[nodiscard]] asio::awaitable<Result<Permit>> TakePermit();
  // The oldest healthy idle sandbox, or a new one on a miss. Starts a refill.
  // refill false: a hit does not start the replacement (Claim's caller does).
  [[nodiscard]] asio::awaitable<Result<Lease>> Acquire(bool refill = true);
  // For a live sandbox (docs/live-sandboxes.md): what Acquire hands out (an
  // idle sandbox, or a new one on a miss; the refill starts at once), taken
  // for keeps and without a run permit. It is never given back: the caller
  // owns it and destroys it (OnBlockingThread). Counted as claimed, not as a
  // run's acquisition.
  // The caller calls Refill once the claim is done.
  [[nodiscard]] asio::awaitable<Result<Lease>> Claim();
  uint64_t claimed() const { return claimed_; }
  // Destroys the used sandbox in the background, then drops the permit.
  void Release(Lease lease, Permit permit);
  // An idle sandbox that failed its health check: counted, destroyed, replaced.
  void Evict(Lease lease, const Error& why);

  // Tops the idle set up to the target (bounded parallelism); no-op when stopping.
  void Refill();
  // What `pool status` shows: an idle sandbox that failed its health check
  // after it was handed out is not counted as acquired (nor as a hit).
  proto::ImageStat Stat() const;
  // The same numbers for Prometheus, whose counters never go down: acquired
  // and hits count every hand-out, the evicted ones included.
  proto::ImageStat CounterStat() const;
  // Seconds to create each sandbox of this pool (successful creations).
  const Histogram& creation_seconds() const { return creation_seconds_; }
  // Stops refilling and destroys every idle sandbox.
  void Shutdown();

 private:
  friend class Permit;
  struct Idle {
    std::unique_ptr<Sandbox> sandbox;
    Clock::time_point created;
  };
  struct Waiter;

  void ReturnPermit();
  void Destroy(std::unique_ptr<Sandbox> sb, Permit permit = Permit());
  asio::awaitable<Result<std::unique_ptr<Sandbox>>> CreateOne();
  asio::awaitable<void> RefillOne();
  void ArmTtl();
  void EvictExpired();

  PoolRuntime& rt_;
  std::string image_;
  std::string driver_;
  PoolSettings settings_;
  size_t target_;
  size_t permits_;
  size_t permits_used_ = 0;
  size_t creating_ = 0;      // refill creations in flight
  size_t on_demand_ = 0;     // miss creations in flight
  int refill_failures_ = 0;  // consecutive, for backoff
  bool backing_off_ = false;
  std::deque<Idle> idle_;
  std::deque<std::shared_ptr<Waiter>> waiters_;
  asio::steady_timer ttl_timer_;
  asio::steady_timer backoff_timer_;
  proto::ImageStat stats_;             // total_acquired and hits as handed out (monotonic)
  uint64_t returned_unused_ = 0;       // handed out, then evicted by the health check
  uint64_t returned_unused_hits_ = 0;  // of which hits (today: all of them)
  Histogram creation_seconds_;
  uint64_t peak_active_ = 0;
  uint64_t claimed_ = 0;
};

// Runs fn (a blocking call: a live sandbox's teardown, its freeze) on the
// runtime's destroy threads, counted in flight (a shutdown waits for it);
// resumes on the loop. Pass a named std::function, not a lambda temporary
// (GCC 12 may destroy a temporary of a co_await expression twice).
[[nodiscard]] asio::awaitable<Result<void>> OnBlockingThread(PoolRuntime& rt,
                                                             std::function<Result<void>()> fn);

class PoolRegistry {
 public:
  PoolRegistry(PoolRuntime& rt, PoolSettings defaults) : rt_(rt), defaults_(std::move(defaults)) {}
  // The pool of image on driver, created (and warmed) on first use.
  // warm_count 0: --size.
  WarmPool& Get(const std::string& image, const std::string& driver, size_t warm_count = 0);
  std::vector<proto::ImageStat> Stats() const;         // sorted by image, then driver
  std::vector<proto::ImageStat> CounterStats() const;  // the same, for Prometheus
  std::vector<const WarmPool*> Pools() const;          // sorted by image, then driver
  void Shutdown();
  PoolRuntime& runtime() { return rt_; }
  const PoolSettings& defaults() const { return defaults_; }

 private:
  PoolRuntime& rt_;
  PoolSettings defaults_;
  std::map<std::pair<std::string, std::string>, std::unique_ptr<WarmPool>>
      pools_;  // (image, driver)
};

}  // namespace wb::pool
