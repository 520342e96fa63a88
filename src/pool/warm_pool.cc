#include "pool/warm_pool.h"

#include <sys/resource.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <optional>

#include "base/log.h"

namespace wb::pool {

using asio::redirect_error;
using asio::use_awaitable;
using boost::system::error_code;

namespace {

Error Draining(const std::string& image) {
  return Fail(ErrorCode::kDraining, "pool", image, "the daemon is shutting down");
}

}  // namespace

struct WarmPool::Waiter {
  explicit Waiter(asio::any_io_executor ex) : timer(ex) {}
  asio::steady_timer timer;
  Permit permit;  // set when a permit is handed over
};

Permit& Permit::operator=(Permit&& o) noexcept {
  if (this != &o) {
    if (pool_) pool_->ReturnPermit();
    pool_ = std::exchange(o.pool_, nullptr);
  }
  return *this;
}

Permit::~Permit() {
  if (pool_) pool_->ReturnPermit();
}

WarmPool::WarmPool(PoolRuntime& rt, std::string image, std::string driver, size_t target,
                   size_t permits, const PoolSettings& s)
    : rt_(rt),
      image_(std::move(image)),
      driver_(std::move(driver)),
      settings_(s),
      target_(target),
      permits_(permits),
      ttl_timer_(rt.io),
      backoff_timer_(rt.io) {
  stats_.image = image_;
  stats_.driver = driver_;
}

WarmPool::~WarmPool() {
  // Waiters hold permits of this pool; they must be gone first.
  waiters_.clear();
}

asio::awaitable<Result<Permit>> WarmPool::TakePermit() {
  if (rt_.stopping) co_return Draining(image_);
  if (permits_used_ < permits_ && waiters_.empty()) {
    ++permits_used_;
    peak_active_ = std::max<uint64_t>(peak_active_, permits_used_);
    co_return Permit(this);
  }
  if (waiters_.size() >= settings_.queue_limit) {
    ++stats_.rejected_busy;
    co_return Fail(ErrorCode::kBusy, "busy", image_,
                   "all " + std::to_string(permits_) + " run slots are taken and " +
                       std::to_string(waiters_.size()) +
                       " requests are already waiting; retry later");
  }
  auto w = std::make_shared<Waiter>(rt_.io.get_executor());
  w->timer.expires_after(settings_.queue_timeout);
  waiters_.push_back(w);
  error_code ec;
  co_await w->timer.async_wait(redirect_error(use_awaitable, ec));
  if (w->permit) co_return std::move(w->permit);
  std::erase(waiters_, w);
  if (rt_.stopping) co_return Draining(image_);
  ++stats_.rejected_busy;
  co_return Fail(ErrorCode::kBusy, "busy", image_,
                 "no run slot became free within " +
                     std::to_string(settings_.queue_timeout.count()) + " ms (all " +
                     std::to_string(permits_) + " in use); retry later");
}

void WarmPool::ReturnPermit() {
  --permits_used_;
  if (waiters_.empty() || rt_.stopping) return;
  // Handed straight to the oldest waiter: nobody can overtake the queue.
  auto w = waiters_.front();
  waiters_.pop_front();
  ++permits_used_;
  peak_active_ = std::max<uint64_t>(peak_active_, permits_used_);
  w->permit = Permit(this);
  w->timer.cancel();
}

asio::awaitable<Result<std::unique_ptr<Sandbox>>> WarmPool::CreateOne() {
  rt_.in_flight.Add();
  std::optional<Result<std::unique_ptr<Sandbox>>> out;
  SandboxSpec spec{image_, settings_.limits, settings_.security};
  double seconds = 0;  // the driver's own time, not the wait for a creation thread
  // The driver blocks (clone, mounts, readiness): run it on the creation
  // pool, whose size caps concurrent creations daemon-wide.
  co_await asio::co_spawn(
      rt_.create,
      [&]() -> asio::awaitable<void> {
        // Creations yield the CPU to runs in flight (on small hosts a refill
        // competes with the run that triggered it): this thread, and the
        // agent it spawns while that sets up, run at nice 10; the driver puts
        // the agent back to 0 once it is ready.
        static thread_local bool niced = ::setpriority(PRIO_PROCESS, 0, 10) == 0;
        (void)niced;
        const auto t0 = Clock::now();
        auto driver = rt_.drivers(driver_);
        if (driver.ok()) {
          out.emplace((*driver)->Create(spec));
        } else {
          out.emplace(driver.error());
        }
        seconds = std::chrono::duration<double>(Clock::now() - t0).count();
        co_return;
      },
      use_awaitable);
  if (out->ok() && rt_.prepare && !rt_.stopping) {
    // Before the sandbox is idle (or handed to a claim that missed): a
    // claim never waits for a service that a refill could have waited for.
    auto prepared = co_await rt_.prepare(***out, image_);
    if (!prepared.ok()) {
      Destroy(std::move(**out));
      out.emplace(prepared.error().Wrap("prepare sandbox"));
    }
  }
  rt_.in_flight.Done();
  if (out->ok()) {
    ++stats_.total_created;
    creation_seconds_.Observe(seconds);
  } else {
    ++stats_.failed_creations;
  }
  co_return std::move(*out);
}

asio::awaitable<Result<Lease>> WarmPool::Acquire(bool refill) {
  auto ex = rt_.io.get_executor();
  while (!idle_.empty()) {
    Idle it = std::move(idle_.front());  // oldest first
    idle_.pop_front();
    ArmTtl();
    if (refill) Refill();  // the replacement starts now, not on a timer
    if (settings_.ttl_s && Clock::now() >= it.created + std::chrono::seconds(settings_.ttl_s)) {
      ++stats_.total_evicted;
      Destroy(std::move(it.sandbox));
      continue;
    }
    // A dead agent refuses the connection at once (its listener died with
    // it); a hung one is caught by the heartbeat that leads the request.
    // Named: GCC 12 destroys a temporary bound to a coroutine's reference
    // parameter twice.
    const AgentEndpoint ep = it.sandbox->endpoint();
    auto conn = co_await AgentConn::Connect(ex, ep);
    if (!conn.ok()) {
      Evict(Lease{std::move(it.sandbox), nullptr, true}, conn.error());
      continue;
    }
    ++stats_.total_acquired;
    ++stats_.hits;
    co_return Lease{std::move(it.sandbox), std::move(*conn), true};
  }
  ++stats_.misses;
  Refill();  // a miss refills at once: the claim waits for a creation anyway
  ++on_demand_;
  auto sb = co_await CreateOne();
  --on_demand_;
  if (!sb.ok()) co_return sb.error();
  if (rt_.stopping) {
    Destroy(std::move(*sb));
    co_return Draining(image_);
  }
  const AgentEndpoint ep = (*sb)->endpoint();
  auto conn = co_await AgentConn::Connect(ex, ep);
  if (!conn.ok()) {
    Destroy(std::move(*sb));
    co_return conn.error();
  }
  ++stats_.total_acquired;
  co_return Lease{std::move(*sb), std::move(*conn), false};
}

asio::awaitable<Result<Lease>> WarmPool::Claim() {
  // The replacement starts once the claim is done (the caller calls
  // Refill): on a small host a creation competing with the claim for the
  // CPU and the kernel's cgroup and mount locks triples the claim's time.
  auto lease = co_await Acquire(/*refill=*/false);
  if (!lease.ok()) co_return lease.error();
  // Not a run: the status view's acquisitions and hits are the runs'.
  ++claimed_;
  ++returned_unused_;
  if (lease->hit) ++returned_unused_hits_;
  co_return lease;
}

asio::awaitable<Result<void>> OnBlockingThread(PoolRuntime& rt, std::function<Result<void>()> fn) {
  rt.in_flight.Add();
  std::optional<Result<void>> out;
  co_await asio::co_spawn(
      rt.destroy,
      [&]() -> asio::awaitable<void> {
        out.emplace(fn());
        co_return;
      },
      use_awaitable);
  rt.in_flight.Done();
  co_return std::move(*out);
}

void WarmPool::Evict(Lease lease, const Error& why) {
  spdlog::warn("pool {}: idle sandbox {} failed its health check ({}); evicted", image_,
               lease.sandbox->id(), why.ToString());
  ++stats_.total_evicted;
  // It was counted as acquired (and a hit) when handed out, but served
  // nothing: the status view leaves it out; the counters keep it (they never
  // go down, see CounterStat).
  if (lease.conn) {
    ++returned_unused_;
    if (lease.hit) ++returned_unused_hits_;
  }
  lease.conn.reset();
  Destroy(std::move(lease.sandbox));
}

void WarmPool::Release(Lease lease, Permit permit) {
  lease.conn.reset();
  Destroy(std::move(lease.sandbox), std::move(permit));
}

void WarmPool::Destroy(std::unique_ptr<Sandbox> sb, Permit permit) {
  if (!sb) return;
  rt_.in_flight.Add();
  asio::co_spawn(
      rt_.io,
      [this, sb = std::move(sb), permit = std::move(permit)]() mutable -> asio::awaitable<void> {
        co_await asio::co_spawn(
            rt_.destroy,
            [&]() -> asio::awaitable<void> {
              if (auto r = sb->Destroy(); !r.ok()) {
                spdlog::warn("pool {}: teardown of {}: {}", image_, sb->id(), r.error().ToString());
              }
              sb.reset();
              co_return;
            },
            use_awaitable);
        // The permit goes back here, on the loop, after the teardown (and
        // before the count that a shutdown waits for drops).
        permit = Permit();
        rt_.in_flight.Done();
      },
      asio::detached);
}

void WarmPool::Refill() {
  if (rt_.stopping || backing_off_) return;
  while (idle_.size() + creating_ < target_ && creating_ < settings_.refill_parallel) {
    ++creating_;
    asio::co_spawn(rt_.io, RefillOne(), asio::detached);
  }
}

asio::awaitable<void> WarmPool::RefillOne() {
  auto sb = co_await CreateOne();
  --creating_;
  if (!sb.ok()) {
    // Back off (100 ms doubling to 30 s) instead of spinning on a broken image.
    ++refill_failures_;
    auto delay = std::min<std::chrono::milliseconds>(
        std::chrono::milliseconds(100) * (1 << std::min(refill_failures_, 9)),
        std::chrono::seconds(30));
    spdlog::warn("pool {}: creating a sandbox failed ({}); retrying in {} ms", image_,
                 sb.error().ToString(), delay.count());
    backing_off_ = true;
    backoff_timer_.expires_after(delay);
    backoff_timer_.async_wait([this](error_code ec) {
      if (ec) return;
      backing_off_ = false;
      Refill();
    });
    co_return;
  }
  refill_failures_ = 0;
  if (rt_.stopping) {
    Destroy(std::move(*sb));
    co_return;
  }
  idle_.push_back(Idle{std::move(*sb), Clock::now()});
  if (idle_.size() == 1) ArmTtl();
  Refill();
}

void WarmPool::ArmTtl() {
  if (settings_.ttl_s == 0 || idle_.empty()) {
    ttl_timer_.cancel();
    return;
  }
  ttl_timer_.expires_at(idle_.front().created + std::chrono::seconds(settings_.ttl_s));
  ttl_timer_.async_wait([this](error_code ec) {
    if (!ec) EvictExpired();
  });
}

void WarmPool::EvictExpired() {
  auto now = Clock::now();
  bool any = false;
  while (!idle_.empty() && idle_.front().created + std::chrono::seconds(settings_.ttl_s) <= now) {
    ++stats_.total_evicted;
    Destroy(std::move(idle_.front().sandbox));
    idle_.pop_front();
    any = true;
  }
  ArmTtl();
  if (any) Refill();
}

proto::ImageStat WarmPool::Stat() const {
  proto::ImageStat s = CounterStat();
  s.total_acquired -= returned_unused_;
  s.hits -= returned_unused_hits_;
  return s;
}

proto::ImageStat WarmPool::CounterStat() const {
  proto::ImageStat s = stats_;
  s.idle = idle_.size();
  s.active = permits_used_;
  s.queued = waiters_.size();
  s.max = permits_;
  s.creating = creating_ + on_demand_;
  s.peak_active = peak_active_;
  return s;
}

void WarmPool::Shutdown() {
  ttl_timer_.cancel();
  backoff_timer_.cancel();
  while (!idle_.empty()) {
    Destroy(std::move(idle_.front().sandbox));
    idle_.pop_front();
  }
  for (auto& w : waiters_) w->timer.cancel();
}

WarmPool& PoolRegistry::Get(const std::string& image, const std::string& driver,
                            size_t warm_count) {
  auto it = pools_.find({image, driver});
  if (it != pools_.end()) return *it->second;
  size_t target = warm_count ? warm_count : defaults_.size;
  size_t permits = std::max(defaults_.max, warm_count);
  auto pool = std::make_unique<WarmPool>(rt_, image, driver, target, permits, defaults_);
  WarmPool& ref = *pool;
  pools_.emplace(std::pair{image, driver}, std::move(pool));
  ref.Refill();
  return ref;
}

std::vector<proto::ImageStat> PoolRegistry::Stats() const {
  std::vector<proto::ImageStat> out;
  for (const auto& [name, pool] : pools_) out.push_back(pool->Stat());  // std::map: sorted
  return out;
}

std::vector<proto::ImageStat> PoolRegistry::CounterStats() const {
  std::vector<proto::ImageStat> out;
  for (const auto& [name, pool] : pools_) out.push_back(pool->CounterStat());
  return out;
}

std::vector<const WarmPool*> PoolRegistry::Pools() const {
  std::vector<const WarmPool*> out;
  for (const auto& [name, pool] : pools_) out.push_back(pool.get());
  return out;
}

void PoolRegistry::Shutdown() {
  rt_.stopping = true;
  for (auto& [name, pool] : pools_) pool->Shutdown();
}

}  // namespace wb::pool
