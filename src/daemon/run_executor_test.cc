// RunExecutor against the fake driver: runs, health-check eviction and retry,
// hang-up cancellation, busy and draining refusals, signalled drain.
#include "daemon/run_executor.h"

#include <gtest/gtest.h>

#include "pool/fake_driver.h"
#include "pool/test_loop.h"

namespace wb::daemon {
namespace {

using namespace std::chrono_literals;
using pool::FakeCreation;

// A client that a test can hang up.
class TestSink : public RunSink {
 public:
  boost::asio::awaitable<void> Chunk(bool is_stderr, std::string data) override {
    (is_stderr ? err : out) += data;
    co_return;
  }
  void WatchHangup(std::function<void()> on_gone) override { on_gone_ = std::move(on_gone); }
  void Disarm() override { on_gone_ = nullptr; }
  bool watching() const { return on_gone_ != nullptr; }
  void HangUp() {
    auto fn = std::exchange(on_gone_, nullptr);
    if (fn) fn();
  }
  std::string out, err;

 private:
  std::function<void()> on_gone_;
};

proto::RunRequest Cmd(std::vector<std::string> argv) {
  proto::RunRequest r;
  r.cmd = std::move(argv);
  return r;
}

class RunExecutorTest : public ::testing::Test {
 protected:
  RunExecutorTest() {
    opts_.default_image = "busybox";  // always in the store: no pull
    opts_.default_driver = "fake";
    opts_.creation_cap = 2;
    opts_.driver.state_dir = dir_.path();
    opts_.pool.size = 1;
    opts_.pool.max = 2;
    opts_.pool.health_timeout = 100ms;  // a real timeout, short
  }

  void Start() {
    executor_ = std::make_unique<RunExecutor>(
        loop_.io, opts_, [this](const std::string&) -> Result<Driver*> { return &driver_; },
        store_);
    executor_->Warm();
  }

  // Every test ends with the drain and shutdown: no sandbox may be left.
  void TearDown() override {
    if (!executor_) return;
    driver_.FinishBlockedExecs();
    executor_->BeginDrain();
    bool idle = false;
    executor_->Shutdown([&] { idle = true; });
    EXPECT_TRUE(loop_.RunUntil([&] { return idle && driver_.live() == 0; }));
    loop_.Poll();
    executor_->Join();
    EXPECT_EQ(driver_.created(), driver_.destroyed()) << "a sandbox leaked";
    executor_.reset();
  }

  const proto::ImageStat Stat() { return executor_->registry().Stats().at(0); }

  std::shared_ptr<std::optional<RunOutcome>> Run(proto::RunRequest r, TestSink& sink) {
    return loop_.Spawn(executor_->Run(std::move(r), sink));
  }

