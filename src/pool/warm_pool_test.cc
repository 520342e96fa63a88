// WarmPool against the fake driver: permits and their FIFO queue, refill and
// back-off, TTL, eviction, counters and shutdown, without root or sleeps.
#include "pool/warm_pool.h"

#include <gtest/gtest.h>

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "pool/fake_driver.h"
#include "pool/test_loop.h"

namespace wb::pool {
namespace {

using namespace std::chrono_literals;

class WarmPoolTest : public ::testing::Test {
 protected:
  void Start(size_t target, size_t permits) {
    rt_ = std::make_unique<PoolRuntime>(
        loop_.io, [this](const std::string&) -> Result<Driver*> { return &driver_; }, store_, 4);
    pool_ = std::make_unique<WarmPool>(*rt_, "busybox", "fake", target, permits, settings_);
  }

  // Every test ends with a shutdown that must leave no sandbox behind.
  void TearDown() override {
    if (!pool_) return;
    driver_.ReleaseCreations();
    rt_->stopping = true;
    pool_->Shutdown();
    bool idle = false;
    rt_->in_flight.WhenIdle([&] { idle = true; });
    EXPECT_TRUE(loop_.RunUntil([&] { return idle && driver_.live() == 0; }));
    loop_.Poll();
    EXPECT_EQ(driver_.created(), driver_.destroyed()) << "a sandbox leaked";
    pool_.reset();
    rt_.reset();
  }

  proto::ImageStat Stat() const { return pool_->Stat(); }