  pool::TestLoop loop_;
  pool::TempDir dir_;
  pool::FakeDriver driver_{loop_.io, dir_.path()};
  ImageStore store_{dir_.path(), 100000};
  DaemonOptions opts_;
  std::unique_ptr<RunExecutor> executor_;
};

TEST_F(RunExecutorTest, RunsACommandInAWarmSandbox) {
  Start();
  ASSERT_TRUE(loop_.RunUntil([&] { return Stat().idle == 1; }));
  TestSink sink;
  auto out = Run(Cmd({"echo", "hello", "world"}), sink);
  ASSERT_TRUE(loop_.RunUntil([&] { return out->has_value(); }));
  EXPECT_EQ((*out)->kind, RunErrorKind::kNone) << (*out)->resp.error.value_or("");
  EXPECT_EQ((*out)->resp.exit_code, 0);
  // A one-shot run's output is held beside the response (run_output.h).
  ASSERT_NE((*out)->output, nullptr);
  EXPECT_EQ((*out)->resp.stdout_data, "");
  auto held = (*out)->output->out.ReadAll();
  ASSERT_TRUE(held.ok()) << held.error().ToString();
  EXPECT_EQ(*held, "hello world\n");
  EXPECT_EQ((*out)->resp.sandbox, "fake-1");
  EXPECT_EQ(Stat().hits, 1u);
  EXPECT_NE(executor_->Metrics().find("warmbox_runs_total{image=\"busybox\",driver=\"fake\"} 1"),
            std::string::npos);
}

TEST_F(RunExecutorTest, HungIdleSandboxIsEvictedAndTheRunRetried) {
  driver_.Push(FakeCreation::kHung);
  Start();
  ASSERT_TRUE(loop_.RunUntil([&] { return Stat().idle == 1; }));
  TestSink sink;
  auto out = Run(Cmd({"exit", "3"}), sink);
  ASSERT_TRUE(loop_.RunUntil([&] { return out->has_value(); }));
  EXPECT_EQ((*out)->kind, RunErrorKind::kNone) << (*out)->resp.error.value_or("");
  EXPECT_EQ((*out)->resp.exit_code, 3);
  EXPECT_NE((*out)->resp.sandbox, "fake-1");  // not the hung one
  EXPECT_EQ(driver_.execs(), 1u);             // the command ran once
  EXPECT_EQ(Stat().total_evicted, 1u);
  // The status leaves the evicted hand-out out; the counter keeps it.
  EXPECT_EQ(Stat().total_acquired, 1u);
  EXPECT_NE(executor_->Metrics().find(
                "warmbox_sandboxes_acquired_total{image=\"busybox\",driver=\"fake\"} 2"),
            std::string::npos)
      << executor_->Metrics();
}

TEST_F(RunExecutorTest, HangUpCancelsTheRun) {
  Start();
  TestSink sink;
  auto out = Run(Cmd({"block"}), sink);
  ASSERT_TRUE(loop_.RunUntil([&] { return driver_.blocked_execs() == 1; }));
  ASSERT_TRUE(sink.watching());
  sink.HangUp();
  ASSERT_TRUE(loop_.RunUntil([&] { return out->has_value(); }));
  EXPECT_EQ((*out)->kind, RunErrorKind::kClientGone);
  EXPECT_EQ((*out)->resp.exit_code, -1);
  ASSERT_TRUE(loop_.RunUntil([&] { return driver_.killed() == 1; }));
  EXPECT_NE(executor_->Metrics().find("warmbox_run_errors_total{kind=\"client_gone\"} 1"),
            std::string::npos);
}

TEST_F(RunExecutorTest, FullQueueIsBusy) {
  opts_.pool.max = 1;
  opts_.pool.queue_limit = 0;
  Start();
  TestSink s1, s2;
  auto first = Run(Cmd({"block"}), s1);
  ASSERT_TRUE(loop_.RunUntil([&] { return driver_.blocked_execs() == 1; }));
  auto second = Run(Cmd({"echo"}), s2);
  ASSERT_TRUE(loop_.RunUntil([&] { return second->has_value(); }));
  EXPECT_EQ((*second)->kind, RunErrorKind::kBusy);
  EXPECT_EQ((*second)->resp.exit_code, -1);
  driver_.FinishBlockedExecs();
  ASSERT_TRUE(loop_.RunUntil([&] { return first->has_value(); }));
  EXPECT_EQ((*first)->kind, RunErrorKind::kNone);
  EXPECT_NE(executor_->Metrics().find("warmbox_run_errors_total{kind=\"busy\"} 1"),
            std::string::npos);
}

TEST_F(RunExecutorTest, BadRequestsAreRefused) {
  opts_.default_image = "";
  Start();
  TestSink sink;
  auto none = Run(Cmd({"echo"}), sink);
  auto bad = Run(
      [] {
        auto r = Cmd({"echo"});
        r.image = "../escape";
        return r;
      }(),
      sink);
  // Above a daemon-wide ceiling (daemon/run_ceilings.h): refused before any sandbox.
  auto greedy = Run(
      [] {
        auto r = Cmd({"echo"});
        r.image = "busybox";
        r.memory_bytes = uint64_t{64} << 30;
        return r;
      }(),
      sink);
  ASSERT_TRUE(loop_.RunUntil([&] { return *none && *bad && *greedy; }));
  EXPECT_EQ((*none)->kind, RunErrorKind::kBadRequest);
  EXPECT_EQ((*bad)->kind, RunErrorKind::kBadRequest);
  EXPECT_EQ((*greedy)->kind, RunErrorKind::kBadRequest);
  // The kind word is in the response, once, for every front end.
  EXPECT_EQ((*greedy)->resp.kind, "bad_request");
  EXPECT_EQ((*none)->resp.kind, "bad_request");
  EXPECT_NE((*greedy)->resp.error.value_or("").find("--max-run-memory"), std::string::npos)
      << (*greedy)->resp.error.value_or("");
  EXPECT_EQ(driver_.create_calls(), 0u);
}

// Spellings of one image share one pool (and so one --max): a client
// cannot multiply its limits by naming the image five ways.
TEST_F(RunExecutorTest, SpellingsOfOneImageShareOnePool) {
  Image img;
  img.name = "docker.io/library/python:3";
  ASSERT_TRUE(store_.CommitOci(img).ok());
  Start();
  TestSink sink;
  std::vector<std::shared_ptr<std::optional<RunOutcome>>> runs;
  for (const char* spelling : {"python:3", "docker.io/library/python:3", "library/python:3",
                               "docker.io/python:3", "index.docker.io/library/python:3"}) {
    auto r = Cmd({"echo", spelling});
    r.image = spelling;
    runs.push_back(Run(std::move(r), sink));
  }
  ASSERT_TRUE(loop_.RunUntil([&] {
    for (const auto& r : runs)
      if (!r->has_value()) return false;
    return true;
  }));
  for (const auto& r : runs)
    EXPECT_EQ((*r)->kind, RunErrorKind::kNone) << (*r)->resp.error.value_or("");
  std::vector<std::string> images;
  for (const auto& st : executor_->registry().Stats()) images.push_back(st.image);
  EXPECT_EQ(images, (std::vector<std::string>{"busybox", "docker.io/library/python:3"}));
}

// Stop waits for the runs in flight, and learns that they ended from the
// runs themselves: the drain's callback runs when the last one ends.
TEST_F(RunExecutorTest, DrainIsSignalledWhenTheLastRunEnds) {
  Start();
  TestSink s1, s2, s3;
  auto a = Run(Cmd({"block"}), s1);
  auto b = Run(Cmd({"block"}), s2);
  ASSERT_TRUE(loop_.RunUntil([&] { return driver_.blocked_execs() == 2; }));
  executor_->BeginDrain();
  EXPECT_TRUE(executor_->draining());
  auto refused = Run(Cmd({"echo"}), s3);
  ASSERT_TRUE(loop_.RunUntil([&] { return refused->has_value(); }));
  EXPECT_EQ((*refused)->kind, RunErrorKind::kDraining);

  bool runs_done = false;
  executor_->WhenRunsDone([&] { runs_done = true; });
  loop_.Poll();
  EXPECT_FALSE(runs_done);
  EXPECT_EQ(executor_->runs_in_flight(), 2u);
  driver_.FinishBlockedExecs();
  ASSERT_TRUE(loop_.RunUntil([&] { return runs_done; }));
  EXPECT_TRUE(*a && *b);  // both ended before the signal
  EXPECT_EQ((*a)->kind, RunErrorKind::kNone);
  EXPECT_EQ((*b)->kind, RunErrorKind::kNone);

  bool idle = false;
  executor_->Shutdown([&] { idle = true; });
  ASSERT_TRUE(loop_.RunUntil([&] { return idle; }));
  EXPECT_EQ(driver_.live(), 0u);  // the used and the idle sandboxes are all gone
  EXPECT_NE(executor_->Metrics().find("warmbox_draining 1"), std::string::npos);
}

TEST_F(RunExecutorTest, DrainWithNoRunSignalsAtOnce) {
  Start();
  executor_->BeginDrain();
  bool runs_done = false;
  executor_->WhenRunsDone([&] { runs_done = true; });
  ASSERT_TRUE(loop_.RunUntil([&] { return runs_done; }));
}

}  // namespace
}  // namespace wb::daemon