  TestLoop loop_;
  TempDir dir_;
  FakeDriver driver_{loop_.io, dir_.path()};
  ImageStore store_{dir_.path(), 100000};
  PoolSettings settings_;
  std::unique_ptr<PoolRuntime> rt_;
  std::unique_ptr<WarmPool> pool_;
};

TEST_F(WarmPoolTest, PermitsAreHandedOutInArrivalOrder) {
  settings_.queue_timeout = 5s;
  Start(0, 2);
  auto a = loop_.Spawn(pool_->TakePermit());
  auto b = loop_.Spawn(pool_->TakePermit());
  ASSERT_TRUE(loop_.RunUntil([&] { return *a && *b; }));
  ASSERT_TRUE((*a)->ok());
  ASSERT_TRUE((*b)->ok());
  auto c = loop_.Spawn(pool_->TakePermit());
  auto d = loop_.Spawn(pool_->TakePermit());
  auto e = loop_.Spawn(pool_->TakePermit());
  ASSERT_TRUE(loop_.RunUntil([&] { return Stat().queued == 3; }));
  EXPECT_EQ(Stat().active, 2u);
  EXPECT_FALSE(*c || *d || *e);

  a->reset();  // the permit goes back: the oldest waiter, and only it, gets it
  ASSERT_TRUE(loop_.RunUntil([&] { return c->has_value(); }));
  EXPECT_TRUE((*c)->ok());
  loop_.Poll();
  EXPECT_FALSE(*d || *e);
  EXPECT_EQ(Stat().queued, 2u);
  EXPECT_EQ(Stat().active, 2u);

  b->reset();
  ASSERT_TRUE(loop_.RunUntil([&] { return d->has_value(); }));
  EXPECT_TRUE((*d)->ok());
  EXPECT_FALSE(*e);
  c->reset();
  ASSERT_TRUE(loop_.RunUntil([&] { return e->has_value(); }));
  EXPECT_TRUE((*e)->ok());
  EXPECT_EQ(Stat().peak_active, 2u);
}

TEST_F(WarmPoolTest, FullQueueIsBusyAtOnce) {
  settings_.queue_limit = 1;
  settings_.queue_timeout = 5s;
  Start(0, 1);
  auto a = loop_.Spawn(pool_->TakePermit());
  auto b = loop_.Spawn(pool_->TakePermit());
  ASSERT_TRUE(loop_.RunUntil([&] { return *a && Stat().queued == 1; }));
  auto c = loop_.Spawn(pool_->TakePermit());
  ASSERT_TRUE(loop_.RunUntil([&] { return c->has_value(); }));
  ASSERT_FALSE((*c)->ok());
  EXPECT_EQ((*c)->error().code, ErrorCode::kBusy);
  EXPECT_NE((*c)->error().ToString().find("1 requests are already waiting"), std::string::npos)
      << (*c)->error().ToString();
  EXPECT_EQ(Stat().rejected_busy, 1u);
  EXPECT_FALSE(b->has_value());  // the waiter is still queued
  a->reset();
  ASSERT_TRUE(loop_.RunUntil([&] { return b->has_value(); }));
  EXPECT_TRUE((*b)->ok());
}

TEST_F(WarmPoolTest, QueueTimeoutIsBusy) {
  settings_.queue_timeout = 30ms;  // a real timeout, short
  Start(0, 1);
  auto a = loop_.Spawn(pool_->TakePermit());
  ASSERT_TRUE(loop_.RunUntil([&] { return a->has_value(); }));
  const auto t0 = Clock::now();
  auto b = loop_.Spawn(pool_->TakePermit());
  ASSERT_TRUE(loop_.RunUntil([&] { return b->has_value(); }));
  EXPECT_GE(Clock::now() - t0, 30ms);
  ASSERT_FALSE((*b)->ok());
  EXPECT_EQ((*b)->error().code, ErrorCode::kBusy);
  EXPECT_NE((*b)->error().ToString().find("within 30 ms"), std::string::npos);
  EXPECT_EQ(Stat().rejected_busy, 1u);
  EXPECT_EQ(Stat().queued, 0u);
}

TEST_F(WarmPoolTest, ShutdownRefusesWaitersAsDraining) {
  settings_.queue_timeout = 5s;
  Start(0, 1);
  auto a = loop_.Spawn(pool_->TakePermit());
  auto b = loop_.Spawn(pool_->TakePermit());
  ASSERT_TRUE(loop_.RunUntil([&] { return *a && Stat().queued == 1; }));
  rt_->stopping = true;
  pool_->Shutdown();
  ASSERT_TRUE(loop_.RunUntil([&] { return b->has_value(); }));
  ASSERT_FALSE((*b)->ok());
  EXPECT_EQ((*b)->error().code, ErrorCode::kDraining);
  EXPECT_EQ(Stat().rejected_busy, 0u);
  auto c = loop_.Spawn(pool_->TakePermit());
  ASSERT_TRUE(loop_.RunUntil([&] { return c->has_value(); }));
  ASSERT_FALSE((*c)->ok());
  EXPECT_EQ((*c)->error().code, ErrorCode::kDraining);
}

TEST_F(WarmPoolTest, RefillReachesTargetWithBoundedParallelism) {
  settings_.refill_parallel = 2;
  driver_.HoldCreations();
  Start(3, 4);
  pool_->Refill();
  loop_.Poll();  // the refill coroutines hand their creations to the creation threads
  ASSERT_TRUE(driver_.WaitHeld(2));
  loop_.Poll();
  EXPECT_EQ(driver_.create_calls(), 2u);  // not 3: at most 2 in flight
  EXPECT_EQ(Stat().creating, 2u);
  driver_.ReleaseCreations();
  ASSERT_TRUE(loop_.RunUntil([&] { return Stat().idle == 3; }));
  EXPECT_EQ(Stat().total_created, 3u);
  EXPECT_EQ(Stat().creating, 0u);
  EXPECT_EQ(driver_.created(), 3u);
  EXPECT_EQ(pool_->creation_seconds().count(), 3u);
}

TEST_F(WarmPoolTest, FailedCreationsBackOffThenRecover) {
  driver_.PushN(FakeCreation::kFail, 2);
  Start(1, 1);
  pool_->Refill();
  ASSERT_TRUE(loop_.RunUntil([&] { return Stat().failed_creations == 1; }));
  const auto t1 = Clock::now();
  EXPECT_EQ(driver_.create_calls(), 1u);  // no retry before the back-off
  ASSERT_TRUE(loop_.RunUntil([&] { return Stat().failed_creations == 2; }));
  const auto t2 = Clock::now();
  ASSERT_TRUE(loop_.RunUntil([&] { return Stat().idle == 1; }));
  const auto t3 = Clock::now();
  // 200 ms after the first failure, 400 ms after the second (less the
  // moments between a failure and this loop seeing it).
  EXPECT_GE(t2 - t1, 150ms);
  EXPECT_GE(t3 - t2, 350ms);
  EXPECT_EQ(driver_.create_calls(), 3u);
  EXPECT_EQ(Stat().total_created, 1u);
}

// The prepare hook (the daemon's services and their readiness) runs before
// a sandbox is idle: a sandbox is not claimable while it runs, and one it
// fails is destroyed and counted as a failed creation (backing off), the
// claim that created it on a miss getting its error.
TEST_F(WarmPoolTest, PrepareRunsBeforeIdleAndItsFailureIsTheCreations) {
  Start(1, 1);
  bool release = false;
  bool fail = true;
  int prepared = 0;
  rt_->prepare = [&](Sandbox&, const std::string& image) -> asio::awaitable<Result<void>> {
    ++prepared;
    if (fail) co_return Fail(ErrorCode::kDeadlineExceeded, "service ready", image, "not ready");
    asio::steady_timer t(loop_.io);
    while (!release) {
      t.expires_after(1ms);
      co_await t.async_wait(asio::use_awaitable);
    }
    co_return Ok();
  };
  pool_->Refill();
  ASSERT_TRUE(loop_.RunUntil([&] { return Stat().failed_creations == 1; }));
  EXPECT_EQ(Stat().idle, 0u);
  EXPECT_EQ(Stat().total_created, 0u);
  ASSERT_TRUE(loop_.RunUntil([&] { return driver_.destroyed() == 1; }));
  // A miss that creates its own gets the hook's error.
  auto miss = loop_.Spawn(pool_->Acquire());
  ASSERT_TRUE(loop_.RunUntil([&] { return miss->has_value(); }));
  ASSERT_FALSE((*miss)->ok());
  EXPECT_EQ((*miss)->error().code, ErrorCode::kDeadlineExceeded);
  EXPECT_NE((*miss)->error().ToString().find("prepare sandbox: service ready(busybox)"),
            std::string::npos)
      << (*miss)->error().ToString();
  // Then the hook passes, but only when released: not idle before.
  fail = false;
  ASSERT_TRUE(loop_.RunUntil([&] { return prepared >= 3; }, 5s));
  loop_.Poll();
  EXPECT_EQ(Stat().idle, 0u);
  release = true;
  ASSERT_TRUE(loop_.RunUntil([&] { return Stat().idle == 1; }));
  EXPECT_EQ(driver_.created() - driver_.destroyed(), 1u);
}

TEST_F(WarmPoolTest, IdleSandboxesExpireAndAreReplaced) {
  settings_.ttl_s = 1;  // the TTL's unit is seconds
  Start(1, 1);
  pool_->Refill();
  ASSERT_TRUE(loop_.RunUntil([&] { return Stat().idle == 1; }));
  const auto t0 = Clock::now();
  ASSERT_TRUE(loop_.RunUntil([&] { return Stat().total_evicted == 1; }, 4s));
  EXPECT_GE(Clock::now() - t0, 900ms);
  ASSERT_TRUE(loop_.RunUntil([&] { return Stat().idle == 1 && driver_.destroyed() == 1; }));
  EXPECT_EQ(driver_.created(), 2u);
}

TEST_F(WarmPoolTest, DeadIdleSandboxIsEvictedAndTheNextServes) {
  driver_.Push(FakeCreation::kDead);
  settings_.refill_parallel = 1;  // fake-1 (dead) is the oldest idle one
  Start(2, 2);
  pool_->Refill();
  ASSERT_TRUE(loop_.RunUntil([&] { return Stat().idle == 2; }));
  auto lease = loop_.Spawn(pool_->Acquire());
  ASSERT_TRUE(loop_.RunUntil([&] { return lease->has_value(); }));
  ASSERT_TRUE((*lease)->ok()) << (*lease)->error().ToString();
  EXPECT_TRUE((**lease)->hit);
  EXPECT_EQ((**lease)->sandbox->id(), "fake-2");
  EXPECT_EQ(Stat().total_evicted, 1u);
  EXPECT_EQ(Stat().hits, 1u);
  EXPECT_EQ(Stat().total_acquired, 1u);
  pool_->Release(std::move(***lease), Permit());
}

TEST_F(WarmPoolTest, MissCreatesOnDemand) {
  Start(0, 1);
  auto lease = loop_.Spawn(pool_->Acquire());
  ASSERT_TRUE(loop_.RunUntil([&] { return lease->has_value(); }));
  ASSERT_TRUE((*lease)->ok()) << (*lease)->error().ToString();
  EXPECT_FALSE((**lease)->hit);
  EXPECT_EQ(Stat().misses, 1u);
  EXPECT_EQ(Stat().total_acquired, 1u);
  pool_->Release(std::move(***lease), Permit());
}

TEST_F(WarmPoolTest, FailedMissIsTheCreationsError) {
  driver_.Push(FakeCreation::kFail);
  Start(0, 1);
  auto lease = loop_.Spawn(pool_->Acquire());
  ASSERT_TRUE(loop_.RunUntil([&] { return lease->has_value(); }));
  ASSERT_FALSE((*lease)->ok());
  EXPECT_EQ((*lease)->error().code, ErrorCode::kUnavailable);
  EXPECT_EQ(Stat().failed_creations, 1u);
}

TEST_F(WarmPoolTest, PermitReturnsOnlyAfterTheTeardown) {
  Start(0, 1);
  auto permit = loop_.Spawn(pool_->TakePermit());
  auto lease = loop_.Spawn(pool_->Acquire());
  ASSERT_TRUE(loop_.RunUntil([&] { return *permit && *lease; }));
  ASSERT_TRUE((*lease)->ok());
  pool_->Release(std::move(***lease), std::move(***permit));
  EXPECT_EQ(Stat().active, 1u);  // the teardown runs on its thread
  ASSERT_TRUE(loop_.RunUntil([&] { return Stat().active == 0; }));
  EXPECT_EQ(driver_.destroyed(), 1u);
}

// Evicting a handed-out sandbox takes it out of the status view's acquired
// and hits, but the Prometheus counters never go down.
TEST_F(WarmPoolTest, EvictionKeepsCountersMonotonic) {
  Start(1, 1);
  pool_->Refill();
  ASSERT_TRUE(loop_.RunUntil([&] { return Stat().idle == 1; }));
  auto lease = loop_.Spawn(pool_->Acquire());
  ASSERT_TRUE(loop_.RunUntil([&] { return lease->has_value(); }));
  ASSERT_TRUE((*lease)->ok());
  const proto::ImageStat before = pool_->CounterStat();
  EXPECT_EQ(before.total_acquired, 1u);
  EXPECT_EQ(before.hits, 1u);
  pool_->Evict(std::move(***lease), Fail("health check", "x", "no answer"));
  const proto::ImageStat after = pool_->CounterStat();
  EXPECT_GE(after.total_acquired, before.total_acquired);
  EXPECT_GE(after.hits, before.hits);
  EXPECT_EQ(after.total_evicted, 1u);
  EXPECT_EQ(Stat().total_acquired, 0u);  // status: it served nothing
  EXPECT_EQ(Stat().hits, 0u);
  EXPECT_EQ(Stat().total_evicted, 1u);
}

TEST_F(WarmPoolTest, ShutdownDestroysEverythingAndSignalsIdle) {
  settings_.refill_parallel = 2;
  Start(2, 2);
  pool_->Refill();
  ASSERT_TRUE(loop_.RunUntil([&] { return Stat().idle == 2; }));
  driver_.HoldCreations();
  auto lease = loop_.Spawn(pool_->Acquire());  // takes one, refill starts (held)
  ASSERT_TRUE(loop_.RunUntil([&] { return lease->has_value(); }));
  loop_.Poll();
  ASSERT_TRUE(driver_.WaitHeld(1));
  ASSERT_TRUE((*lease)->ok());
  pool_->Release(std::move(***lease), Permit());

  rt_->stopping = true;
  pool_->Shutdown();
  bool idle = false;
  rt_->in_flight.WhenIdle([&] { idle = true; });
  loop_.Poll();
  EXPECT_FALSE(idle);  // the held creation is still in flight
  driver_.ReleaseCreations();
  // The creation that ends after the shutdown is destroyed at once.
  ASSERT_TRUE(loop_.RunUntil([&] { return idle; }));
  EXPECT_EQ(rt_->in_flight.count(), 0u);
  EXPECT_EQ(driver_.created(), 3u);
  EXPECT_EQ(driver_.destroyed(), 3u);
}

}  // namespace
}  // namespace wb::pool
